"""The ``vmkeep`` command line: argument parsing and error reporting.

Commands live in their own modules and are imported only when run, so ``--help`` stays quick.
Every error is one line on stderr (``vmkeep: error: …``) and a documented exit code
(see ``docs/CLI.md``); no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from collections.abc import Callable, Sequence

from appliance import inputs
from appliance.errors import EXIT_INTERRUPTED, UsageError, VmkeepError

EXIT_INTERNAL = 70
EXIT_BROKEN_PIPE = 141  # as a shell reports a process ended by SIGPIPE

EPILOG_IMAGE = """examples:
  vmkeep image backup --repo /backups/r1 --name db01 disk.img
  vmkeep image backup --repo /backups/r1 --name db01 --changed areas.json disk.img
  vmkeep image points --repo /backups/r1 --json
  vmkeep image restore --repo /backups/r1 20261124T210101Z-3fa2c1d0 restored.img
  vmkeep image verify --repo /backups/r1
  vmkeep image prune --repo /backups/r1 --keep-last 7 --keep-days 30 --dry-run
"""

EPILOG_VSPHERE = """examples:
  vmkeep vsphere fingerprint --host vc01.example.com
  VC="--host vc01.example.com --user backup@vsphere.local --password-file $HOME/.vc01-pw \\
      --fingerprint AB:CD:…:EF"
  vmkeep vsphere vms $VC
  vmkeep vsphere backup $VC --repo /backups/r1 db01
  vmkeep vsphere hunter $VC --dry-run

The password comes from exactly one of --password-stdin (first line of standard input),
--password-file FILE (its first line) or the environment variable VMKEEP_VSPHERE_PASSWORD;
never from the command line. Pin the server's certificate with --fingerprint (what
`vmkeep vsphere fingerprint` prints), or turn verification off with --insecure.
"""

# $VC in the examples: the connection options of every command that logs in.
_VC = """  VC="--host vc01.example.com --user backup@vsphere.local --password-file $HOME/.vc01-pw \\
      --fingerprint AB:CD:…:EF"
"""

EPILOG_FINGERPRINT = """examples:
  vmkeep vsphere fingerprint --host vc01.example.com
  vmkeep vsphere fingerprint --host 192.0.2.10 --port 8443

Prints the SHA-256 fingerprint of the server's TLS certificate (AB:CD:… form). Check it
against the one vCenter shows, then give it to the other commands with --fingerprint.
"""

EPILOG_VMS = f"""examples:
{_VC}  vmkeep vsphere vms $VC
  vmkeep vsphere vms $VC --json
  pass show esx01 | vmkeep vsphere vms --host esx01 --user root --password-stdin --insecure

Disks are numbered 0, 1, … in (controller bus, unit) order: the N of `image restore --disk N`.
"""

EPILOG_BACKUP = f"""examples:
{_VC}  vmkeep vsphere backup $VC --repo /backups/r1 db01
  vmkeep vsphere backup $VC --repo /backups/r1 --enable-cbt -v db01
  vmkeep vsphere backup $VC --repo /backups/r1 4210a3c1-8e5e-41b3-9d7a-0c2f8e6b1a22
  vmkeep image points --repo /backups/r1 --name db01

Prints the restore point's id on stdout; log lines go to stderr (informational ones with -v).
Exit codes, the same as `vmkeep job run --wait` will use: 0 success; 1 backed up with
warnings (a CBT fallback, a skipped disk); 2 the VM failed (no disk could be backed up).
Errors that stop it before a result (login, lock, repository) exit with their own codes
(docs/CLI.md).
"""

EPILOG_RESTORE_VM = f"""examples:
{_VC}  vmkeep vsphere restore-vm $VC --repo /backups/r1 POINT --name db01-restored
  vmkeep vsphere restore-vm $VC --repo /backups/r1 POINT --name db01-test \\
      --target-host esx02 --datastore ssd01 --power-on
  vmkeep vsphere restore-vm $VC --repo /backups/r1 POINT --original --dry-run
  vmkeep vsphere restore-vm $VC --repo /backups/r1 POINT --original --yes

--name: a new VM with the recorded hardware (CPUs, memory, controllers, disks at their bus
and unit, NICs on the same networks with new MAC addresses unless --keep-macs); if anything
fails the new VM is deleted again. --original: over the VM the point was taken of (found by
its instance UUID): it is powered off and its disks are overwritten; it must have no
snapshots. Without --yes this asks for the VM's name on a terminal. Its Changed Block
Tracking is reset, so its next backup reads every allocated area (deduplicated).
"""

EPILOG_RESTORE_DISK = f"""examples:
{_VC}  vmkeep vsphere restore-disk $VC --repo /backups/r1 POINT --disk 1 --vm fileserver
  vmkeep image restore --repo /backups/r1 --disk 1 POINT disk1.img   # to a raw file instead

Adds disk N of the point as a new thin disk of the VM (first free SCSI slot, on the datastore
of its first disk unless --datastore) and writes the backed-up bytes into it.
"""

EPILOG_HUNTER = f"""examples:
{_VC}  vmkeep vsphere hunter $VC --dry-run
  vmkeep vsphere hunter $VC
  vmkeep vsphere hunter $VC --include-foreign --dry-run

Finds vmkeep snapshots left behind by crashed runs, disks needing consolidation and orphaned
snapshot files, and fixes what it can (orphaned files are only reported). Without
--include-foreign, snapshots that are not vmkeep's are never removed. Exit code 0 when
nothing failed, 1 when a finding could not be fixed.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}; see `{self.prog} --help`")


def _whole(low: int, high: int) -> Callable[[str], int]:
    """An argument type: a whole number from ``low`` to ``high``."""

    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a whole number; give {low} to {high}") from None
        problem = inputs.count_problem(value, low=low, high=high)
        if problem:
            raise argparse.ArgumentTypeError(f"{text!r} {problem}")
        return value

    return whole_number


def _number(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    """An argument type: a finite number from ``low`` (excluded with ``low_open``) to
    ``high``; NaN and infinity are refused."""

    def number(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        problem = inputs.number_problem(value, low=low, high=high, low_open=low_open)
        if problem:
            raise argparse.ArgumentTypeError(f"{text!r} {problem}")
        return value

    return number


_positive_float = _number(0.0, inputs.SECONDS_MAX)  # seconds to wait: 0 … a week
_days = _number(0.0, inputs.DAYS_MAX, low_open=True)  # retention days: (0, 36500]
_keep_last = _whole(1, inputs.COUNT_MAX)
_threads = _whole(1, 256)


def _name(text: str) -> str:
    """An argument type: a name the administrator gives (a vCenter, repository, job, image
    or new VM): printable, one line, 1 to 80 characters."""
    problem = inputs.name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{text!r} {problem}")
    return text


def _vm_name(text: str) -> str:
    """An argument type: a new VM's name (as ``_name``; slashes allowed)."""
    problem = inputs.vm_name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{text!r} {problem}")
    return text


def _text(text: str) -> str:
    """An argument type: one line of text that names something (a VM, a point, a path in the
    inventory): no control characters."""
    problem = inputs.text_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{text!r} {problem}")
    return text


def _folder(text: str) -> str:
    """An argument type: a local folder or file (relative to the current folder) that is not
    a system folder, or an sftp:// URL."""
    if text.startswith("sftp://"):
        problem = inputs.text_problem(text, limit=inputs.PATH_MAX)
    else:
        problem = inputs.path_problem(text, absolute=False)
    if problem:
        raise argparse.ArgumentTypeError(f"{text!r} {problem}")
    return text


def _read_path(text: str) -> str:
    """An argument type: a local path that is only read."""
    problem = inputs.read_path_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{text!r} {problem}")
    return text


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return value


class _NoPasswordOption(argparse.Action):
    """``--password``: refused without echoing its value (a password must not be an argument)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        raise UsageError(f"{parser.prog}: there is no {option_string} option: other users of "
                         "this machine can read command lines; give the password with "
                         "--password-stdin, --password-file FILE or VMKEEP_VSPHERE_PASSWORD")


def add_password_options(p: argparse.ArgumentParser | argparse._ArgumentGroup, *,
                         env: str = "VMKEEP_VSPHERE_PASSWORD") -> None:
    """``--password-stdin`` / ``--password-file`` (or ``env``); a plain ``--password`` is
    refused without echoing its value (``appliance.password.read_password`` reads them)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of standard input")
    g.add_argument("--password-file", metavar="FILE",
                   help=f"read the password from the first line of FILE (or set {env})")
    p.add_argument("--password", nargs="?", action=_NoPasswordOption, help=argparse.SUPPRESS)


def add_pin_options(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    pin = p.add_mutually_exclusive_group()
    pin.add_argument("--fingerprint", metavar="SHA256HEX",
                     help="the server certificate's SHA-256 fingerprint to pin (colons "
                     "optional; `vmkeep vsphere fingerprint` shows it)")
    pin.add_argument("--insecure", action="store_true",
                     help="do not verify the server's certificate at all")


def add_connection_options(p: argparse.ArgumentParser, *, login: bool = True) -> None:
    """The options every ``vmkeep vsphere`` command that talks to vSphere takes.

    ``login=False``: only where the server is (``--host``, ``--port``).
    """
    conn = p.add_argument_group("vSphere connection")
    conn.add_argument("--host", required=True, help="vCenter or ESXi host name or address")
    conn.add_argument("--port", type=_port, default=443, help="HTTPS port (default 443)")
    if not login:
        return
    conn.add_argument("--user", required=True, help="user name, e.g. backup@vsphere.local")
    add_password_options(conn)
    add_pin_options(conn)
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also print informational log lines on stderr")


def _add_ssh_login(p: argparse.ArgumentParser, *, password_options: bool = True) -> None:
    """--ssh-key, --host-key-fingerprint and the SSH password: --password-stdin /
    --password-file, or --ssh-password-file where those already give another password."""
    ssh = p.add_argument_group("SSH repositories (sftp://…)")
    ssh.add_argument("--ssh-key", metavar="FILE", help="private key to log in with")
    ssh.add_argument("--host-key-fingerprint", metavar="SHA256:…",
                     help="the host key as `ssh-keygen -l -E sha256` prints it; without it the "
                     "key is shown and, on a terminal, asked about")
    if password_options:
        add_password_options(ssh, env="VMKEEP_SSH_PASSWORD")
    else:
        ssh.add_argument("--ssh-password-file", metavar="FILE",
                         help="the SSH password (or the key's passphrase) from the first line "
                         "of FILE (or set VMKEEP_SSH_PASSWORD)")


def add_repository_options(p: argparse.ArgumentParser, *, ssh_password: bool = True) -> None:
    """``--repo`` (a folder or sftp://USER@HOST[:PORT]/PATH) with its SSH login options.
    ``ssh_password``: the SSH password may come by --password-stdin / --password-file (not
    where those already give another password: then --ssh-password-file)."""
    p.add_argument("--repo", required=True, metavar="DIR|URL", type=_folder,
                   help="repository folder, or sftp://USER@HOST[:PORT]/ABSOLUTE/PATH")
    p.add_argument("--lock-wait", type=_positive_float, default=60.0, metavar="SECONDS",
                   help="how long to wait for a conflicting lock (default 60)")
    _add_ssh_login(p, password_options=ssh_password)
    p.add_argument("--encryption-password-file", metavar="FILE",
                   help="the repository's encryption password, first line of FILE (or set "
                   "VMKEEP_ENCRYPTION_PASSWORD): opens an encrypted repository, and makes a "
                   "new repository encrypted")


def _add_vsphere(sub: argparse._SubParsersAction[_Parser]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    vsphere = sub.add_parser("vsphere", help="list, back up and clean up vSphere VMs (offline)",
                             description="Talk to a vCenter or ESXi host directly, without "
                             "the appliance: show its certificate, list VMs, back a VM up "
                             "into a repository folder, clean up leftover snapshots.",
                             epilog=EPILOG_VSPHERE, formatter_class=raw)
    vsub = vsphere.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = vsub.add_parser("fingerprint", help="show the server's certificate fingerprint",
                        description="Print the SHA-256 fingerprint of the TLS certificate "
                        "the server presents.", epilog=EPILOG_FINGERPRINT, formatter_class=raw)
    add_connection_options(p, login=False)

    p = vsub.add_parser("vms", help="list VMs with their disks, CBT and snapshots",
                        description="List every VM (templates included) with its power "
                        "state, Changed Block Tracking, snapshots and disks.",
                        epilog=EPILOG_VMS, formatter_class=raw)
    add_connection_options(p)
    p.add_argument("--json", action="store_true", help="print a JSON list")

    p = vsub.add_parser("backup", help="back up a VM as a new restore point",
                        description="Snapshot a VM, read its disks (only the changed blocks "
                        "when CBT allows), store them as a new restore point in a repository "
                        "folder (created on first use), and remove the snapshot.",
                        epilog=EPILOG_BACKUP, formatter_class=raw)
    add_connection_options(p)
    add_repository_options(p, ssh_password=False)
    p.add_argument("--block-size", default="1M", help="256K, 512K, 1M (default) or 4M")
    p.add_argument("--compression", default="zstd-fast",
                   help="none, zstd-fast (default), zstd-3 or zstd-9")
    p.add_argument("--threads", type=_threads, default=2, help="worker threads (default 2)")
    p.add_argument("--read-streams", type=_whole(0, 256), default=0, metavar="N",
                   help="disk reads in flight at once (default: 4 over HTTPS, else --threads)")
    p.add_argument("--enable-cbt", action="store_true",
                   help="turn Changed Block Tracking on when it is off (a VM reconfigure)")
    p.add_argument("--transport", choices=("https", "direct"), default="https",
                   help="read disks over the datastore's HTTPS (default) or, with direct, "
                   "from the datastore's folder mounted on this machine")
    p.add_argument("--sample-blocks", type=_whole(0, inputs.COUNT_MAX), default=4, metavar="N",
                   help="blocks CBT calls unchanged to re-read and compare, per disk "
                   "(default 4; 0 turns the check off)")
    p.add_argument("--quiesce", action="store_true",
                   help="ask VMware Tools for a quiesced (application-consistent) snapshot")
    p.add_argument("vm", metavar="VM", type=_text, help="the VM's name or instance UUID")

    p = vsub.add_parser("restore-vm", help="restore an entire VM (new VM or over the original)",
                        description="Restore a VM restore point into vSphere: to a new VM "
                        "(--name) or over the original VM (--original).",
                        epilog=EPILOG_RESTORE_VM, formatter_class=raw)
    add_connection_options(p)
    add_repository_options(p, ssh_password=False)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--name", metavar="NEW_VM", type=_vm_name,
                       help="create a new VM with this name")
    where.add_argument("--original", action="store_true",
                       help="overwrite the disks of the VM the point was taken of")
    p.add_argument("--datacenter", help="new VM: datacenter (when there are several)")
    p.add_argument("--target-host", metavar="ESX_HOST", help="new VM: the host to run on")
    p.add_argument("--resource-pool", metavar="POOL", help="new VM: resource pool")
    p.add_argument("--datastore", help="new VM: datastore for its files and disks")
    p.add_argument("--folder", help="new VM: VM folder (default: the datacenter's)")
    p.add_argument("--keep-macs", action="store_true",
                   help="new VM: keep the recorded MAC addresses (default: new ones)")
    p.add_argument("--power-on", action="store_true", help="power the VM on afterwards")
    p.add_argument("--dry-run", action="store_true", help="say what would be done; change "
                   "nothing")
    p.add_argument("--yes", action="store_true",
                   help="--original: do not ask; the disks are overwritten")
    p.add_argument("point", metavar="POINT")

    p = vsub.add_parser("restore-disk", help="restore one disk into an existing VM",
                        description="Add disk N of a VM restore point to an existing VM as a "
                        "new disk.", epilog=EPILOG_RESTORE_DISK, formatter_class=raw)
    add_connection_options(p)
    add_repository_options(p, ssh_password=False)
    p.add_argument("--disk", type=_whole(0, inputs.COUNT_MAX), default=0, metavar="N",
                   help="disk number in the point (default 0)")
    p.add_argument("--vm", required=True, type=_text,
                   help="the VM to add the disk to (name or UUID)")
    p.add_argument("--datastore", help="datastore for the new disk (default: the VM's first "
                   "disk's)")
    p.add_argument("point", metavar="POINT")

    p = vsub.add_parser("hunter", help="find and fix leftover snapshots (Snapshot Hunter)",
                        description="Find vmkeep snapshots left behind by crashed runs, VMs "
                        "whose disks need consolidation and orphaned snapshot files; then fix "
                        "them (unless --dry-run).", epilog=EPILOG_HUNTER, formatter_class=raw)
    add_connection_options(p)
    p.add_argument("--dry-run", action="store_true", help="say what would be done; change "
                   "nothing")
    p.add_argument("--include-foreign", action="store_true",
                   help="also remove snapshots that are not vmkeep's (and allow remove-all "
                   "when a consolidation fails)")


EPILOG_APPLIANCE = """examples:
  vmkeep appliance start                  # detached; returns once it answers
  VMKEEP_HOME=/srv/vmkeep vmkeep appliance start
  vmkeep appliance status --json
  vmkeep appliance stop
  vmkeep appliance start --foreground     # under systemd (scripts/vmkeep-appliance.service)
  vmkeep appliance start --new-catalog    # the catalog is lost or damaged: start empty,
  vmkeep config restore --from /backups/main   # then bring the configuration back

The home folder holds the appliance's state, secrets and log; it is --home, else
$VMKEEP_HOME, else the per-user data folder. The socket is $VMKEEP_SOCKET, else
HOME/appliance.sock (mode 0600; only the appliance's own user may connect). The home is
private (folders 0700, files 0600): one found with group or other access is made so at
start, each path named, unless --allow-shared-home.
"""


def _add_appliance(sub: argparse._SubParsersAction[_Parser]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    appl = sub.add_parser("appliance", help="start, stop and check the appliance process",
                          description="The appliance is the process that owns vmkeep's state "
                          "and runs its work; the CLI and the TUI talk to it over a Unix "
                          "socket.", epilog=EPILOG_APPLIANCE, formatter_class=raw)
    asub = appl.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, text in (("start", "start the appliance (detached unless --foreground)"),
                       ("stop", "stop the appliance; running sessions end as stopped"),
                       ("status", "say whether the appliance runs (exit 3 when not)")):
        p = asub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".",
                            epilog=EPILOG_APPLIANCE, formatter_class=raw)
        p.add_argument("--home", metavar="DIR", help="home folder (default: $VMKEEP_HOME or "
                       "the per-user data folder)")
        if name == "start":
            p.add_argument("--foreground", action="store_true",
                           help="run in this process (for systemd), logging to stderr")
            p.add_argument("--new-catalog", action="store_true",
                           help="when the home's catalog is missing or damaged, start on a "
                           "new, empty one on purpose (a damaged file is kept aside as "
                           "catalog.duckdb.damaged-TIME); then `vmkeep config restore`")
            p.add_argument("--allow-shared-home", action="store_true",
                           help="leave a home that has group or other access as it is (by "
                           "default it is made private to its owner at start, each path "
                           "changed named); what the appliance makes is private either way")
        if name == "status":
            p.add_argument("--json", action="store_true", help="print a JSON object")


EPILOG_VCENTER = """examples:
  vmkeep vsphere fingerprint --host vc01.example.com      # check it against vCenter's own
  vmkeep vcenter add vc01 --host vc01.example.com --user backup@vsphere.local \\
      --password-file ~/.vc01-pw --fingerprint AB:CD:…:EF
  vmkeep vcenter list --json
  vmkeep vcenter test vc01
  vmkeep vcenter edit vc01 --fingerprint 12:34:…:78      # re-pin a renewed certificate
  vmkeep vcenter remove vc01

Without --fingerprint or --insecure, `add` fails and shows the server's fingerprint. The
password goes to the appliance's secret store, never to the catalog, logs or answers.
"""

EPILOG_REPO = """examples:
  vmkeep repo add main --path /backups/main      # creates the folder, or imports a repository
  vmkeep repo add offsite --path sftp://vmkeep@backup01/srv/vmkeep --ssh-key ~/.ssh/id_ed25519 \\
      --host-key-fingerprint SHA256:...          # as `ssh-keygen -l -E sha256` prints it
  vmkeep repo edit offsite --host-key-fingerprint SHA256:...   # trust a host's new key
  vmkeep repo list --json
  vmkeep repo rescan main                        # re-index it from its files
  vmkeep repo remove main                        # forget it; its files stay
"""


def _add_vcenter(sub: argparse._SubParsersAction[_Parser]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    vc = sub.add_parser("vcenter", help="vCenters the appliance backs up from",
                        description="Add, change, list, test and remove the vCenter servers "
                        "(or ESXi hosts) the appliance uses.", epilog=EPILOG_VCENTER,
                        formatter_class=raw)
    vsub = vc.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def secret(p: argparse.ArgumentParser) -> None:
        add_password_options(p)
        add_pin_options(p)

    p = vsub.add_parser("add", help="add a vCenter (logs in once to check)",
                        epilog=EPILOG_VCENTER, formatter_class=raw)
    p.add_argument("name", metavar="NAME", type=_name)
    p.add_argument("--host", required=True, type=_text, help="host name or address")
    p.add_argument("--port", type=_port, default=443, help="HTTPS port (default 443)")
    p.add_argument("--user", required=True, type=_text,
                   help="user name, e.g. backup@vsphere.local")
    secret(p)
    p = vsub.add_parser("edit", help="change a vCenter (re-pin, new password, …)",
                        epilog=EPILOG_VCENTER, formatter_class=raw)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--host", help="new host name or address")
    p.add_argument("--port", type=_port, help="new HTTPS port")
    p.add_argument("--user", help="new user name")
    secret(p)
    p = vsub.add_parser("list", help="list the vCenters", epilog=EPILOG_VCENTER,
                        formatter_class=raw)
    p.add_argument("--json", action="store_true", help="print a JSON list")
    for name, text in (("test", "log in with the stored settings and count the VMs"),
                       ("remove", "forget a vCenter and its stored password")):
        p = vsub.add_parser(name, help=text, epilog=EPILOG_VCENTER, formatter_class=raw)
        p.add_argument("name", metavar="NAME")


def _add_repo(sub: argparse._SubParsersAction[_Parser]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    rp = sub.add_parser("repo", help="repositories the appliance writes to",
                        description="Add, list, rescan and remove the appliance's "
                        "repositories.", epilog=EPILOG_REPO, formatter_class=raw)
    rsub = rp.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = rsub.add_parser("add", help="add a repository (a missing folder is created)",
                        epilog=EPILOG_REPO, formatter_class=raw)
    p.add_argument("name", metavar="NAME", type=_name)
    p.add_argument("--path", required=True, metavar="DIR|URL", type=_folder,
                   help="the repository's folder, or sftp://USER@HOST[:PORT]/ABSOLUTE/PATH")
    _add_ssh_login(p)
    p.add_argument("--encryption-password-file", metavar="FILE",
                   help="opens an encrypted repository; a new one is made encrypted with it "
                   "(first line of FILE, or VMKEEP_ENCRYPTION_PASSWORD). A lost password "
                   "cannot be recovered")
    p.add_argument("--reconnect-every", metavar="PERIOD",
                   help="SSH: when the connection drops, try again this often (default 15s)")
    p.add_argument("--reconnect-for", metavar="PERIOD",
                   help="SSH: and give up after this long (default 30m)")
    p = rsub.add_parser("edit", help="an SSH repository's login or trusted host key",
                        epilog=EPILOG_REPO, formatter_class=raw)
    p.add_argument("name", metavar="NAME")
    _add_ssh_login(p)
    p = rsub.add_parser("harden", help="make an SSH repository's files immutable",
                        description="After each session the files a new point needs become "
                        "immutable on the repository host (chattr +i) for --days after the end "
                        "of their epoch, through the root-owned helper "
                        "(scripts/install-immutable-helper.sh on the host).",
                        epilog=EPILOG_REPO, formatter_class=raw)
    p.add_argument("name", metavar="NAME")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--days", type=_whole(7, 9999), metavar="N", help="7 … 9999")
    g.add_argument("--off", action="store_true",
                   help="no new locks (those set stay until they expire)")
    p.add_argument("--epoch-days", type=_whole(1, 9999), metavar="N",
                   help="epoch length (default: 30, or --days if shorter)")
    p = rsub.add_parser("audit", help="compare a hardened repository's ledger with the host",
                        epilog=EPILOG_REPO, formatter_class=raw)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = rsub.add_parser("list", help="list the repositories", epilog=EPILOG_REPO,
                        formatter_class=raw)
    p.add_argument("--json", action="store_true", help="print a JSON list")
    for name, text in (("rescan", "rebuild the index of a repository from its files"),
                       ("remove", "forget a repository (its files stay)"),
                       ("repair-key", "put a damaged or lost block-id key file back from the "
                        "appliance's copy")):
        p = rsub.add_parser(name, help=text, epilog=EPILOG_REPO, formatter_class=raw)
        p.add_argument("name", metavar="NAME")


EPILOG_CATALOG = """examples:
  vmkeep catalog query "SELECT * FROM points_per_vm"
  vmkeep catalog query "SELECT vm, dedup_ratio FROM stored_bytes_per_vm ORDER BY 2" --json
  vmkeep catalog query "FROM changed_bytes_per_run WHERE created > now() - INTERVAL 7 DAY" --csv
  vmkeep catalog query "SHOW TABLES"

Exactly one SELECT (WITH … SELECT, FROM …, SHOW, DESCRIBE, SUMMARIZE) as DuckDB's own parser
classifies it; anything else (writes, several statements, ATTACH, COPY, PRAGMA, SET, file
functions, …) is refused with the reason, and the catalog is never changed. Views:
points_per_vm, changed_bytes_per_run, stored_bytes_per_vm, space_per_repository.
"""


def _add_catalog(sub: argparse._SubParsersAction[_Parser]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    cp = sub.add_parser("catalog", help="read-only SQL over the appliance's catalog",
                        description="Query the appliance's DuckDB catalog of restore points, "
                        "blocks and repositories.", epilog=EPILOG_CATALOG, formatter_class=raw)
    csub = cp.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = csub.add_parser("query", help="run one read-only SELECT", epilog=EPILOG_CATALOG,
                        formatter_class=raw)
    p.add_argument("sql", metavar="SQL")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print a JSON list of row objects")
    fmt.add_argument("--csv", action="store_true", help="print CSV with a header row")
    p.add_argument("--max-rows", type=int, default=1000, metavar="N",
                   help="at most N rows (default 1000)")
    p.add_argument("--timeout", type=_positive_float, default=10.0, metavar="SECONDS",
                   help="stop the query after this long (default 10)")


EPILOG_JOB = """examples:
  vmkeep job create nightly --vcenter vc01 --vm db01 --vm web01 --repo main --enable-cbt \\
      --keep-last 14
  vmkeep job run nightly --wait             # exit 0 success, 1 warning, 2 failed/stopped
  vmkeep job run nightly --full --wait      # active full: read everything, CBT or not
  vmkeep job list --json
  vmkeep job stop nightly
  vmkeep session list --json
  vmkeep session show 20261202T010203Z-1a2b3c --json
  vmkeep points list --vm db01 --json
  vmkeep restore disk 20261202T010203Z-9f8e7d6c --disk 1 --to /restore/db01-disk1.img
"""


def _add_schedule_options(p: argparse.ArgumentParser) -> None:
    when = p.add_argument_group("schedule (one of --daily, --monthly, --every, --after)")
    kind = when.add_mutually_exclusive_group()
    kind.add_argument("--daily", metavar="HH:MM", help="every day at this time (see --days)")
    kind.add_argument("--monthly", metavar="HH:MM",
                      help="monthly at this time, with --day N or --nth … --weekday …")
    kind.add_argument("--every", metavar="PERIOD", help="periodically: 90s, 30m, 2h")
    kind.add_argument("--after", metavar="JOB", help="when that job's session ends (chained)")
    when.add_argument("--days", metavar="DAYS", help="with --daily: weekdays, or mon,wed,fri")
    when.add_argument("--day", type=int, metavar="N", help="with --monthly: day of month, "
                      "-1 = the last")
    when.add_argument("--nth", choices=("first", "second", "third", "fourth", "last"),
                      help="with --monthly and --weekday: which one in the month")
    when.add_argument("--weekday", metavar="DAY", help="with --nth: mon … sun")
    when.add_argument("--tz", default="UTC", help="IANA time zone of the times (default UTC)")
    when.add_argument("--window", action="append", default=[], metavar="HH:MM-HH:MM",
                      help="backup window: when scheduled runs may run (repeatable); a run "
                      "still going when it closes stops cleanly")


def _add_jobs(sub: argparse._SubParsersAction[_Parser]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    jp = sub.add_parser("job", help="backup jobs: what, where, how", epilog=EPILOG_JOB,
                        description="Create, run, stop and change backup jobs.",
                        formatter_class=raw)
    jsub = jp.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = jsub.add_parser("create", help="create a backup job", epilog=EPILOG_JOB,
                        formatter_class=raw)
    p.add_argument("name", metavar="NAME", type=_name)
    p.add_argument("--vcenter", type=_name, help="the vCenter's name (vmkeep vcenter list)")
    p.add_argument("--copy-of", action="append", default=[], metavar="JOB", type=_name,
                   help="a backup copy job: copy this backup job's points to --repo (repeat "
                   "for more; its own schedule and retention)")
    p.add_argument("--vm", action="append", default=[], metavar="VM", type=_text,
                   help="a VM by name or instance UUID (repeat for more); resolved to its "
                   "instance UUID now, so a rename keeps it in the job")
    p.add_argument("--container", action="append", default=[], metavar="PATH", type=_text,
                   help="every VM in this folder, cluster, host or resource pool, looked up "
                   "at each run, by inventory path such as /DC0/host/DC0_C0 (repeatable; "
                   "`vmkeep inventory --containers` lists them)")
    p.add_argument("--parallel-vms", type=_whole(1, 16), default=2, metavar="N",
                   help="back up N VMs at once (default 2)")
    p.add_argument("--repo", required=True, type=_name,
                   help="the repository's name (vmkeep repo list)")
    p.add_argument("--block-size", default="1M", help="256K, 512K, 1M (default) or 4M")
    p.add_argument("--compression", default="zstd-fast",
                   help="none, zstd-fast (default), zstd-3 or zstd-9")
    p.add_argument("--enable-cbt", action="store_true",
                   help="allow turning Changed Block Tracking on where it is off")
    p.add_argument("--quiesce", action="store_true", help="quiesced snapshots (VMware Tools)")
    p.add_argument("--quiesce-fallback", choices=("fail", "warn"), default="warn",
                   help="when VMware Tools are not running: fail the VM, or warn and take a "
                   "crash-consistent snapshot (default)")
    p.add_argument("--keep-last", type=_keep_last, metavar="N", help="retention: points per VM")
    p.add_argument("--keep-days", type=_days, metavar="D", help="retention: days")
    _add_schedule_options(p)
    g = p.add_argument_group("guest processing over SSH (Linux guests)")
    g.add_argument("--guest-host", metavar="HOST[:PORT]",
                   help="the guest's SSH address; tools[:PORT]: the IP address VMware Tools "
                   "report at each backup")
    g.add_argument("--guest-user", metavar="USER", help="the guest account")
    g.add_argument("--guest-key", metavar="FILE", help="private key of the guest account")
    g.add_argument("--guest-password-file", metavar="FILE",
                   help="its password (or the key's passphrase), first line of FILE")
    g.add_argument("--guest-host-key-fingerprint", metavar="SHA256:…",
                   help="the guest's host key as `ssh-keygen -l -E sha256` prints it")
    g.add_argument("--pre-freeze", metavar="LOCAL_SCRIPT",
                   help="run this script in the guest before the snapshot")
    g.add_argument("--post-thaw", metavar="LOCAL_SCRIPT",
                   help="run this script in the guest right after the snapshot")
    g.add_argument("--script-timeout", default="10m", metavar="PERIOD",
                   help="kill a script (and its children) after this long (default 10m)")
    g.add_argument("--on-script-failure", choices=("fail", "warn"), default="fail",
                   help="a failing pre-freeze script fails the VM (default) or warns")
    g.add_argument("--guest-unreachable", choices=("fail", "warn"), default="fail",
                   help="a guest that cannot be reached fails the VM (default) or warns")
    g.add_argument("--postgres", metavar="HOST:PORT:USER[:DB]",
                   help="PostgreSQL in the guest, as psql there reaches it: held in backup "
                   "mode (pg_backup_start/stop) across the snapshot")
    lg = p.add_argument_group("log backup jobs (database logs from a guest folder)")
    lg.add_argument("--logs-of", metavar="VM",
                    help="make this a log backup job for VM's database logs (with --guest-…)")
    lg.add_argument("--log-folder", metavar="DIR",
                    help="the guest folder the logs are written to (PostgreSQL: the "
                    "archive_command's target)")
    lg.add_argument("--log-pattern", default="*", metavar="GLOB",
                    help="which file names to collect (default: all)")
    lg.add_argument("--log-command", metavar="CMD",
                    help="run this in the guest first (e.g. sqlcmd … BACKUP LOG …)")
    lg.add_argument("--log-settle", default="10s", metavar="PERIOD",
                    help="leave files changed more recently than this (default 10s)")
    p.add_argument("--exclude-disk", action="append", default=[], metavar="N|VM:N",
                   help="leave out disk N of every VM, or of one VM (repeatable)")
    p.add_argument("--rpo", type=_number(0.0, inputs.DAYS_MAX * 24, low_open=True),
                   metavar="HOURS",
                   help="alert when a VM has had no good point for longer than this")
    p.add_argument("--active-full", metavar="DAY",
                   help="read everything on this day: a weekday (sat) or a day of the month")
    p.add_argument("--notify", action="append", default=[], metavar="ADDRESS",
                   help="also e-mail this address about this job (repeatable)")
    p.add_argument("--retries", type=_whole(0, 100), default=3, metavar="N",
                   help="retry failed VMs N times (default 3)")
    p.add_argument("--retry-wait", default="10m", metavar="PERIOD",
                   help="between retries: 90s, 10m, 1h (default 10m)")
    p = jsub.add_parser("edit", help="change a job (what is given; the rest stays)",
                        epilog=EPILOG_JOB, formatter_class=raw)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--vm", action="append", metavar="VM", type=_text,
                   help="the job's VMs from now on (repeat for more)")
    p.add_argument("--container", action="append", metavar="PATH", type=_text,
                   help="the job's inventory containers from now on (repeat for more)")
    p.add_argument("--parallel-vms", type=_whole(1, 16), metavar="N",
                   help="back up N VMs at once")
    p.add_argument("--repo", type=_name,
                   help="another repository (its next run is a full read there)")
    p.add_argument("--keep-last", type=_keep_last, metavar="N", help="retention: points per VM")
    p.add_argument("--keep-days", type=_days, metavar="D", help="retention: days")
    p.add_argument("--retries", type=_whole(0, 100), metavar="N",
                   help="retry failed VMs N times")
    p.add_argument("--retry-wait", metavar="PERIOD", help="between retries: 90s, 10m, 1h")
    p.add_argument("--no-schedule", action="store_true", help="run only when asked")
    _add_schedule_options(p)
    for name, text in (("list", "list the jobs"), ("show", "show one job")):
        p = jsub.add_parser(name, help=text, epilog=EPILOG_JOB, formatter_class=raw)
        if name == "show":
            p.add_argument("name", metavar="NAME")
        p.add_argument("--json", action="store_true", help="print JSON")
    p = jsub.add_parser("run", help="run a job now", epilog=EPILOG_JOB, formatter_class=raw)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--full", action="store_true", help="active full: read every allocated area")
    p.add_argument("--wait", action="store_true",
                   help="follow the session to its end; exit 0 success, 1 warning, 2 failed")
    for name, text in (("stop", "stop a running job (it ends after cleaning up)"),
                       ("enable", "enable a job"), ("disable", "disable a job"),
                       ("delete", "delete a job (its restore points stay)")):
        p = jsub.add_parser(name, help=text, epilog=EPILOG_JOB, formatter_class=raw)
        p.add_argument("name", metavar="NAME")

    sp = sub.add_parser("session", help="sessions: the runs of jobs", epilog=EPILOG_JOB,
                        formatter_class=raw)
    ssub = sp.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = ssub.add_parser("list", help="sessions, oldest first", epilog=EPILOG_JOB,
                        formatter_class=raw)
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p = ssub.add_parser("show", help="a session with its tasks and log", epilog=EPILOG_JOB,
                        formatter_class=raw)
    p.add_argument("id", metavar="ID")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p = ssub.add_parser("follow", help="follow a session to its end", epilog=EPILOG_JOB,
                        formatter_class=raw)
    p.add_argument("id", metavar="ID")

    pp = sub.add_parser("points", help="restore points in the appliance's repositories",
                        epilog=EPILOG_JOB, formatter_class=raw)
    psub = pp.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = psub.add_parser("list", help="restore points, oldest first", epilog=EPILOG_JOB,
                        formatter_class=raw)
    p.add_argument("--vm", help="only this VM's points")
    p.add_argument("--json", action="store_true", help="print a JSON list")

    ip = sub.add_parser("inventory", help="the VMs of the appliance's vCenters",
                        epilog=EPILOG_JOB, formatter_class=raw)
    ip.add_argument("--vcenter", help="only this vCenter")
    ip.add_argument("--containers", action="store_true",
                    help="list datacenters, folders, clusters, hosts and resource pools (what "
                    "`job create --container` takes) instead of VMs")
    ip.add_argument("--json", action="store_true", help="print a JSON list")
    mp = sub.add_parser("move", help="move a job's (or a VM's) points to another repository",
                        description="Copy every point of a job (or of one VM) to another "
                        "repository, verify the copies, switch the job over (its next run is "
                        "incremental there), then remove them at the source (unless immutable "
                        "there).", epilog=EPILOG_JOB, formatter_class=raw)
    what = mp.add_mutually_exclusive_group(required=True)
    what.add_argument("--job", type=_name, help="the backup job whose points move")
    what.add_argument("--vm", type=_text, help="one VM's points")
    mp.add_argument("--from", dest="source", metavar="REPO", type=_name,
                    help="with --vm: the repository they move from (if not the only one)")
    mp.add_argument("--to", required=True, metavar="REPO", type=_name,
                    help="the target repository")
    vp = sub.add_parser("verify", help="health check of a repository or a point",
                        epilog=EPILOG_JOB, formatter_class=raw)
    vp.add_argument("--repo", required=True, type=_name, help="the repository's name")
    vp.add_argument("point", metavar="POINT_ID", nargs="?", type=_text)
    pp2 = sub.add_parser("prune", help="retention over a whole repository",
                         epilog=EPILOG_JOB, formatter_class=raw)
    pp2.add_argument("--repo", required=True, type=_name, help="the repository's name")
    pp2.add_argument("--keep-last", type=_keep_last, metavar="N",
                     help="keep the N newest per VM")
    pp2.add_argument("--keep-days", type=_days, metavar="D", help="keep points younger than D")
    pp2.add_argument("--dry-run", action="store_true", help="say what would go")

    ap = sub.add_parser("alerts", help="what needs an administrator now",
                        description="VMs past their job's RPO, snapshots the Snapshot Hunter "
                        "would clean up, repositories short of space: as of the last look.",
                        epilog=EPILOG_JOB, formatter_class=raw)
    ap.add_argument("--json", action="store_true", help="print a JSON list")

    np_ = sub.add_parser("notify", help="e-mail and webhook notifications",
                         description="Where the appliance reports sessions that end.",
                         epilog=EPILOG_JOB, formatter_class=raw)
    nsub = np_.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = nsub.add_parser("set", help="set the notification settings (all at once)",
                        epilog=EPILOG_JOB, formatter_class=raw)
    p.add_argument("--on", default="failed,warning",
                   help="results to report: failed, warning, success (default failed,warning)")
    p.add_argument("--smtp-host", help="SMTP server for e-mail")
    p.add_argument("--smtp-port", type=_port, default=25, help="SMTP port (default 25)")
    p.add_argument("--starttls", action="store_true", help="use STARTTLS")
    p.add_argument("--from", dest="mail_from", default="vmkeep@localhost",
                   help="sender address")
    p.add_argument("--to", action="append", default=[], metavar="ADDRESS",
                   help="recipient (repeatable)")
    p.add_argument("--webhook", metavar="URL", help="POST a JSON report here")
    p.add_argument("--alert-every", default="5m", metavar="PERIOD",
                   help="how often to look for alerts such as a missed RPO (default 5m)")
    p.add_argument("--free-space-alert", type=_number(0.0, 100.0), default=10.0,
                   metavar="PERCENT",
                   help="alert when a repository has less free space than this (default 10)")
    p = nsub.add_parser("show", help="show the notification settings", epilog=EPILOG_JOB,
                        formatter_class=raw)
    p.add_argument("--json", action="store_true", help="print JSON")

    cfg = sub.add_parser("config", help="back up and restore the appliance's configuration",
                         description="Seal vCenters, repositories, jobs, settings and secrets "
                         "with a password into a repository, and bring them back on a fresh "
                         "appliance.", epilog=EPILOG_JOB, formatter_class=raw)
    csub = cfg.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def cfg_secret(p: argparse.ArgumentParser) -> None:
        add_password_options(p, env="VMKEEP_CONFIG_PASSWORD")

    p = csub.add_parser("backup", help="write a configuration backup into a repository",
                        epilog=EPILOG_JOB, formatter_class=raw)
    p.add_argument("--repo", required=True, type=_name, help="the repository's name")
    cfg_secret(p)
    p = csub.add_parser("restore", help="restore a configuration backup (fresh appliance)",
                        epilog=EPILOG_JOB, formatter_class=raw)
    p.add_argument("--from", dest="source", required=True, metavar="PATH", type=_read_path,
                   help="a repository folder (its newest backup) or a backup file")
    cfg_secret(p)
    p = csub.add_parser("schedule", help="back the configuration up on a schedule",
                        description="Back the configuration up into a repository on a "
                        "schedule (the password is kept in the secret store; give it the "
                        "first time). Without a schedule option: show the schedule.",
                        epilog=EPILOG_JOB, formatter_class=raw)
    p.add_argument("--repo", type=_name, help="the repository's name")
    p.add_argument("--off", action="store_true", help="stop the scheduled backups")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_schedule_options(p)
    cfg_secret(p)

    hp = sub.add_parser("hunter", help="Snapshot Hunter on the appliance's vCenters",
                        description="Find vmkeep snapshots left by crashed runs (listed first), "
                        "disks needing consolidation and orphaned snapshot files on the "
                        "appliance's vCenters, and fix them (unless --dry-run).",
                        epilog=EPILOG_JOB, formatter_class=raw)
    hp.add_argument("--vcenter", help="only this vCenter (default: all)")
    hp.add_argument("--dry-run", action="store_true", help="say what would be done")
    hp.add_argument("--include-foreign", action="store_true",
                    help="also remove snapshots that are not vmkeep's")

    rp = sub.add_parser("restore", help="restore from a restore point", epilog=EPILOG_JOB,
                        formatter_class=raw)
    rsub = rp.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = rsub.add_parser("vm", help="an entire VM: to a new VM or over the original",
                        epilog=EPILOG_JOB, formatter_class=raw)
    p.add_argument("point", metavar="POINT_ID")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--name", metavar="NEW_VM", type=_vm_name,
                       help="create a new VM with this name")
    where.add_argument("--original", action="store_true",
                       help="overwrite the VM the point was taken of (needs --yes)")
    p.add_argument("--yes", action="store_true", help="--original: the disks are overwritten")
    p.add_argument("--datastore", help="new VM: its datastore")
    p.add_argument("--target-host", metavar="ESX_HOST", help="new VM: its host")
    p.add_argument("--power-on", action="store_true", help="power the VM on afterwards")
    p = rsub.add_parser("disk", help="a disk of a point to a new raw image file",
                        epilog=EPILOG_JOB, formatter_class=raw)
    p.add_argument("point", metavar="POINT_ID")
    p.add_argument("--disk", type=_whole(0, inputs.COUNT_MAX), default=0, metavar="N",
                   help="disk number: (controller bus, unit) order (default 0)")
    p.add_argument("--to", required=True, metavar="FILE", type=_folder, help="a new file")
    p = rsub.add_parser("postgres", help="PostgreSQL to a point in time: the base backup's "
                        "label, the WAL and the recovery settings into a data folder",
                        description="After the image point's disk was restored and its "
                        "PostgreSQL data folder taken out of it: writes backup_label (kept with "
                        "the point), every WAL file the VM's log backup job stored (into "
                        "vmkeep-wal/), recovery.signal and the recovery settings, so a "
                        "PostgreSQL started on the folder replays up to --until.",
                        epilog=EPILOG_JOB, formatter_class=raw)
    p.add_argument("point", metavar="POINT_ID", help="the image point (with a base backup)")
    p.add_argument("--data-dir", required=True, metavar="DIR", type=_folder,
                   help="the restored data folder (on the appliance's machine)")
    p.add_argument("--until", metavar="TIME",
                   help="replay up to this time, e.g. '2026-12-02 07:15:00+00' (default: "
                   "everything stored)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vmkeep", description="Agentless image-based backup for vSphere.")
    sub = parser.add_subparsers(dest="group", required=True, parser_class=_Parser)
    image = sub.add_parser("image", help="back up and restore raw disk images (offline)",
                           description="Back up, restore, check and prune raw disk images in "
                           "a repository folder, without the appliance.",
                           epilog=EPILOG_IMAGE,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    isub = image.add_subparsers(dest="command", required=True, parser_class=_Parser)

    common = add_repository_options

    p = isub.add_parser("backup", help="back up an image file as a new restore point")
    common(p)
    p.add_argument("--name", required=True, type=_name, help="the protected object's name")
    p.add_argument("--changed", metavar="AREAS.json",
                   help='areas changed since the last point: [{"offset": n, "length": n}, …]')
    p.add_argument("--block-size", default="1M", help="256K, 512K, 1M (default) or 4M")
    p.add_argument("--compression", default="zstd-fast",
                   help="none, zstd-fast (default), zstd-3 or zstd-9")
    p.add_argument("--threads", type=_threads, default=2, help="worker threads (default 2)")
    p.add_argument("file", metavar="FILE", help="raw image file or block device")

    p = isub.add_parser("restore", help="restore a point's disk to a new raw image file")
    common(p)
    p.add_argument("--disk", type=_whole(0, inputs.COUNT_MAX), default=0,
                   help="disk number (default 0)")
    p.add_argument("point", metavar="POINT")
    p.add_argument("file", metavar="FILE")

    p = isub.add_parser("verify", help="health check of one point or the whole repository")
    common(p)
    p.add_argument("point", metavar="POINT", nargs="?")

    p = isub.add_parser("points", help="list restore points, oldest first")
    common(p)
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument("--name", help="only points of this object")

    p = isub.add_parser("rescan", help="rebuild the catalog cache from the repository alone")
    common(p)

    p = isub.add_parser("prune", help="apply retention, then free space")
    common(p)
    p.add_argument("--keep-last", type=_keep_last, metavar="N",
                   help="keep the N newest per name")
    p.add_argument("--keep-days", type=_days, metavar="D", help="keep points younger than D days")
    p.add_argument("--compact-below", type=_number(0.0, 1.0), default=0.75, metavar="SHARE",
                   help="rewrite packs whose live share is under SHARE (default 0.75)")
    p.add_argument("--dry-run", action="store_true", help="say what would go; change nothing")

    p = isub.add_parser("repair-config",
                        help="recreate a lost config from the key file and the manifests",
                        description="Recreate the config file of a repository that lost it "
                        "(its manifests, packs and key files intact): the block-id key file, "
                        "the master key file of an encrypted repository and the manifests say "
                        "what it held. The repository id is recorded nowhere else: a new one, "
                        "unless --repository-id gives the old one (`vmkeep repo list --json` "
                        "of an appliance that used it). An intact config is never replaced.")
    common(p)
    p.add_argument("--repository-id", metavar="ID",
                   help="the repository id to keep (32 hex digits)")

    _add_vsphere(sub)
    _add_appliance(sub)
    _add_vcenter(sub)
    _add_repo(sub)
    _add_catalog(sub)
    _add_jobs(sub)
    p = sub.add_parser("tui", help="the keyboard-driven TUI (dashboard, jobs, restores, …)",
                       description="Open the TUI of the appliance that --home / VMKEEP_HOME / "
                       "VMKEEP_SOCKET name. ctrl+q quits; ctrl+p lists every action.")
    p.add_argument("--home", help="the appliance's home (default: VMKEEP_HOME)")
    return parser


def _request_refused(exc: Exception) -> UsageError | None:
    """A request the CLI built from its arguments that the API's own checks refuse (pydantic's
    ValidationError, ``appliance.api``): a usage error that says which value and why."""
    pydantic = sys.modules.get("pydantic")
    if pydantic is None or not isinstance(exc, pydantic.ValidationError):
        return None
    problems = []
    for err in exc.errors()[:3]:
        where = ".".join(str(x) for x in err.get("loc", ()))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append(f"{where}: {msg}" if where else msg)
    return UsageError("; ".join(problems) + "; see `vmkeep --help`")


def main(argv: Sequence[str] | None = None) -> int:
    # What the commands make is private whatever the caller's umask (files they make
    # themselves are 0600 anyway; this covers what DuckDB makes, such as a catalog's WAL).
    umask = os.umask(0o077)
    try:
        args = build_parser().parse_args(argv)
        if args.group == "tui":
            # The TUI runs as its own program: appliance never imports tui (import-linter).
            sys.stdout.flush()
            tui_args = ["--home", args.home] if args.home else []
            os.execv(sys.executable, [sys.executable, "-m", "tui", *tui_args])
        if args.group == "vsphere":
            from appliance import vsphere_cli

            code = vsphere_cli.run(args)
        elif args.group == "appliance":
            from appliance import daemon_cli

            code = daemon_cli.run(args)
        elif args.group == "vcenter":
            from appliance import vcenter_cli

            code = vcenter_cli.run(args)
        elif args.group == "repo":
            from appliance import repo_cli

            code = repo_cli.run(args)
        elif args.group == "catalog":
            from appliance import catalog_cli

            code = catalog_cli.run(args)
        elif args.group in ("job", "session", "points", "restore", "hunter", "notify", "alerts",
                            "move",
                            "config", "inventory", "verify", "prune"):
            from appliance import job_cli

            code = job_cli.run(args)
        else:
            from appliance import image_cli

            code = image_cli.run(args)
        sys.stdout.flush()  # here, so that a closed pipe is caught below
        return code
    except VmkeepError as exc:
        # One line, whatever names it quotes (a VM's name may hold a newline or an escape).
        print(f"vmkeep: error: {inputs.shown(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("vmkeep: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of our output went away (`vmkeep … | head`): not an error of ours.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except SystemExit as exc:  # --help
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    except Exception as exc:
        refused = _request_refused(exc)
        if refused is not None:
            print(f"vmkeep: error: {inputs.shown(refused)}", file=sys.stderr)
            return refused.exit_code
        print(f"vmkeep: internal error: {type(exc).__name__}: {inputs.shown(exc)}; please "
              "report this with the command you ran", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        os.umask(umask)


if __name__ == "__main__":
    sys.exit(main())
