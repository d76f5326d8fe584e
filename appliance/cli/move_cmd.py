"""``vmkeep move``: move a job's (or a VM's) points to another repository."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from appliance.cli import online
from appliance.cli.args import (
    RAW,
    Subparsers,
    add_json_option,
    name_arg,
    repo_name_arg,
    text_arg,
)
from appliance.cli.online import Handler, dump
from appliance.inputs import shown

if TYPE_CHECKING:
    from appliance.client import ApplianceClient


EPILOG_MOVE = """examples:
  vmkeep move --job nightly --to offsite
  vmkeep move --vm db01 --from main --to offsite
"""


def add_parser(sub: Subparsers) -> None:
    raw = RAW
    mp = sub.add_parser("move", help="move a job's (or a VM's) points to another repository",
                        description="Copy every point of a job (or of one VM) to another "
                        "repository, verify the copies, switch the job over (its next run is "
                        "incremental there), then remove them at the source (unless immutable "
                        "there).", epilog=EPILOG_MOVE, formatter_class=raw)
    what = mp.add_mutually_exclusive_group(required=True)
    what.add_argument("--job", type=name_arg, help="the backup job whose points move")
    what.add_argument("--vm", type=text_arg, help="one VM's points")
    mp.add_argument("--from", dest="source", metavar="REPO", type=repo_name_arg,
                    help="with --vm: the repository they move from (if not the only one)")
    mp.add_argument("--to", required=True, metavar="REPO", type=repo_name_arg,
                    help="the target repository")
    add_json_option(mp)


def cmd_move(args: argparse.Namespace, client: ApplianceClient) -> int:
    from appliance import api

    answer = client.move(api.MoveRequest(to=args.to, job=args.job, vm=args.vm,
                                         source=args.source))
    if args.json:
        print(dump(answer.model_dump(mode="json")))
        return 0
    for line in answer.lines:
        print(shown(line))
    return 0


COMMANDS: dict[str, Handler] = {"": cmd_move}


def run(args: argparse.Namespace) -> int:
    return online.run(COMMANDS, args)
