#!/usr/bin/env bash
# Install the Debian packages vmkeep needs that are not installed yet, as root:
#   no argument  (`make test`, .ci/run): scripts/system-packages-demo.txt and
#                scripts/system-packages.txt, everything the tests need;
#   --demo       (`make demo`): scripts/system-packages-demo.txt only.
# Packages already installed are left as they are (never upgraded). Not root: say what is
# missing and go on; the tests that need a package say so themselves.
# A stamp in /var/tmp skips the work on the next `make`; VMKEEP_SYSDEPS_FORCE=1 (CI) ignores it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
case ${1:-} in
    --demo) lists=("$here/system-packages-demo.txt"); what="the demo" ;;
    "") lists=("$here/system-packages-demo.txt" "$here/system-packages.txt"); what="the tests" ;;
    *) echo "usage: scripts/install-system-deps.sh [--demo]" >&2; exit 2 ;;
esac
mapfile -t pkgs < <(cat "${lists[@]}" | grep -v '^\s*#' | grep -v '^\s*$')
[ ${#pkgs[@]} -eq 0 ] && exit 0
stamp="${VMKEEP_SYSDEPS_STAMP:-/var/tmp/vmkeep-sysdeps.$(cat "${lists[@]}" | cksum | cut -d' ' -f1)}"
if [ -f "$stamp" ] && [ -z "${VMKEEP_SYSDEPS_FORCE:-}" ]; then exit 0; fi
missing=()
for pkg in "${pkgs[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  touch "$stamp" 2>/dev/null || true
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-deps: not root; make sure these Debian packages are installed: ${missing[*]}" >&2
  exit 0
fi
echo "install-system-deps: installing the Debian packages $what needs: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
touch "$stamp"
