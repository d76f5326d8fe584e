#!/usr/bin/env bash
# Install vmkeep for real use (`make install`, as root): vmkeep and its Python dependencies in
# a virtualenv of their own, $VMKEEP_VENV (default /opt/vmkeep), and the command linked as
# $PREFIX/bin/vmkeep (default /usr/local/bin/vmkeep: the path scripts/vmkeep-appliance.service
# runs). Run it again after pulling to upgrade: the virtualenv is updated in place.
#
# Usage: scripts/install.sh [--service]
#   --service  (`make install-service`) also installs the systemd unit into $SYSTEMD_UNIT_DIR
#              (default /etc/systemd/system) with ExecStart naming $PREFIX/bin/vmkeep; into the
#              default folder, as root, it also creates the `vmkeep` system user (home
#              /var/lib/vmkeep) and reloads systemd. It enables nothing: the last line says how.
#
# Environment: PREFIX, VMKEEP_VENV, SYSTEMD_UNIT_DIR as above; PYTHON (default python3, 3.11
# or newer) makes the virtualenv; pip's own PIP_* settings apply (e.g. PIP_INDEX_URL).
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prefix=${PREFIX:-/usr/local}
venv=${VMKEEP_VENV:-/opt/vmkeep}
unit_dir=${SYSTEMD_UNIT_DIR:-/etc/systemd/system}
python=${PYTHON:-python3}
service=0
case ${1:-} in
    --service) service=1 ;;
    "") ;;
    *) echo "usage: scripts/install.sh [--service]" >&2; exit 2 ;;
esac

# Absolute, so that the link and the unit name the same files from anywhere.
prefix=$(realpath -m -- "$prefix")
venv=$(realpath -m -- "$venv")
unit_dir=$(realpath -m -- "$unit_dir")

say() { echo "install: $*"; }
die() { echo "install: error: $*" >&2; exit 1; }

"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null ||
    die "$python is missing or older than 3.11; set PYTHON to a Python 3.11+"

# Not root with the default folders: say so before anything is made.
writable() {  # the folder, or the nearest one above it that exists, can be written
    local dir=$1
    while [[ ! -e $dir ]]; do dir=$(dirname "$dir"); done
    [[ -w $dir ]]
}
dirs=("$venv" "$prefix/bin")
[[ $service -eq 1 ]] && dirs+=("$unit_dir")
for dir in "${dirs[@]}"; do
    writable "$dir" || die "cannot write $dir: run it as root (sudo make install), or set" \
        "PREFIX and VMKEEP_VENV (and SYSTEMD_UNIT_DIR) to folders of yours"
done

# A virtualenv whose Python went away (a Python upgrade) is made again; anything else that is
# not a virtualenv is left alone.
if [[ -e $venv && ! -f $venv/pyvenv.cfg ]]; then
    die "$venv exists and is not a virtualenv; set VMKEEP_VENV to another folder"
fi
if [[ -f $venv/pyvenv.cfg ]] && ! "$venv/bin/python" -c '' 2>/dev/null; then
    say "$venv: its Python no longer runs; making it again"
    rm -rf -- "$venv"
fi
if [[ ! -f $venv/pyvenv.cfg ]]; then
    say "making the virtualenv $venv"
    "$python" -m venv "$venv"
fi

say "installing vmkeep and its dependencies from $src into $venv (a minute or two the first time)"
# Built from a copy of what the package is made of: setuptools builds in the source folder,
# leaving build/ there (root's, after a `sudo make install`), whose stale modules a later
# build would ship. pip installs a source folder again even when the version number is the
# same (a newer checkout), and adds or upgrades the dependencies pyproject.toml asks for.
stage=$(mktemp -d)
trap 'rm -rf -- "$stage"' EXIT
for part in pyproject.toml README.md appliance catalog tui; do
    cp -R -- "$src/$part" "$stage/"
done
find "$stage" -name __pycache__ -prune -exec rm -rf {} +
"$venv/bin/python" -m pip install -q "$stage"

mkdir -p "$prefix/bin"
ln -sfn "$venv/bin/vmkeep" "$prefix/bin/vmkeep"
say "$prefix/bin/vmkeep -> $venv/bin/vmkeep: $("$prefix/bin/vmkeep" --version)"

if [[ $service -eq 1 ]]; then
    mkdir -p "$unit_dir"
    unit=$unit_dir/vmkeep-appliance.service
    sed "s|/usr/local/bin/vmkeep|$prefix/bin/vmkeep|g" "$src/scripts/vmkeep-appliance.service" \
        >"$unit.tmp"
    chmod 0644 "$unit.tmp"
    mv -f "$unit.tmp" "$unit"
    say "installed $unit (ExecStart=$prefix/bin/vmkeep appliance start --foreground)"
    if [[ $unit_dir == /etc/systemd/system && $(id -u) -eq 0 ]]; then
        if ! id vmkeep >/dev/null 2>&1; then
            useradd --system --home-dir /var/lib/vmkeep --create-home \
                --shell /usr/sbin/nologin vmkeep
            say "created the system user vmkeep (home /var/lib/vmkeep)"
        fi
        if [[ -d /run/systemd/system ]]; then
            systemctl daemon-reload
        fi
    fi
    say "start it now and at boot: systemctl enable --now vmkeep-appliance"
fi
