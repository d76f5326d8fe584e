"""``vmkeep verify``: a health check of a repository or a point, by the appliance."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from appliance.cli import online
from appliance.cli.args import (
    RAW,
    Subparsers,
    add_json_option,
    repo_name_arg,
    text_arg,
)
from appliance.cli.online import Handler, dump
from appliance.inputs import shown

if TYPE_CHECKING:
    from appliance.client import ApplianceClient


EPILOG_VERIFY = """examples:
  vmkeep verify --repo main     # every point; exit 0 ok, 1 damage found
  vmkeep verify --repo main 20261202T010203Z-9f8e7d6c
"""


def add_parser(sub: Subparsers) -> None:
    raw = RAW
    vp = sub.add_parser("verify", help="health check of a repository or a point",
                        epilog=EPILOG_VERIFY, formatter_class=raw)
    vp.add_argument("--repo", required=True, type=repo_name_arg, metavar="NAME",
                    help="the repository's name (`vmkeep repo list`)")
    vp.add_argument("point", metavar="POINT_ID", nargs="?", type=text_arg)
    add_json_option(vp, "a JSON object (exit codes as without it)")


def cmd_verify(args: argparse.Namespace, client: ApplianceClient) -> int:
    answer = client.verify(args.repo, args.point)
    if args.json:
        print(dump(answer.model_dump(mode="json")))
        return 0 if answer.ok else 1
    for line in answer.damage:
        print(f"DAMAGED {shown(line)}")
    for p in answer.points:
        jobs = f" (job {', '.join(p.jobs)})" if p.jobs else ""
        print(shown(f"point {p.point} of VM {p.vm}{jobs}: {'; '.join(p.causes)}"))
    print(("ok: " if answer.ok else "damage found: ") + shown(answer.summary))
    if answer.next_step:
        print(f"next: {shown(answer.next_step)}")
    return 0 if answer.ok else 1


COMMANDS: dict[str, Handler] = {"": cmd_verify}


def run(args: argparse.Namespace) -> int:
    return online.run(COMMANDS, args)
