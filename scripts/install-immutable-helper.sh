#!/usr/bin/env bash
# Install vmkeep's immutability helper on a repository host (run as root there):
#   install-immutable-helper.sh ACCOUNT ROOT [ROOT ...]
# ACCOUNT is the SSH account the appliance logs in with; each ROOT a repository folder of it.
# Installs /usr/local/sbin/vmkeep-immutable (root, 0755), one sudo rule that lets ACCOUNT run
# it and nothing else (/etc/sudoers.d/vmkeep-immutable-ACCOUNT, checked by visudo), and names
# the folders in /etc/vmkeep-immutable.conf. The folders must be on a file system with chattr
# flags (ext4, xfs, btrfs). ACCOUNT must not have root rights otherwise: it then cannot lift a
# lock, which is the point.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "run this as root on the repository host" >&2; exit 2; }
[ $# -ge 2 ] || { echo "usage: $0 ACCOUNT ROOT [ROOT ...]" >&2; exit 2; }
account=$1; shift
here=$(cd "$(dirname "$0")" && pwd)
id "$account" >/dev/null
install -o root -g root -m 0755 "$here/vmkeep-immutable" /usr/local/sbin/vmkeep-immutable
rule=/etc/sudoers.d/vmkeep-immutable-$account
tmp=$(mktemp)
printf '%s ALL=(root) NOPASSWD: /usr/local/sbin/vmkeep-immutable\n' "$account" > "$tmp"
visudo -cf "$tmp" >/dev/null
install -o root -g root -m 0440 "$tmp" "$rule"
rm -f "$tmp"
touch /etc/vmkeep-immutable.conf
chmod 0644 /etc/vmkeep-immutable.conf
for root in "$@"; do
  mkdir -p "$root"
  chown "$account" "$root"
  real=$(realpath "$root")
  grep -qxF "root $real" /etc/vmkeep-immutable.conf || echo "root $real" >> /etc/vmkeep-immutable.conf
done
echo "vmkeep-immutable installed for $account: $*"
