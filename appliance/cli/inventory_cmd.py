"""``vmkeep inventory``: the VMs (or containers) of the appliance's vCenters."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from appliance.cli import online
from appliance.cli.args import (
    RAW,
    Subparsers,
)
from appliance.cli.online import NO_VCENTER, Handler, dump
from appliance.inputs import shown
from appliance.table import render

if TYPE_CHECKING:
    from appliance.client import ApplianceClient


EPILOG_INVENTORY = """examples:
  vmkeep inventory --vcenter vc01 --json
  vmkeep inventory --containers # what `vmkeep job create --container` takes
"""


def add_parser(sub: Subparsers) -> None:
    raw = RAW
    ip = sub.add_parser("inventory", help="the VMs of the appliance's vCenters",
                        epilog=EPILOG_INVENTORY, formatter_class=raw)
    ip.add_argument("--vcenter", help="only this vCenter")
    ip.add_argument("--containers", action="store_true",
                    help="list datacenters, folders, clusters, hosts and resource pools (what "
                    "`job create --container` takes) instead of VMs")
    ip.add_argument("--json", action="store_true", help="print a JSON list")


def cmd_inventory(args: argparse.Namespace, client: ApplianceClient) -> int:
    if args.containers:
        found = client.containers(args.vcenter)
        if args.json:
            print(dump([c.model_dump(mode="json") for c in found]))
            return 0
        if not found:
            print(nothing(client, args, "containers"))
            return 0
        print(render(("VCENTER", "KIND", "PATH", "VMS"),
                     [(c.vcenter, c.kind, c.path, ",".join(c.vms) or "-") for c in found]))
        return 0
    vms = client.inventory(args.vcenter)
    if args.json:
        print(dump([v.model_dump(mode="json") for v in vms]))
        return 0
    if not vms:
        print(nothing(client, args, "VMs"))
        return 0
    print(render(("VCENTER", "VM", "POWER", "CBT", "SNAPSHOTS", "JOBS", "LAST POINT",
                  "LAST RESULT", "RPO", "REASON"),
                 [(v.vcenter, v.name, v.power_state.removeprefix("powered").lower(),
                   "on" if v.cbt_enabled else "off", len(v.snapshots),
                   ",".join(v.jobs) or "-", v.last_point or "-",
                   f"{v.last_result} ({v.last_job})" if v.last_result else "-",
                   "-" if v.rpo_status == "none" else v.rpo_status, v.last_reason or "-")
                  for v in vms]))
    return 0


def nothing(client: ApplianceClient, args: argparse.Namespace, what: str) -> str:
    """An empty inventory: no vCenter configured, or vCenters without any VM (container)."""
    if not client.vcenters():
        return NO_VCENTER
    where = f"vCenter {shown(args.vcenter)!r}" if args.vcenter else "the appliance's vCenters"
    return (f"no {what} in {where}: check the account's view with `vmkeep vcenter check "
            "NAME`")


COMMANDS: dict[str, Handler] = {"": cmd_inventory}


def run(args: argparse.Namespace) -> int:
    return online.run(COMMANDS, args)
