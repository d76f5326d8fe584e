"""The ``vmkeep`` command line: the top-level parser, the dispatch table and error reporting.

Each command group is one module of this package that owns its parser (``add_parser``) and
its handlers (``run``, which looks the subcommand up in the module's ``COMMANDS``); the
table below names them in the order ``vmkeep --help`` lists them. Building the parser loads no
engine: the offline groups (``image``, ``vsphere``) import it when a command runs, and the
online groups talk to the appliance only through ``appliance.client`` (import-linter).

Every error is one line on stderr (``vmkeep: error: …``) and a documented exit code
(see ``docs/CLI.md``); no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Protocol

from appliance import inputs
from appliance.cli import (
    alerts_cmd,
    appliance_cmd,
    catalog_cmd,
    config_cmd,
    hunter_cmd,
    image_cmd,
    inventory_cmd,
    job_cmd,
    move_cmd,
    notify_cmd,
    points_cmd,
    prune_cmd,
    repo_cmd,
    restore_cmd,
    session_cmd,
    tui_cmd,
    vcenter_cmd,
    verify_cmd,
    vsphere_cmd,
)
from appliance.cli.args import Parser, Subparsers, VersionOption
from appliance.errors import EXIT_INTERRUPTED, UsageError, VmkeepError

EXIT_INTERNAL = 70
EXIT_BROKEN_PIPE = 141  # as a shell reports a process ended by SIGPIPE


class CommandGroup(Protocol):
    """A command group's module: its parser and its handlers."""

    def add_parser(self, sub: Subparsers) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


# `vmkeep GROUP …` -> the module that parses and runs it, in the order of `vmkeep --help`.
GROUPS: dict[str, CommandGroup] = {
    "image": image_cmd, "vsphere": vsphere_cmd, "appliance": appliance_cmd,
    "vcenter": vcenter_cmd, "repo": repo_cmd, "catalog": catalog_cmd, "job": job_cmd,
    "session": session_cmd, "points": points_cmd, "inventory": inventory_cmd,
    "move": move_cmd, "verify": verify_cmd, "prune": prune_cmd, "alerts": alerts_cmd,
    "notify": notify_cmd, "config": config_cmd, "hunter": hunter_cmd,
    "restore": restore_cmd, "tui": tui_cmd,
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="vmkeep", description="Agentless image-based backup for vSphere.",
                    epilog="`vmkeep COMMAND --help` shows a command's options and examples; "
                    "docs/CLI.md has every command and exit code.")
    parser.add_argument("--version", action=VersionOption, help="print vmkeep's version")
    sub = parser.add_subparsers(dest="group", metavar="COMMAND", required=True,
                                parser_class=Parser, title="commands")
    for group in GROUPS.values():
        group.add_parser(sub)
    return parser


def _request_refused(exc: Exception) -> UsageError | None:
    """A request the CLI built from its arguments that the API's own checks refuse (pydantic's
    ValidationError, ``appliance.api``): a usage error that says which value and why."""
    pydantic = sys.modules.get("pydantic")
    if pydantic is None or not isinstance(exc, pydantic.ValidationError):
        return None
    problems = []
    for err in exc.errors()[:3]:
        where = ".".join(str(x) for x in err.get("loc", ()))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append(f"{where}: {msg}" if where else msg)
    return UsageError("; ".join(problems) + "; see `vmkeep --help`")


def main(argv: Sequence[str] | None = None) -> int:
    # What the commands make is private whatever the caller's umask (files they make
    # themselves are 0600 anyway; this covers what DuckDB makes, such as a catalog's WAL).
    umask = os.umask(0o077)
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser()
        if not argv:  # `vmkeep` alone: the overview and its commands, as `git` does
            print(parser.format_help(), end="")
            return UsageError.exit_code
        args = parser.parse_args(argv)
        code = GROUPS[args.group].run(args)
        sys.stdout.flush()  # here, so that a closed pipe is caught below
        return code
    except VmkeepError as exc:
        # One line, whatever names it quotes (a VM's name may hold a newline or an escape).
        print(f"vmkeep: error: {inputs.shown(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("vmkeep: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of our output went away (`vmkeep … | head`): not an error of ours.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except SystemExit as exc:  # --help
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    except Exception as exc:
        refused = _request_refused(exc)
        if refused is not None:
            print(f"vmkeep: error: {inputs.shown(refused)}", file=sys.stderr)
            return refused.exit_code
        print(f"vmkeep: internal error: {type(exc).__name__}: {inputs.shown(exc)}; please "
              "report this with the command you ran", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        os.umask(umask)
