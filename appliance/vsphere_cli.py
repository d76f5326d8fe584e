"""``vmkeep vsphere …``: talk to a vCenter/ESXi host directly, without the appliance.

Show the server's certificate fingerprint, list VMs, back a VM up into a repository folder
(with the same catalog cache, lock, sync and cleanup as ``vmkeep image``), and run the
Snapshot Hunter. The parser is in ``appliance.cli`` (``add_connection_options``); a command
here opens what it needs with ``connected(args)`` (a logged-in session) and
``repository(args, …)`` (repository + catalog, locked and synchronised).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from appliance.errors import UsageError, VSphereError
from appliance.image_cli import cache_errors, noted, opened, private_cache, rescan_hint
from appliance.inputs import shown
from appliance.jobs.backup import BackupOptions, block_size_named
from appliance.jobs.vm_backup import VmBackupResult, backup_vm
from appliance.jobs.vm_restore import (
    VmRestorePlan,
    plan_restore_new,
    plan_restore_original,
    restore_disk_into_vm,
    restore_new_vm,
    restore_original_vm,
)
from appliance.jobs.workspace import Workspace, cleanup, open_workspace
from appliance.password import read_password
from appliance.progress import Progress, human_bytes
from appliance.repository import codec
from appliance.vsphere.hunter import Status, describe, execute_hunt, plan_hunt
from appliance.vsphere.inventory import VmInfo, find_vm, list_vms
from appliance.vsphere.session import (
    VSphereSession,
    connect,
    fetch_fingerprint,
    format_fingerprint,
    normalize_fingerprint,
)

# `vsphere backup` exits with these, as `vmkeep job run --wait` will.
EXIT_BY_STATUS = {"success": 0, "warning": 1, "failed": 2}
EXIT_HUNT_FAILED = 1
EXIT_NOT_CONFIRMED = 1  # restore-vm --original: the person did not confirm


# -- log lines ------------------------------------------------------------------------------

def say(level: str, message: str) -> None:
    """One stderr line ``vmkeep: LEVEL: message`` (level: info, warning, error)."""
    print(f"vmkeep: {level}: {shown(' '.join(message.split()))}", file=sys.stderr)


def log_to_stderr(verbose: bool) -> Callable[[str, str], None]:
    """A ``(level, message)`` callback: warnings and errors always, info with ``verbose``."""
    def log(level: str, message: str) -> None:
        if level != "info" or verbose:
            say(level, message)
    return log


class _StderrHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            say(record.levelname.lower(), record.getMessage())
        except Exception:  # a log line must never break the command
            self.handleError(record)


@contextmanager
def logging_to_stderr(verbose: bool) -> Iterator[None]:
    """Route vmkeep's own ``logging`` (e.g. the --insecure warning) to ``say`` lines."""
    logger = logging.getLogger("appliance")
    handler = _StderrHandler(logging.INFO if verbose else logging.WARNING)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(handler.level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


# -- connecting -----------------------------------------------------------------------------

def pinned_fingerprint(args: argparse.Namespace) -> str | None:
    """``--fingerprint`` as lower-case hex (None with --insecure or when not given)."""
    if args.insecure or args.fingerprint is None:
        return None
    try:
        return normalize_fingerprint(args.fingerprint)
    except VSphereError as exc:
        raise UsageError(f"--fingerprint {exc}") from None


@contextmanager
def connected(args: argparse.Namespace) -> Iterator[VSphereSession]:
    """A logged-in session from the connection options (``cli.add_connection_options``)."""
    pin = pinned_fingerprint(args)
    password = read_password(args)
    with connect(args.host, args.port, args.user, password, fingerprint=pin,
                 insecure=args.insecure) as session:
        yield session


@contextmanager
def repository(args: argparse.Namespace, *, operation: str, writes: bool
               ) -> Iterator[Workspace]:
    """``--repo`` with its catalog cache: a shared workspace.

    ``writes``: the command adds to the repository; it is created when missing, crash
    leftovers are swept first, and a run that fails is cleaned up after (as `image backup`).
    """
    with opened(args, create=writes, lock_wait=args.lock_wait) as (repo, cat):
        if writes:
            cleanup(repo, cat.cursor)
        try:
            with open_workspace(repo, cat.cursor, exclusive=False, operation=operation,
                                wait=args.lock_wait, read_only_ok=not writes,
                                rescan_hint=rescan_hint(args)) as ws:
                noted(ws.lock)
                yield ws
        except BaseException:
            if writes:
                cleanup(repo, cat.cursor, force=True)
            raise


# -- commands -------------------------------------------------------------------------------

def cmd_fingerprint(args: argparse.Namespace) -> int:
    print(format_fingerprint(fetch_fingerprint(args.host, args.port)))
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
    with connected(args) as session:
        vms = list_vms(session)
    if args.json:
        print(json.dumps(vm_listing(vms), indent=2))
    elif not vms:
        print(f"no VMs on {args.host}:{args.port}")
    else:
        print_vm_table(vms)
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _backup_summary(result: VmBackupResult) -> str:
    b = result.backup
    assert b is not None
    skipped = sum(1 for d in result.disks if d.read_kind == "skipped")
    disks = f"{_count(len(result.disks) - skipped, 'disk')} backed up" + (
        f", {skipped} skipped" if skipped else "")
    return (f"{b.kind} backup of VM {result.vm_name!r}: {disks}; read "
            f"{human_bytes(b.bytes_read)}, stored {human_bytes(b.bytes_stored)} new "
            f"({b.blocks_new} blocks, {b.blocks_deduplicated} deduplicated) in "
            f"{b.seconds:.1f}s; status {result.status}"
            + (f" ({_count(len(result.warnings), 'warning')})" if result.warnings else ""))


def cmd_backup(args: argparse.Namespace) -> int:
    # Check every input before vSphere or the repository is touched.
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
                                   transport=args.transport,
                                   sample_blocks=args.sample_blocks, quiesce=args.quiesce,
                                   log=log_to_stderr(args.verbose), progress=progress)
            finally:
                progress.done()
    if result.point_id is not None and result.backup is not None:
        print(result.point_id)
        print(_backup_summary(result), file=sys.stderr)
    return EXIT_BY_STATUS.get(result.status, EXIT_BY_STATUS["failed"])


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
    log = log_to_stderr(args.verbose)
    with connected(args) as session, \
            repository(args, operation="restore", writes=False) as ws:
        if args.original:
            plan = plan_restore_original(session, ws, args.point)
        else:
            plan = plan_restore_new(ws, args.point, args.name)
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
                                             power_on=args.power_on, log=log,
                                             progress=progress)
            else:
                result = restore_new_vm(
                    session, ws, args.point, args.name, datacenter=args.datacenter,
                    host=args.target_host, resource_pool=args.resource_pool,
                    datastore=args.datastore, folder=args.folder, keep_macs=args.keep_macs,
                    power_on=args.power_on, log=log, progress=progress)
        finally:
            progress.done()
    print(result.vm_moref)
    print(f"restored point {result.point_id} to VM {result.vm_name!r} ({result.vm_moref}): "
          f"{_count(len(result.disks), 'disk')}, {human_bytes(result.bytes_written)} written "
          f"in {result.seconds:.1f}s" + ("; CBT reset" if result.cbt_reset else ""),
          file=sys.stderr)
    return 0


def cmd_restore_disk(args: argparse.Namespace) -> int:
    with connected(args) as session, \
            repository(args, operation="restore", writes=False) as ws:
        progress = Progress(f"restore {args.point} disk {args.disk}")
        try:
            result = restore_disk_into_vm(session, ws, args.point, args.disk, args.vm,
                                          datastore=args.datastore,
                                          log=log_to_stderr(args.verbose), progress=progress)
        finally:
            progress.done()
    print(result.target_disk.file_name)
    print(f"restored disk {result.disk_index} of point {result.point_id} into VM "
          f"{result.vm_name!r} as disk {result.target_disk.index} "
          f"({result.target_disk.file_name}): {human_bytes(result.bytes_written)} in "
          f"{result.seconds:.1f}s", file=sys.stderr)
    return 0


def cmd_hunter(args: argparse.Namespace) -> int:
    with connected(args) as session:
        plan = plan_hunt(session, include_foreign=args.include_foreign)
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
    "hunter": cmd_hunter, "restore-vm": cmd_restore_vm, "restore-disk": cmd_restore_disk,
}


def run(args: argparse.Namespace) -> int:
    if args.command in ("backup", "restore-vm", "restore-disk"):
        private_cache()  # the repository's catalog cache: say so before any work
    with logging_to_stderr(getattr(args, "verbose", False)), cache_errors():
        return COMMANDS[args.command](args)
