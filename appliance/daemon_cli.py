"""``vmkeep appliance start|stop|status``: run and look after the appliance process."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime

from appliance import daemon, inputs
from appliance.client import ApplianceClient
from appliance.errors import ApplianceNotRunningError, UsageError
from appliance.home import Home, resolve

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


def _no_home(args: argparse.Namespace, home: Home, problem: str) -> UsageError:
    where = ("--home" if args.home else "VMKEEP_HOME" if os.environ.get("VMKEEP_HOME")
             else "the per-user data folder (from HOME or XDG_DATA_HOME)")
    return UsageError(f"no home folder for the appliance: {home.root}, {where}, cannot be "
                      f"used ({problem}); set VMKEEP_HOME (or --home) to a folder this user "
                      "can write")


def _start(args: argparse.Namespace, home: Home) -> int:
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
    home = resolve(args.home)
    pid = daemon.stop(home)
    if pid is None:
        print(f"no appliance runs for {home.root}", file=sys.stderr)
    else:
        print(f"stopped the appliance (pid {pid})", file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
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


COMMANDS = {"start": cmd_start, "stop": cmd_stop, "status": cmd_status}


def run(args: argparse.Namespace) -> int:
    return COMMANDS[args.command](args)
