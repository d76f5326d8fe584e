#!/usr/bin/env bash
# Build govmomi's vSphere simulator (vcsim) for vmkeep's tests, offline, from
# Debian packages:
#   golang-go                          Go toolchain (1.19 on Debian 12)
#   golang-github-vmware-govmomi-dev   govmomi 0.24.2 source in /usr/share/gocode
# The package ships the simulator library but no vcsim command, so main.go in
# this folder provides one. Bugs in the installed simulator are fixed at build
# time with `go build -overlay` (patched copies under overlay/, which mirrors
# paths below the govmomi source root; a file there with no installed
# counterpart is added to that package); installed files are never edited.
# overlay/UPSTREAM.sha256 pins the installed originals of the replaced files.
#
# Usage: scripts/vcsim/build.sh [--force]
# Prints the absolute path of the binary (scripts/vcsim/bin/vcsim) on stdout;
# progress goes to stderr. Safe to run concurrently: builds are serialised by
# flock and skipped when the binary is up to date.
#
# Environment: GOCACHE (default scripts/vcsim/.cache/go-build),
#              VCSIM_LOCK_TIMEOUT (seconds to wait for another build, default 600).
set -euo pipefail

DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GOCODE=/usr/share/gocode
GOVMOMI=$GOCODE/src/github.com/vmware/govmomi
PKGS=(golang-go golang-github-vmware-govmomi-dev)
BIN=$DIR/bin/vcsim
WORK=$DIR/.build
FORCE=0
[[ ${1:-} == --force ]] && FORCE=1

say() { echo "vcsim/build.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

have_deps() {
    command -v go >/dev/null 2>&1 &&
        [[ -d $GOVMOMI/simulator && -d $GOCODE/src/github.com/google/uuid ]]
}

install_deps() {
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to install: ${PKGS[*]}"
        sudo=(sudo -n)
    fi
    say "installing ${PKGS[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${PKGS[@]}" >&2
}

mkdir -p "$WORK" "$DIR/bin"
exec 9>"$WORK/lock"
flock -w "${VCSIM_LOCK_TIMEOUT:-600}" 9 || die "timed out waiting for $WORK/lock"

# Everything below runs under the lock, so a second caller that waited sees
# the finished binary and skips the build.
if ! have_deps; then
    install_deps
    have_deps || die "go or the govmomi source is still missing after installing ${PKGS[*]}"
fi

# The overlay replaces whole files: refuse to build against a govmomi whose
# originals differ from the ones the patches were made from.
if ! (cd "$GOVMOMI" && sha256sum --check --quiet --strict "$DIR/overlay/UPSTREAM.sha256") >&2; then
    die "installed govmomi ($GOVMOMI) differs from the version overlay/ was made for; re-derive the patches"
fi

stamp="go=$(go env GOVERSION) govmomi=$(dpkg-query -W -f='${Version}' golang-github-vmware-govmomi-dev 2>/dev/null || echo unknown)"
if [[ $FORCE -eq 0 && -x $BIN && -f $BIN.stamp && $(cat "$BIN.stamp") == "$stamp" ]] &&
    [[ -z $(find "$DIR/main.go" "$DIR/build.sh" "$DIR/overlay" -newer "$BIN" -print -quit) ]]; then
    say "up to date: $BIN"
    echo "$BIN"
    exit 0
fi

# overlay.json needs absolute paths, so it is generated here.
overlay_json=$WORK/overlay.json
{
    echo '{"Replace": {'
    sep=''
    while IFS= read -r -d '' f; do
        rel=${f#"$DIR/overlay/"}
        # A file with no counterpart is added to the package (e.g. new methods).
        [[ -d $(dirname "$GOVMOMI/$rel") ]] || die "overlay/$rel: no package directory $(dirname "$GOVMOMI/$rel")"
        printf '%s  "%s": "%s"' "$sep" "$GOVMOMI/$rel" "$f"
        sep=$',\n'
    done < <(find "$DIR/overlay" -name '*.go' -type f -print0 | sort -z)
    printf '\n}}\n'
} >"$overlay_json.tmp"
mv "$overlay_json.tmp" "$overlay_json"

say "building $BIN ($stamp)"
start=$SECONDS
mkdir -p "$WORK/gopath"
tmp=$BIN.tmp.$$
trap 'rm -f "$tmp"' EXIT
(
    cd "$DIR"
    env GO111MODULE=off \
        GOPATH="$WORK/gopath:$GOCODE" \
        GOCACHE="${GOCACHE:-$DIR/.cache/go-build}" \
        GOFLAGS= \
        CGO_ENABLED=0 \
        go build -overlay "$overlay_json" -o "$tmp" ./main.go
)
mv -f "$tmp" "$BIN"
echo "$stamp" >"$BIN.stamp"
say "built $BIN in $((SECONDS - start)) s"
echo "$BIN"
