"""``vmkeep prune``: retention over a whole repository, by the appliance."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from appliance.cli import online
from appliance.cli.args import (
    DAYS,
    KEEP_LAST,
    RAW,
    Subparsers,
    add_json_option,
    repo_name_arg,
)
from appliance.cli.online import Handler, dump
from appliance.inputs import shown

if TYPE_CHECKING:
    from appliance.client import ApplianceClient


EPILOG_PRUNE = """examples:
  vmkeep prune --repo main --keep-last 14 --dry-run     # what would go
  vmkeep prune --repo main --keep-days 30
"""


def add_parser(sub: Subparsers) -> None:
    raw = RAW
    pp2 = sub.add_parser("prune", help="retention over a whole repository",
                         epilog=EPILOG_PRUNE, formatter_class=raw)
    pp2.add_argument("--repo", required=True, type=repo_name_arg, metavar="NAME",
                     help="the repository's name (`vmkeep repo list`)")
    pp2.add_argument("--keep-last", type=KEEP_LAST, metavar="N",
                     help="keep the N newest per VM")
    pp2.add_argument("--keep-days", type=DAYS, metavar="D", help="keep points younger than D")
    pp2.add_argument("--dry-run", action="store_true", help="say what would go")
    add_json_option(pp2)


def cmd_prune(args: argparse.Namespace, client: ApplianceClient) -> int:
    from appliance import api

    answer = client.prune(api.PruneRequest(repository=args.repo, keep_last=args.keep_last,
                                           keep_days=args.keep_days, dry_run=args.dry_run))
    if args.json:
        print(dump(answer.model_dump(mode="json")))
        return 0
    for line in answer.lines:
        print(shown(line))
    return 0


COMMANDS: dict[str, Handler] = {"": cmd_prune}


def run(args: argparse.Namespace) -> int:
    return online.run(COMMANDS, args)
