"""``vmkeep appliance start|stop|status``: run and look after the appliance process.

Not an online command like the others: ``start`` and ``stop`` run the appliance's own code
(``appliance.daemon``, imported only then), so this module is outside the online commands'
import contract.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from appliance import inputs
from appliance.cli.args import RAW, Parser, Subparsers
from appliance.errors import ApplianceNotRunningError, UsageError

if TYPE_CHECKING:
    from appliance.home import Home

EXIT_NOT_RUNNING = 3  # `status` when no appliance answers (as LSB init scripts report it)


def cmd_start(args: argparse.Namespace) -> int:
    home = resolve(args.home)
    problem = inputs.folder_problem(home.root)
    if problem is not None:
        raise _no_home(args, home, problem)
    try:
        return _start(args, home)
    except OSError as exc:
        if exc.filename is None or not os.fspath(exc.filename).startswith(str(home.root)):
            raise
        raise _no_home(args, home, exc.strerror or type(exc).__name__) from None


def resolve(given: str | None) -> Home:
    """The appliance's home (``appliance.home``, imported when a command runs)."""
    from appliance.home import resolve as resolve_home

    return resolve_home(given)


def _no_home(args: argparse.Namespace, home: Home, problem: str) -> UsageError:
    where = ("--home" if args.home else "VMKEEP_HOME" if os.environ.get("VMKEEP_HOME")
             else "the per-user data folder (from HOME or XDG_DATA_HOME)")
    return UsageError(f"no home folder for the appliance: {home.root}, {where}, cannot be "
                      f"used ({problem}); set VMKEEP_HOME (or --home) to a folder this user "
                      "can write")


def _start(args: argparse.Namespace, home: Home) -> int:
    from appliance import daemon  # the appliance's own code: only when it is started

    if args.foreground:
        return daemon.main(["--home", str(home.root),
                            *(["--new-catalog"] if args.new_catalog else []),
                            *(["--allow-shared-home"] if args.allow_shared_home else [])])
    started = daemon.start(home, new_catalog=args.new_catalog,
                           allow_shared_home=args.allow_shared_home)
    if started.already_running:
        print(f"the appliance already runs for {home.root} (pid {started.pid}); socket "
              f"{started.socket}", file=sys.stderr)
    else:
        print(f"started the appliance (pid {started.pid}); socket {started.socket}, log "
              f"{home.log}", file=sys.stderr)
        if started.notice:
            print(started.notice, file=sys.stderr)
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from appliance import daemon

    home = resolve(args.home)
    pid = daemon.stop(home)
    if pid is None:
        print(f"no appliance runs for {home.root}", file=sys.stderr)
    else:
        print(f"stopped the appliance (pid {pid})", file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from appliance.client import ApplianceClient

    home = resolve(args.home)
    try:
        with ApplianceClient(home.socket, timeout=10) as client:
            hs = client.handshake()
    except ApplianceNotRunningError:
        if args.json:
            print(json.dumps({"running": False, "home": str(home.root),
                              "socket": str(home.socket)}))
        else:
            print(f"not running (home {home.root}, socket {home.socket})")
        return EXIT_NOT_RUNNING
    up = datetime.now(UTC) - hs.started
    if args.json:
        print(json.dumps({"running": True, "pid": hs.pid, "home": hs.home,
                          "socket": str(home.socket), "version": hs.appliance_version,
                          "api_version": hs.api_version, "started": hs.started.isoformat()}))
    else:
        print(f"running: pid {hs.pid}, version {hs.appliance_version} (API "
              f"v{hs.api_version}), up {int(up.total_seconds())} s, home {hs.home}, socket "
              f"{home.socket}")
    return 0


EPILOG_APPLIANCE = """examples:
  vmkeep appliance start                  # detached; returns once it answers
  VMKEEP_HOME=/srv/vmkeep vmkeep appliance start
  vmkeep appliance status --json
  vmkeep appliance stop
  vmkeep appliance start --foreground     # under systemd (scripts/vmkeep-appliance.service)
  vmkeep appliance start --new-catalog    # the catalog is lost or damaged: start empty,
  vmkeep config restore --from /backups/main   # then bring the configuration back

The home folder holds the appliance's state, secrets and log; it is --home, else
$VMKEEP_HOME, else the per-user data folder. The socket is $VMKEEP_SOCKET, else
HOME/appliance.sock (mode 0600; only the appliance's own user may connect). The home is
private (folders 0700, files 0600): one found with group or other access is made so at
start, each path named, unless --allow-shared-home.
"""


def add_parser(sub: Subparsers) -> None:
    raw = RAW
    appl = sub.add_parser("appliance", help="start, stop and check the appliance process",
                          description="The appliance is the process that owns vmkeep's state "
                          "and runs its work; the CLI and the TUI talk to it over a Unix "
                          "socket.", epilog=EPILOG_APPLIANCE, formatter_class=raw)
    asub = appl.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, text in (("start", "start the appliance (detached unless --foreground)"),
                       ("stop", "stop the appliance; running sessions end as stopped"),
                       ("status", "say whether the appliance runs (exit 3 when not)")):
        p = asub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".",
                            epilog=EPILOG_APPLIANCE, formatter_class=raw)
        p.add_argument("--home", metavar="DIR", help="home folder (default: $VMKEEP_HOME or "
                       "the per-user data folder)")
        if name == "start":
            p.add_argument("--foreground", action="store_true",
                           help="run in this process (for systemd), logging to stderr")
            p.add_argument("--new-catalog", action="store_true",
                           help="when the home's catalog is missing or damaged, start on a "
                           "new, empty one on purpose (a damaged file is kept aside as "
                           "catalog.duckdb.damaged-TIME); then `vmkeep config restore`")
            p.add_argument("--allow-shared-home", action="store_true",
                           help="leave a home that has group or other access as it is (by "
                           "default it is made private to its owner at start, each path "
                           "changed named); what the appliance makes is private either way")
        if name == "status":
            p.add_argument("--json", action="store_true", help="print a JSON object")


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "start": cmd_start, "stop": cmd_stop, "status": cmd_status}


def run(args: argparse.Namespace) -> int:
    return COMMANDS[args.command](args)
