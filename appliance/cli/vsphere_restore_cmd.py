"""``vmkeep vsphere restore-vm|restore-disk``: restore a VM restore point into vSphere
directly, without the appliance (subcommands of ``vmkeep vsphere``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from appliance import inputs
from appliance.cli import vsphere_json
from appliance.cli.args import (
    RAW,
    Subparsers,
    add_connection_options,
    add_json_option,
    add_network_option,
    add_repository_options,
    text_arg,
    vm_name_arg,
    whole,
)
from appliance.cli.vsphere_connect import connected, count, log_to_stderr, repository, say
from appliance.errors import UsageError
from appliance.inputs import shown
from appliance.progress import Progress, human_bytes

if TYPE_CHECKING:
    from appliance.jobs.vm_restore import VmRestorePlan

EXIT_NOT_CONFIRMED = 1  # restore-vm --original: the person did not confirm

# $VC in the examples: the connection options of every command that logs in.
_VC = """  VC="--host vc01.example.com --user backup@vsphere.local \\
      --vcenter-password-file $HOME/.vc01-pw --fingerprint AB:CD:…:EF"
"""


EPILOG_RESTORE_VM = f"""examples:
{_VC}  vmkeep vsphere restore-vm $VC --repo /backups/r1 POINT --name db01-restored
  vmkeep vsphere restore-vm $VC --repo /backups/r1 POINT --name db01-test \\
      --target-host esx02 --datastore ssd01 --power-on
  vmkeep vsphere restore-vm $VC --repo /backups/r1 POINT --original --dry-run
  vmkeep vsphere restore-vm $VC --repo /backups/r1 POINT --original --yes

--name: a new VM with the recorded hardware (CPUs, memory, hardware version, firmware and
secure boot, extraConfig, controllers, disks at their bus and unit with their provisioning,
NICs of their type on the same networks with new MAC addresses unless --keep-macs); --dry-run
lists what it sets and what it cannot (a vTPM, a storage policy, a missing network) and why;
if anything fails the new VM is deleted again. --original: over the VM the point was taken
of (found by its instance UUID): it is powered off and its disks are overwritten; it must
have no snapshots. Without --yes this asks for the VM's name on a terminal. Its Changed Block
Tracking is reset, so its next backup reads every allocated area (deduplicated).
"""

EPILOG_RESTORE_DISK = f"""examples:
{_VC}  vmkeep vsphere restore-disk $VC --repo /backups/r1 POINT --disk 1 --vm fileserver
  vmkeep image restore --repo /backups/r1 --disk 1 POINT disk1.img   # to a raw file instead

Adds disk N of the point as a new thin disk of the VM (first free SCSI slot, on the datastore
of its first disk unless --datastore) and writes the backed-up bytes into it.
"""


def add_parsers(vsub: Subparsers) -> None:
    """restore-vm and restore-disk, in ``vmkeep vsphere``'s subcommands."""
    raw = RAW
    p = vsub.add_parser("restore-vm", help="restore an entire VM (new VM or over the original)",
                        description="Restore a VM restore point into vSphere: to a new VM "
                        "(--name) or over the original VM (--original).",
                        epilog=EPILOG_RESTORE_VM, formatter_class=raw)
    add_connection_options(p)
    add_repository_options(p, ssh_password=False)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--name", metavar="NEW_VM", type=vm_name_arg,
                       help="create a new VM with this name")
    where.add_argument("--original", action="store_true",
                       help="overwrite the disks of the VM the point was taken of")
    p.add_argument("--datacenter", help="new VM: datacenter (when there are several)")
    p.add_argument("--target-host", metavar="ESX_HOST", help="new VM: the host to run on")
    p.add_argument("--resource-pool", metavar="POOL", help="new VM: resource pool")
    p.add_argument("--datastore", help="new VM: datastore for its files and disks")
    p.add_argument("--folder", help="new VM: VM folder (default: the datacenter's)")
    add_network_option(p)
    p.add_argument("--keep-macs", action="store_true",
                   help="new VM: keep the recorded MAC addresses (default: new ones)")
    p.add_argument("--power-on", action="store_true", help="power the VM on afterwards")
    p.add_argument("--dry-run", action="store_true", help="say what would be done; change "
                   "nothing")
    p.add_argument("--yes", action="store_true",
                   help="--original: do not ask; the disks are overwritten")
    _transport_option(p, "--original: ", hotadd=True)
    p.add_argument("point", metavar="POINT")
    add_json_option(p, "a JSON object (with --dry-run: the plan's lines)")

    p = vsub.add_parser("restore-disk", help="restore one disk into an existing VM",
                        description="Add disk N of a VM restore point to an existing VM as a "
                        "new disk.", epilog=EPILOG_RESTORE_DISK, formatter_class=raw)
    add_connection_options(p)
    add_repository_options(p, ssh_password=False)
    p.add_argument("--disk", type=whole(0, inputs.COUNT_MAX), default=0, metavar="N",
                   help="disk number in the point (default 0)")
    p.add_argument("--vm", required=True, type=text_arg,
                   help="the VM to add the disk to (name or UUID)")
    p.add_argument("--datastore", help="datastore for the new disk (default: the VM's first "
                   "disk's)")
    _transport_option(p, "")
    p.add_argument("point", metavar="POINT")
    add_json_option(p)


def _transport_option(p: argparse.ArgumentParser, prefix: str, *, hotadd: bool = False
                      ) -> None:
    choices = ("host", "vcenter", "hotadd") if hotadd else ("host", "vcenter")
    p.add_argument("--transport", choices=choices, default="host",
                   help=prefix + "where the disk bytes are written: host (default: the ESXi "
                   "host that runs the VM, with service tickets and its certificate pinned) "
                   "or vcenter (relayed by the vCenter's /folder)"
                   + (", or hotadd (attached to the VM this machine runs in: the point's "
                      "blocks are written and what is allocated now but zero in the point "
                      "is zeroed)" if hotadd else ""))


def _confirm_overwrite(plan: VmRestorePlan, yes: bool) -> bool:
    """Ask on a terminal for the VM's name; without one, --yes is needed."""
    if yes:
        return True
    if not (sys.stdin is not None and sys.stdin.isatty()):
        raise UsageError("restoring over the original VM overwrites its disks: pass --yes to "
                         "confirm (see the plan with --dry-run), or restore to a new VM with "
                         "--name")
    for line in plan.describe():
        print(line, file=sys.stderr)
    answer = input(f"type the VM's name ({plan.target_name}) to overwrite it: ")
    return answer.strip() == plan.target_name


def cmd_restore_vm(args: argparse.Namespace) -> int:
    from appliance.jobs.vm_restore import (
        new_vm_networks,
        new_vm_placement,
        plan_restore_new,
        plan_restore_original,
        restore_new_vm,
        restore_original_vm,
    )

    log = log_to_stderr(args.verbose)
    with connected(args) as session, \
            repository(args, operation="restore", writes=False) as ws:
        if args.original:
            plan = plan_restore_original(session, ws, args.point,
                                         transport=args.transport)
        elif args.transport == "hotadd":
            raise UsageError("--transport hotadd writes over the original VM only "
                             "(--original)")
        else:
            placement = new_vm_placement(
                session, ws, args.point, datacenter=args.datacenter, host=args.target_host,
                resource_pool=args.resource_pool, datastore=args.datastore,
                folder=args.folder) if args.dry_run else None
            networks = (new_vm_networks(session, placement).mapped(dict(args.network))
                        if placement is not None else None)
            plan = plan_restore_new(ws, args.point, args.name, keep_macs=args.keep_macs,
                                    networks=networks, placement=placement)
        if args.dry_run and args.json:
            print(json.dumps(vsphere_json.restore_plan(list(plan.describe())), indent=2))
            return 0
        if args.dry_run:
            for line in plan.describe():
                print(shown(line))
            return 0
        progress = Progress(f"restore {args.point}")
        try:
            if args.original:
                if not _confirm_overwrite(plan, args.yes):
                    say("error", "not confirmed; nothing was changed")
                    return EXIT_NOT_CONFIRMED
                result = restore_original_vm(session, ws, plan, confirm=True,
                                             power_on=args.power_on,
                                             transport=args.transport, log=log,
                                             progress=progress)
            else:
                result = restore_new_vm(
                    session, ws, args.point, args.name, datacenter=args.datacenter,
                    host=args.target_host, resource_pool=args.resource_pool,
                    datastore=args.datastore, folder=args.folder, keep_macs=args.keep_macs,
                    network_map=dict(args.network), power_on=args.power_on, log=log,
                    progress=progress)
        finally:
            progress.done()
    if args.json:
        print(json.dumps(vsphere_json.restore_vm(result), indent=2))
        return 0
    print(result.vm_moref)
    print(f"restored point {result.point_id} to VM {result.vm_name!r} ({result.vm_moref}): "
          f"{count(len(result.disks), 'disk')}, {human_bytes(result.bytes_written)} written "
          f"in {result.seconds:.1f}s" + ("; CBT reset" if result.cbt_reset else ""),
          file=sys.stderr)
    return 0


def cmd_restore_disk(args: argparse.Namespace) -> int:
    from appliance.jobs.vm_restore import restore_disk_into_vm

    with connected(args) as session, \
            repository(args, operation="restore", writes=False) as ws:
        progress = Progress(f"restore {args.point} disk {args.disk}")
        try:
            result = restore_disk_into_vm(session, ws, args.point, args.disk, args.vm,
                                          datastore=args.datastore,
                                          transport=args.transport,
                                          log=log_to_stderr(args.verbose), progress=progress)
        finally:
            progress.done()
    if args.json:
        print(json.dumps(vsphere_json.restore_disk(result), indent=2))
        return 0
    print(result.target_disk.file_name)
    print(f"restored disk {result.disk_index} of point {result.point_id} into VM "
          f"{result.vm_name!r} as disk {result.target_disk.index} "
          f"({result.target_disk.file_name}): {human_bytes(result.bytes_written)} in "
          f"{result.seconds:.1f}s", file=sys.stderr)
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "restore-vm": cmd_restore_vm, "restore-disk": cmd_restore_disk}
