#!/usr/bin/env bash
# Install the benchmark's peers: borg and restic from Debian, Benji 0.17.0 from PyPI in its own venv.
#
#   bash scripts/bench/peers.sh [BENJI_VENV]      (default: <repo>/.bench/benji-venv)
#
# Idempotent: a peer that already answers `--version` is left alone. Needs root for apt-get.
#
# Benji 0.17.0 pins ruamel.yaml<0.16, which does not build on Python 3.11, so its dependencies are
# installed by hand (the list below is its wheel's Requires-Dist, minus psycopg2-binary, which only
# the PostgreSQL database engine needs, with ruamel.yaml moved to 0.17.21, and plus zstandard, its
# `compression` extra) and Benji itself with --no-deps.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
benji_venv="${1:-$repo/.bench/benji-venv}"
python="${BENCH_PYTHON:-python3.11}"

need_apt=()
command -v borg >/dev/null 2>&1 || need_apt+=(borgbackup)
command -v restic >/dev/null 2>&1 || need_apt+=(restic)
if ((${#need_apt[@]})); then
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${need_apt[@]}"
fi
borg --version
restic version

benji_deps=(
    "PrettyTable>=0.7.2,<1"
    "sqlalchemy>=1.4.14,<2"
    "setproctitle>=1.1.8,<2"
    "python-dateutil>=2.6.0,<3"
    "alembic>=1.0.5,<2"
    "ruamel.yaml==0.17.21"
    "argcomplete>=1.9.4,<2"
    "sparsebitfield>=0.2.3,<1"
    "cerberus>=1.2,<2"
    "pycryptodome>=3.6.1,<4"
    "pyparsing>=2.3.0,<3"
    "semantic-version>=2.8.1,<3"
    "dateparser>=1.1.1,<2"
    "structlog>=19.1.0"
    "colorama>=0.4.1,<1"
    "diskcache>=3.0.6"
    "attrs>=21.4.0,<22"
    "zstandard>=0.9.0"
)
if ! "$benji_venv/bin/benji" --help >/dev/null 2>&1; then
    "$python" -m venv "$benji_venv"
    "$benji_venv/bin/pip" install --quiet --upgrade pip
    "$benji_venv/bin/pip" install --quiet "${benji_deps[@]}"
    "$benji_venv/bin/pip" install --quiet --no-deps "benji==0.17.0"
fi
"$benji_venv/bin/benji" --help >/dev/null
echo "benji $("$benji_venv/bin/pip" show benji | sed -n 's/^Version: //p') in $benji_venv"
