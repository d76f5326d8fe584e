"""``vmkeep hunter``: the Snapshot Hunter on the appliance's vCenters."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from appliance.cli import online
from appliance.cli.args import (
    RAW,
    Subparsers,
    add_json_option,
)
from appliance.cli.online import NO_VCENTER, Handler, dump
from appliance.inputs import shown

if TYPE_CHECKING:
    from appliance.client import ApplianceClient


EPILOG_HUNTER = """examples:
  vmkeep hunter --dry-run       # what would be removed or consolidated
  vmkeep hunter --vcenter vc01
"""


def add_parser(sub: Subparsers) -> None:
    raw = RAW
    hp = sub.add_parser("hunter", help="Snapshot Hunter on the appliance's vCenters",
                        description="Find vmkeep snapshots left by crashed runs (listed first), "
                        "disks needing consolidation and orphaned snapshot files on the "
                        "appliance's vCenters, and fix them (unless --dry-run).",
                        epilog=EPILOG_HUNTER, formatter_class=raw)
    hp.add_argument("--vcenter", help="only this vCenter (default: all)")
    hp.add_argument("--dry-run", action="store_true", help="say what would be done")
    hp.add_argument("--include-foreign", action="store_true",
                    help="also remove snapshots that are not vmkeep's")
    add_json_option(hp, "a JSON list (one object per vCenter)")


def cmd_hunter(args: argparse.Namespace, client: ApplianceClient) -> int:
    reports = client.hunter(vcenter=args.vcenter, dry_run=args.dry_run,
                            include_foreign=args.include_foreign)
    if args.json:
        print(dump([r.model_dump(mode="json") for r in reports]))
        return 0
    if not reports:  # a vCenter unknown to --vcenter is an error: this is none at all
        print(f"{NO_VCENTER}; the Snapshot Hunter looks at the appliance's vCenters")
    for report in reports:
        print(f"vCenter {shown(report.vcenter)}:")
        for line in report.lines:
            print(f"  {shown(line)}")
    return 0


COMMANDS: dict[str, Handler] = {"": cmd_hunter}


def run(args: argparse.Namespace) -> int:
    return online.run(COMMANDS, args)
