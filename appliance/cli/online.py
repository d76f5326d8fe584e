"""What the online command groups share: running a handler with a client of the appliance,
JSON output, the job commands' examples, and the schedule options as the API's ``ScheduleSpec``.

An online command talks to the appliance only through ``appliance.client``, ``appliance.api``
and ``appliance.errors`` (an import-linter contract in pyproject.toml keeps it so).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from appliance import api
    from appliance.client import ApplianceClient


Handler: TypeAlias = "Callable[[argparse.Namespace, ApplianceClient], int]"

EPILOG_JOB = """examples:
  vmkeep job create nightly --vcenter vc01 --vm db01 --vm web01 --repo main --enable-cbt \\
      --keep-last 14
  vmkeep job check nightly                  # before the first run: which disks will be read
  vmkeep job run nightly --wait             # exit 0 success, 1 warning, 2 failed/stopped
  vmkeep job run nightly --full --wait      # active full: read everything, CBT or not
  vmkeep job list --json
  vmkeep job stop nightly
  vmkeep job disable nightly                # no scheduled runs until `job enable`
"""


def run(commands: Mapping[str, Handler], args: argparse.Namespace) -> int:
    """The subcommand's handler (``args.command``; a group without subcommands has one
    handler, under ``""``) with a client of the appliance the environment names."""
    from appliance.client import ApplianceClient  # httpx and pydantic: only when it runs

    handler = commands[getattr(args, "command", "")]
    with ApplianceClient.from_environment() as client:
        return handler(args, client)


# What an empty listing says instead of nothing: that there is nothing and what to do next.
NO_VCENTER = ("no vCenter is configured: add one with `vmkeep vcenter add NAME --host HOST "
              "--user USER --vcenter-password-stdin`")


def dump(x: object) -> str:
    return json.dumps(x, indent=2, default=str)


NTH = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}


def schedule_spec(args: argparse.Namespace) -> api.ScheduleSpec:
    """The schedule the options give; a log backup job without one runs every 15 minutes."""
    spec = _schedule_spec(args)
    if spec.kind == "none" and getattr(args, "logs_of", None):
        return spec.model_copy(update={"kind": "periodic", "every": "15m"})
    return spec


def _schedule_spec(args: argparse.Namespace) -> api.ScheduleSpec:
    """The schedule options of `job create` as the wire form (checked by the appliance)."""
    from appliance import api

    kind: api.ScheduleKind
    if args.daily:
        kind, at = "daily", args.daily
    elif args.monthly:
        kind, at = "monthly", args.monthly
    elif args.every:
        kind, at = "periodic", None
    elif args.after:
        kind, at = "after", None
    else:
        kind, at = "none", None
    return api.ScheduleSpec(kind=kind, at=at, days=args.days, day_of_month=args.day,
                            nth=NTH[args.nth] if args.nth else None, weekday=args.weekday,
                            every=args.every, after=args.after, tz=args.tz,
                            window=list(args.window))
