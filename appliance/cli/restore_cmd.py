"""``vmkeep restore vm|disk|postgres``: restore from a restore point, through the appliance.
Each restore is a session of the appliance: the command starts it (the appliance
refuses a bad request at once), follows it to its end (``session_cmd.follow``) and exits as
its outcome says (``--no-wait``: prints the session's id instead)."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from typing import TYPE_CHECKING

from appliance import inputs
from appliance.cli import online
from appliance.cli.args import (
    RAW,
    Parser,
    Subparsers,
    add_json_option,
    add_network_option,
    folder_arg,
    vm_name_arg,
    whole,
)
from appliance.cli.online import Handler, dump
from appliance.cli.session_cmd import follow
from appliance.errors import ApplianceError, ConfirmDetail, RemoteError, UsageError
from appliance.inputs import shown

if TYPE_CHECKING:
    from appliance import api
    from appliance.client import ApplianceClient


EPILOG_RESTORE = """examples:
  vmkeep restore vm 20261202T010203Z-9f8e7d6c --name db01-restored --power-on
  vmkeep restore vm 20261202T010203Z-9f8e7d6c --original --yes
  vmkeep restore disk 20261202T010203Z-9f8e7d6c --disk 1 --to /restore/db01-disk1.img
  vmkeep restore disk 20261202T010203Z-9f8e7d6c --to /restore/d0.img --no-wait  # session id
  vmkeep restore postgres 20261202T010203Z-9f8e7d6c --data-dir /restore/pgdata \\
      --until '2026-12-02 07:15:00+00:00'
"""


def add_parser(sub: Subparsers) -> None:
    raw = RAW
    rp = sub.add_parser("restore", help="restore from a restore point", epilog=EPILOG_RESTORE,
                        formatter_class=raw)
    rsub = rp.add_subparsers(dest="command", required=True, parser_class=Parser)
    p = rsub.add_parser("vm", help="an entire VM: to a new VM or over the original",
                        epilog=EPILOG_RESTORE, formatter_class=raw)
    p.add_argument("point", metavar="POINT_ID")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--name", metavar="NEW_VM", type=vm_name_arg,
                       help="create a new VM with this name")
    where.add_argument("--original", action="store_true",
                       help="overwrite the VM the point was taken of (needs --yes)")
    p.add_argument("--yes", action="store_true", help="--original: the disks are overwritten")
    p.add_argument("--datacenter", help="new VM: its datacenter (default: the original's)")
    p.add_argument("--target-host", metavar="ESX_HOST",
                   help="new VM: its host (default: the original VM's, if it still exists)")
    p.add_argument("--resource-pool", metavar="POOL",
                   help="new VM: its resource pool (default: the original's)")
    p.add_argument("--datastore", help="new VM: its datastore (default: the original's)")
    p.add_argument("--folder", help="new VM: its VM folder (default: the original's)")
    add_network_option(p)
    p.add_argument("--keep-macs", action="store_true",
                   help="new VM: keep the recorded MAC addresses (default: new ones)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan (for a new VM: where it goes) and change nothing")
    p.add_argument("--power-on", action="store_true", help="power the VM on afterwards")
    p.add_argument("--transport", choices=("host", "vcenter", "hotadd"), default="host",
                   help="--original: where its disks are written: host (default: on the "
                   "ESXi host that runs it), vcenter (through the vCenter) or hotadd "
                   "(attached to the appliance's own VM)")
    _add_no_wait(p)
    add_json_option(p, "a JSON object (with --dry-run: the plan)")
    p = rsub.add_parser("disk", help="a disk of a point to a new raw image file",
                        epilog=EPILOG_RESTORE, formatter_class=raw)
    p.add_argument("point", metavar="POINT_ID")
    p.add_argument("--disk", type=whole(0, inputs.COUNT_MAX), default=0, metavar="N",
                   help="disk number: (controller bus, unit) order (default 0)")
    p.add_argument("--to", required=True, metavar="FILE", type=folder_arg, help="a new file")
    _add_no_wait(p)
    add_json_option(p)
    p = rsub.add_parser("postgres", help="PostgreSQL to a point in time: the base backup's "
                        "label, the WAL and the recovery settings into a data folder",
                        description="After the image point's disk was restored and its "
                        "PostgreSQL data folder taken out of it: writes backup_label (kept with "
                        "the point), every WAL file the VM's log backup job stored (into "
                        "vmkeep-wal/), recovery.signal and the recovery settings, so a "
                        "PostgreSQL started on the folder replays up to --until.",
                        epilog=EPILOG_RESTORE, formatter_class=raw)
    p.add_argument("point", metavar="POINT_ID", help="the image point (with a base backup)")
    p.add_argument("--data-dir", required=True, metavar="DIR", type=folder_arg,
                   help="the restored data folder (on the appliance's machine)")
    p.add_argument("--until", metavar="TIME",
                   help="replay up to this time, e.g. '2026-12-02 07:15:00+00' (default: "
                   "everything stored)")
    _add_no_wait(p)
    add_json_option(p)


def _add_no_wait(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-wait", action="store_true",
                   help="start the restore session and print its id (follow it with "
                   "`vmkeep session follow ID`)")


def cmd_vm(args: argparse.Namespace, client: ApplianceClient) -> int:
    from appliance import api

    request = api.VmRestore(
        point=args.point, name=args.name, confirm=args.yes, datacenter=args.datacenter,
        host=args.target_host, resource_pool=args.resource_pool, datastore=args.datastore,
        folder=args.folder, networks=dict(args.network), keep_macs=args.keep_macs,
        power_on=args.power_on, transport=args.transport)
    if args.dry_run:
        plan = client.plan_restore_vm(request)
        if args.json:
            print(dump(plan.model_dump(mode="json")))
            return 0
        for line in plan.lines:
            print(shown(line))
        return 0
    try:
        started = client.restore_vm(request)
    except RemoteError as exc:
        if not isinstance(exc.detail, ConfirmDetail):
            raise
        raise UsageError("restoring over the original VM overwrites its disks: "
                         + " / ".join(exc.detail.plan) + " — confirm it (--yes)",
                         detail=exc.detail) from None
    return _follow(args, client, started)


def cmd_postgres(args: argparse.Namespace, client: ApplianceClient) -> int:
    from appliance import api

    until = None
    if args.until:
        try:
            until = datetime.fromisoformat(args.until)
        except ValueError:
            raise UsageError(f"--until {args.until!r} is not a time; give e.g. "
                             "'2026-12-02 07:15:00+00:00'") from None
        if until.tzinfo is None:
            raise UsageError("--until needs its time zone, e.g. +00:00 for UTC")
    started = client.restore_postgres(api.PostgresRestore(
        point=args.point, data_dir=os.path.abspath(args.data_dir), until=until))
    return _follow(args, client, started)


def cmd_disk(args: argparse.Namespace, client: ApplianceClient) -> int:
    started = client.restore_disk(args.point, args.disk, os.path.abspath(args.to))
    return _follow(args, client, started)


def _follow(args: argparse.Namespace, client: ApplianceClient,
            started: api.SessionSummary) -> int:
    """Follow the restore session to its end; exit as its outcome says: 0 restored, else the
    error's exit code (as when the appliance restored before answering). ``--no-wait``: its
    id (``--json``: its summary) and no more."""
    if args.no_wait:
        print(dump(started.model_dump(mode="json")) if args.json else started.id)
        return 0
    print(f"restore session {started.id} ({shown(started.job)}) started", file=sys.stderr)
    follow(client, started.id)
    s = client.session(started.id)
    outcome = s.outcome
    if outcome is None:
        raise ApplianceError(f"restore session {s.id} ended ({s.state}) without an outcome; "
                             f"`vmkeep session show {s.id}` shows its log")
    if outcome.error is not None:
        e = outcome.error
        raise RemoteError(e.message, code=e.code, exit_code=e.exit_code,
                          detail=e.error_detail())
    if args.json:
        print(dump({"session": s.id, "job": s.job, "result": s.result,
                    "message": outcome.message}))
    else:
        print(shown(outcome.message), file=sys.stderr)
    return 0


COMMANDS: dict[str, Handler] = {"vm": cmd_vm, "disk": cmd_disk, "postgres": cmd_postgres}


def run(args: argparse.Namespace) -> int:
    return online.run(COMMANDS, args)
