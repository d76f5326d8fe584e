"""``vmkeep vsphere …``: talk to a vCenter/ESXi host directly, without the appliance.

Show the server's certificate fingerprint, list VMs, back a VM up into a repository folder
(with the same catalog cache, lock, sync and cleanup as ``vmkeep image``), and run the
Snapshot Hunter; restoring is in ``vsphere_restore_cmd``. A command opens what it needs with
``connected(args)`` (a logged-in session) and ``repository(args, …)`` (repository + catalog,
locked and synchronised), both in ``vsphere_connect``; the engine is imported when a command
runs, not to build the parser.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from appliance import inputs
from appliance.cli import vsphere_json, vsphere_restore_cmd
from appliance.cli.args import (
    RAW,
    THREADS,
    Parser,
    Subparsers,
    add_connection_options,
    add_json_option,
    add_repository_options,
    text_arg,
    whole,
)
from appliance.cli.vsphere_connect import (
    connected,
    count,
    log_to_stderr,
    logging_to_stderr,
    repository,
)
from appliance.inputs import shown
from appliance.progress import Progress, human_bytes

if TYPE_CHECKING:
    from appliance.jobs.vm_backup import VmBackupResult
    from appliance.vsphere.inventory import VmInfo

# `vsphere backup` exits with these, as `vmkeep job run --wait` does.
EXIT_BY_STATUS = {"success": 0, "warning": 1, "failed": 2}
EXIT_HUNT_FAILED = 1

EPILOG_VSPHERE = """examples:
  vmkeep vsphere fingerprint --host vc01.example.com
  VC="--host vc01.example.com --user backup@vsphere.local \\
      --vcenter-password-file $HOME/.vc01-pw --fingerprint AB:CD:…:EF"
  vmkeep vsphere vms $VC
  vmkeep vsphere backup $VC --repo /backups/r1 db01
  vmkeep vsphere hunter $VC --dry-run

The password comes from exactly one of --vcenter-password-stdin (first line of standard
input), --vcenter-password-file FILE (its first line; --password-stdin and --password-file
are the same options) or the environment variable VMKEEP_VSPHERE_PASSWORD; never from the
command line. Pin the server's certificate with --fingerprint (what
`vmkeep vsphere fingerprint` prints), or turn verification off with --insecure.
"""

# $VC in the examples: the connection options of every command that logs in.
_VC = """  VC="--host vc01.example.com --user backup@vsphere.local \\
      --vcenter-password-file $HOME/.vc01-pw --fingerprint AB:CD:…:EF"
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
  pass show esx01 | vmkeep vsphere vms --host esx01 --user root --vcenter-password-stdin --insecure

Disks are numbered 0, 1, … in (controller bus, unit) order: the N of `image restore --disk N`.
"""

EPILOG_BACKUP = f"""examples:
{_VC}  vmkeep vsphere backup $VC --repo /backups/r1 db01
  vmkeep vsphere backup $VC --repo /backups/r1 --enable-cbt -v db01
  vmkeep vsphere backup $VC --repo /backups/r1 4210a3c1-8e5e-41b3-9d7a-0c2f8e6b1a22
  vmkeep vsphere backup $VC --repo /backups/r1 --transport vcenter db01
  vmkeep vsphere backup $VC --repo /backups/r1 --transport direct \
      --datastore-path nfs01=/mnt/nfs01 db01
  vmkeep image points --repo /backups/r1 --name db01

Disks are read from the ESXi host that runs the VM (--transport host, the default: its
certificate pinned by the thumbprint the vCenter reports), through the vCenter (vcenter,
slower) or from NFS datastores mounted here (direct, each named with --datastore-path).
Prints the restore point's id on stdout; log lines go to stderr (informational ones with -v).
Exit codes, the same as `vmkeep job run --wait` uses: 0 success; 1 backed up with
warnings (a CBT fallback, a skipped disk); 2 the VM failed (no disk could be backed up).
Errors that stop it before a result (login, lock, repository) exit with their own codes
(docs/CLI.md).
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


def add_parser(sub: Subparsers) -> None:
    raw = RAW
    vsphere = sub.add_parser("vsphere", help="list, back up and clean up vSphere VMs (offline)",
                             description="Talk to a vCenter or ESXi host directly, without "
                             "the appliance: show its certificate, list VMs, back a VM up "
                             "into a repository folder, clean up leftover snapshots.",
                             epilog=EPILOG_VSPHERE, formatter_class=raw)
    vsub = vsphere.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = vsub.add_parser("fingerprint", help="show the server's certificate fingerprint",
                        description="Print the SHA-256 fingerprint of the TLS certificate "
                        "the server presents.", epilog=EPILOG_FINGERPRINT, formatter_class=raw)
    add_connection_options(p, login=False)
    add_json_option(p)

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
    p.add_argument("--threads", type=THREADS, default=2, help="worker threads (default 2)")
    p.add_argument("--read-streams", type=whole(0, 256), default=0, metavar="N",
                   help="disk reads in flight at once (default: 4 over HTTPS, else "
                   "--threads)")
    p.add_argument("--enable-cbt", action="store_true",
                   help="turn Changed Block Tracking on when it is off (a VM reconfigure)")
    p.add_argument("--transport", choices=("host", "vcenter", "direct", "hotadd", "https"),
                   default="host",
                   help="where disks are read: host (default: the ESXi host that runs the "
                   "VM, with service tickets), vcenter (through the vCenter, slower; "
                   "https is its old name), direct (datastores mounted here, named with "
                   "--datastore-path) or hotadd (attached to the appliance's own VM)")
    p.add_argument("--datastore-path", action="append", default=[], metavar="DS=DIR",
                   type=text_arg, help="with --transport direct: datastore DS is mounted at "
                   "DIR on this machine (repeat for each datastore)")
    p.add_argument("--sample-blocks", type=whole(0, inputs.COUNT_MAX), default=4, metavar="N",
                   help="blocks CBT calls unchanged to re-read and compare, per disk "
                   "(default 4; 0 turns the check off)")
    p.add_argument("--quiesce", action="store_true",
                   help="ask VMware Tools for a quiesced (application-consistent) snapshot")
    p.add_argument("vm", metavar="VM", type=text_arg, help="the VM's name or instance UUID")
    add_json_option(p, "a JSON object (exit codes as without it)")

    vsphere_restore_cmd.add_parsers(vsub)

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
    add_json_option(p, "a JSON object (exit codes as without it)")


def cmd_fingerprint(args: argparse.Namespace) -> int:
    from appliance.vsphere.session import fetch_fingerprint, format_fingerprint

    value = format_fingerprint(fetch_fingerprint(args.host, args.port))
    print(json.dumps(vsphere_json.fingerprint(args.host, args.port, value), indent=2)
          if args.json else value)
    return 0


def vm_listing(vms: list[VmInfo]) -> list[dict[str, object]]:
    return [{
        "name": vm.name, "instance_uuid": vm.instance_uuid, "moref": vm.moref,
        "power_state": vm.power_state, "cbt_enabled": vm.cbt_enabled,
        "consolidation_needed": vm.consolidation_needed,
        "snapshots": [s.name for s in vm.snapshots],
        "disks": [{"index": d.index, "key": d.key, "label": d.label,
                   "capacity_bytes": d.capacity_bytes, "file_name": d.file_name,
                   "backing_type": d.backing_type, "bus": d.controller_bus,
                   "unit": d.unit_number}
                  for d in vm.disks],
    } for vm in vms]


_POWER = {"poweredOn": "on", "poweredOff": "off", "suspended": "suspended"}


def print_vm_table(vms: list[VmInfo]) -> None:
    head = ("NAME", "POWER", "CBT", "SNAPSHOTS", "CONSOLIDATE")
    rows = [(shown(vm.name), _POWER.get(vm.power_state, vm.power_state or "?"),
             "on" if vm.cbt_enabled else "off", str(len(vm.snapshots)),
             "needed" if vm.consolidation_needed else "no") for vm in vms]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(head)]

    def line(cells: tuple[str, ...], disk: str) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + "  " + disk

    print(line(head, "DISKS").rstrip())
    blank = tuple("" for _ in head)
    for vm, row in zip(vms, rows, strict=True):
        disks = [f"{d.index}: {human_bytes(d.capacity_bytes)} {shown(d.file_name)}".rstrip()
                 for d in vm.disks] or ["-"]
        print(line(row, disks[0]))
        for disk in disks[1:]:
            print(line(blank, disk))


def cmd_vms(args: argparse.Namespace) -> int:
    from appliance.vsphere.inventory import list_vms

    with connected(args) as session:
        vms = list_vms(session)
    if args.json:
        print(json.dumps(vm_listing(vms), indent=2))
    elif not vms:
        print(f"no VMs on {args.host}:{args.port}")
    else:
        print_vm_table(vms)
    return 0


def _backup_summary(result: VmBackupResult) -> str:
    b = result.backup
    assert b is not None
    skipped = sum(1 for d in result.disks if d.read_kind == "skipped")
    disks = f"{count(len(result.disks) - skipped, 'disk')} backed up" + (
        f", {skipped} skipped" if skipped else "")
    return (f"{b.kind} backup of VM {result.vm_name!r}: {disks}; read "
            f"{human_bytes(b.bytes_read)}, stored {human_bytes(b.bytes_stored)} new "
            f"({b.blocks_new} blocks, {b.blocks_deduplicated} deduplicated) in "
            f"{b.seconds:.1f}s; status {result.status}"
            + (f" ({count(len(result.warnings), 'warning')})" if result.warnings else ""))


def cmd_backup(args: argparse.Namespace) -> int:
    from appliance.jobs.backup import BackupOptions, block_size_named
    from appliance.jobs.vm_backup import backup_vm
    from appliance.repository import codec
    from appliance.vsphere.disk_reader import check_transport, parse_datastore_paths
    from appliance.vsphere.inventory import find_vm

    # Check every input before vSphere or the repository is touched.
    transport = check_transport("vcenter" if args.transport == "https" else args.transport,
                                parse_datastore_paths(args.datastore_path))
    options = BackupOptions(block_size=block_size_named(args.block_size),
                            compression=codec.compression_named(args.compression).name,
                            threads=max(1, args.threads), read_streams=args.read_streams)
    with connected(args) as session:
        vm = find_vm(session, args.vm)  # a wrong name fails before a repository is created
        with repository(args, operation="backup", writes=True) as ws:
            progress = Progress(f"backup {vm.name}")
            try:
                result = backup_vm(session, ws, vm.instance_uuid or args.vm, options,
                                   enable_cbt_consent=args.enable_cbt,
                                   transport=transport,
                                   datastore_paths=parse_datastore_paths(
                                       args.datastore_path),
                                   sample_blocks=args.sample_blocks, quiesce=args.quiesce,
                                   log=log_to_stderr(args.verbose), progress=progress)
            finally:
                progress.done()
    if args.json:
        print(json.dumps(vsphere_json.backup(result), indent=2))
    elif result.point_id is not None and result.backup is not None:
        print(result.point_id)
        print(_backup_summary(result), file=sys.stderr)
    return EXIT_BY_STATUS.get(result.status, EXIT_BY_STATUS["failed"])


def cmd_hunter(args: argparse.Namespace) -> int:
    from appliance.vsphere.hunter import Status, describe, execute_hunt, plan_hunt

    with connected(args) as session:
        plan = plan_hunt(session, include_foreign=args.include_foreign)
        if args.json:
            result = None if args.dry_run or plan.empty else execute_hunt(session, plan)
            print(json.dumps(vsphere_json.hunt(plan, result, dry_run=args.dry_run), indent=2))
            return 0 if result is None or result.ok else EXIT_HUNT_FAILED
        for text in describe(plan):
            print(shown(text))
        if args.dry_run or plan.empty:
            return 0
        result = execute_hunt(session, plan)
    for n, o in enumerate(result.outcomes, 1):
        print(shown(f"{n}. {o.status.value}: VM {o.finding.vm_name!r} ({o.finding.vm_moref}): "
                    f"{o.detail}"))
    reported = sum(1 for o in result.outcomes if o.status is Status.REPORTED)
    print(f"Snapshot Hunter: {len(result.fixed)} fixed, {len(result.failed)} failed, "
          f"{reported} reported only")
    return 0 if result.ok else EXIT_HUNT_FAILED


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "fingerprint": cmd_fingerprint, "vms": cmd_vms, "backup": cmd_backup,
    "hunter": cmd_hunter, **vsphere_restore_cmd.COMMANDS,
}


def run(args: argparse.Namespace) -> int:
    from appliance.cli.offline import cache_errors, folder_expected, private_cache

    if args.command in ("backup", "restore-vm", "restore-disk"):
        private_cache()  # the repository's catalog cache: say so before any work
    with logging_to_stderr(getattr(args, "verbose", False)), cache_errors(), \
            folder_expected(args):
        return COMMANDS[args.command](args)
