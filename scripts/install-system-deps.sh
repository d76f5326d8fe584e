#!/usr/bin/env bash
# Install the Debian packages in scripts/system-packages.txt (unconditionally, as root).
# Not root: say what is missing and go on; the tests that need a package say so themselves.
# A stamp in /var/tmp skips the work on the next `make`; VMKEEP_SYSDEPS_FORCE=1 (CI) ignores it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mapfile -t pkgs < <(grep -v '^\s*#' "$here/system-packages.txt" | grep -v '^\s*$')
[ ${#pkgs[@]} -eq 0 ] && exit 0
stamp="${VMKEEP_SYSDEPS_STAMP:-/var/tmp/vmkeep-sysdeps.$(cat "$here/system-packages.txt" | cksum | cut -d' ' -f1)}"
if [ -f "$stamp" ] && [ -z "${VMKEEP_SYSDEPS_FORCE:-}" ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-deps: not root; make sure these Debian packages are installed: ${pkgs[*]}" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
touch "$stamp"
