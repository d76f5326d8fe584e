"""``vmkeep repo add|list|remove|rescan``: the repositories the appliance writes to."""

from __future__ import annotations

import argparse
import json
import os

from appliance import api
from appliance.client import ApplianceClient
from appliance.progress import human_bytes
from appliance.table import render


def _show(r: api.Repository) -> str:
    return (f"repository {r.name!r} at {r.location}: {r.points} restore point(s), "
            f"{human_bytes(r.stored_bytes)} stored")


def cmd_add(args: argparse.Namespace, client: ApplianceClient) -> int:
    print(_show(client.add_repository(args.name, os.path.abspath(args.path))))
    return 0


def cmd_list(args: argparse.Namespace, client: ApplianceClient) -> int:
    rows = client.repositories()
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
    elif not rows:
        print("no repositories; add one with `vmkeep repo add NAME --path DIR`")
    else:
        print(render(("NAME", "PATH", "POINTS", "STORED"),
                     [(r.name, r.location, r.points, human_bytes(r.stored_bytes))
                      for r in rows]))
    return 0


def cmd_rescan(args: argparse.Namespace, client: ApplianceClient) -> int:
    print(_show(client.rescan_repository(args.name)))
    return 0


def cmd_remove(args: argparse.Namespace, client: ApplianceClient) -> int:
    print(client.remove_repository(args.name).message)
    return 0


COMMANDS = {"add": cmd_add, "list": cmd_list, "rescan": cmd_rescan, "remove": cmd_remove}


def run(args: argparse.Namespace) -> int:
    with ApplianceClient.from_environment() as client:
        return COMMANDS[args.command](args, client)
