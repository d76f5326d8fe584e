"""``vmkeep alerts``: what needs an administrator now."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from appliance.cli import online
from appliance.cli.args import (
    RAW,
    Subparsers,
)
from appliance.cli.online import Handler, dump
from appliance.table import render

if TYPE_CHECKING:
    from appliance.client import ApplianceClient


EPILOG_ALERTS = """examples:
  vmkeep alerts                 # missed RPOs, leftover snapshots, repositories short of space
  vmkeep alerts --json
"""


def add_parser(sub: Subparsers) -> None:
    raw = RAW
    ap = sub.add_parser("alerts", help="what needs an administrator now",
                        description="VMs past their job's RPO, snapshots the Snapshot Hunter "
                        "would clean up, repositories short of space: as of the last look.",
                        epilog=EPILOG_ALERTS, formatter_class=raw)
    ap.add_argument("--json", action="store_true", help="print a JSON list")


def cmd_alerts(args: argparse.Namespace, client: ApplianceClient) -> int:
    found = client.alerts()
    if args.json:
        print(dump([a.model_dump(mode="json") for a in found]))
    elif not found:
        print("no alerts")
    else:
        print(render(("SINCE", "KIND", "MESSAGE"),
                     [(f"{a.since:%Y-%m-%d %H:%M}", a.kind, a.message) for a in found]))
    return 0


COMMANDS: dict[str, Handler] = {"": cmd_alerts}


def run(args: argparse.Namespace) -> int:
    return online.run(COMMANDS, args)
