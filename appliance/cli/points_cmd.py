"""``vmkeep points list``: the restore points in the appliance's repositories."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from appliance.cli import online
from appliance.cli.args import (
    RAW,
    Parser,
    Subparsers,
)
from appliance.cli.online import Handler, dump
from appliance.inputs import shown
from appliance.progress import human_bytes
from appliance.table import render

if TYPE_CHECKING:
    from appliance.client import ApplianceClient


EPILOG_POINTS = """examples:
  vmkeep points list
  vmkeep points list --vm db01 --json
"""


def add_parser(sub: Subparsers) -> None:
    raw = RAW
    pp = sub.add_parser("points", help="restore points in the appliance's repositories",
                        epilog=EPILOG_POINTS, formatter_class=raw)
    psub = pp.add_subparsers(dest="command", required=True, parser_class=Parser)
    p = psub.add_parser("list", help="restore points, oldest first", epilog=EPILOG_POINTS,
                        formatter_class=raw)
    p.add_argument("--vm", help="only this VM's points")
    p.add_argument("--json", action="store_true", help="print a JSON list")


def cmd_list(args: argparse.Namespace, client: ApplianceClient) -> int:
    rows = client.points(args.vm)
    if args.json:
        print(dump([p.model_dump(mode="json") for p in rows]))
    elif not rows:
        print(f"no restore points of VM {shown(args.vm)!r} (`vmkeep points list` lists them "
              "all)" if args.vm else
              "no restore points yet: a job makes them (`vmkeep job run NAME`; `vmkeep job "
              "list` shows the jobs)")
    else:
        print(render(("ID", "VM", "CREATED (UTC)", "KIND", "READ", "STORED", "REPOSITORY"),
                     [(p.id, p.vm, f"{p.created:%Y-%m-%d %H:%M:%S}", p.kind,
                       human_bytes(p.bytes_read), human_bytes(p.bytes_stored), p.repository)
                      for p in rows]))
    return 0


COMMANDS: dict[str, Handler] = {"list": cmd_list}


def run(args: argparse.Namespace) -> int:
    return online.run(COMMANDS, args)
