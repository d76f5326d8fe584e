"""The appliance process itself (``python -m appliance.daemon``): ``main`` parses its
arguments, ``serve`` runs it until it is asked to stop, and a start that fails leaves why
for the ``start`` that waits for it."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.client import check_socket_folder
from appliance.daemon.catalog_open import open_registry
from appliance.daemon.home_lock import AlreadyRunningError, home_lock, make_home, tighten_home
from appliance.daemon.listener import bind_socket, protocol_class
from appliance.errors import ApplianceError, VmkeepError
from appliance.home import Home, appliance_id, resolve
from appliance.private import summary, tighten_tree
from appliance.secret_store import write_private

if TYPE_CHECKING:
    from appliance.notifier import Notifier
    from appliance.registry import Registry
    from appliance.sessions.manager import SessionManager

log = logging.getLogger("appliance.daemon")


def _tighten_repositories(registry: Registry) -> None:
    """At start, in a thread: the appliance's local repositories made private, each path
    changed logged (SSH ones are made private when added, and written 0600/0700)."""
    from appliance.repository.sftp import is_sftp

    try:
        for info in registry.repositories.all():
            if is_sftp(info.location):
                continue
            changed = tighten_tree(Path(info.location))
            if changed:
                log.warning("%s", summary(changed, f"repository {info.name} ({info.location})"))
    except Exception:  # the appliance serves on whatever happens here
        log.exception("making the repositories private at start failed")


def serve(home: Home, *, new_catalog: bool = False, allow_shared_home: bool = False) -> int:
    """Run the appliance in this process until it is asked to stop (SIGTERM, SIGINT or the
    API's shutdown). Returns the exit status. ``allow_shared_home``: a home with group or
    other access is left so (else it is made private)."""
    import uvicorn

    from appliance.notifier import Notifier
    from appliance.scheduler import Scheduler
    from appliance.server import ApplianceState, create_app
    from appliance.sessions.manager import SessionManager

    make_home(home)
    check_socket_folder(home.socket, os.geteuid())
    with home_lock(home):
        private = None if allow_shared_home else tighten_home(home)
        registry, notice = open_registry(home, new_catalog=new_catalog)
        notices = [n for n in (private, notice) if n is not None]
        if notices:
            write_private(home.start_notice, "\n".join(notices).encode())
        with contextlib.suppress(FileNotFoundError):
            home.socket.unlink()  # a dead appliance's socket: we hold the home's lock
        sock = bind_socket(home.socket)
        server: Any = None

        def request_stop() -> None:
            registry.queries.stop()  # a console query must not hold the stop up
            if server is not None:
                server.should_exit = True

        log.info("appliance id %s (it names this appliance's snapshots)", appliance_id(home))
        sessions = SessionManager(registry)
        for sid in sessions.mark_interrupted():
            log.warning("session %s was cut short by the last stop; marked interrupted", sid)
        scheduler = Scheduler(registry, sessions)
        notifier = Notifier(registry, sessions)
        state = ApplianceState(home=home, pid=os.getpid(), started=datetime.now(UTC),
                               request_stop=request_stop, registry=registry, sessions=sessions,
                               alerts=notifier.alerts, next_run=scheduler.next_run)
        config = uvicorn.Config(create_app(state), http=protocol_class(), lifespan="off",
                                log_config=None, access_log=False, timeout_graceful_shutdown=10)
        server = uvicorn.Server(config)
        log.info("vmkeep appliance %s serving %s (home %s)", os.getpid(), home.socket,
                 home.root)
        scheduler.start()
        notifier.start()
        threading.Thread(target=_clean_leftovers, args=(registry, sessions, notifier),
                         name="leftovers", daemon=True).start()
        threading.Thread(target=_tighten_repositories, args=(registry,),
                         name="private-repositories", daemon=True).start()
        try:
            server.run(sockets=[sock])
        finally:
            notifier.stop()
            scheduler.stop()
            sessions.stop_all()
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                home.socket.unlink()
            registry.close()
            log.info("vmkeep appliance %s stopped", os.getpid())
    return 0


def _clean_leftovers(registry: Registry, sessions: SessionManager, notifier: Notifier) -> None:
    """At start: remove the snapshots this appliance's finished sessions left (logged here and
    in each session), then look for alerts at once, so what is left shows without waiting."""
    from appliance.leftovers import clean_at_start

    try:
        clean_at_start(registry, sessions.running_ids)
    except Exception:  # the appliance serves on whatever happens here
        log.exception("looking for leftover snapshots at start failed")
    finally:
        notifier.look_soon()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance.daemon",
                                     description="Run the vmkeep appliance in the foreground.")
    parser.add_argument("--home", help="home folder (default: $VMKEEP_HOME or the per-user "
                        "data folder)")
    parser.add_argument("--new-catalog", action="store_true",
                        help="start on a new, empty catalog when the home's is missing or "
                        "damaged (the damaged file is kept aside)")
    parser.add_argument("--allow-shared-home", action="store_true",
                        help="leave a home with group or other access so (else it is made "
                        "private to its owner at start)")
    args = parser.parse_args(argv)
    os.umask(0o077)  # what DuckDB and libraries make themselves is private too
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        home = resolve(args.home)
    except VmkeepError as exc:
        log.error("%s", exc)
        return exc.exit_code
    try:
        return serve(home, new_catalog=args.new_catalog,
                     allow_shared_home=args.allow_shared_home)
    except VmkeepError as exc:
        log.error("%s", exc)
        _record_failure(home, exc)
        return exc.exit_code
    except Exception as exc:  # a bug: its traceback to the log, one line to the admin
        log.exception("the appliance failed")
        failure = ApplianceError(f"the appliance failed: {type(exc).__name__}: "
                                 f"{(str(exc).strip().splitlines() or [''])[0][:200]}; the "
                                 f"details are in {home.log}")
        _record_failure(home, failure)
        return failure.exit_code


def _record_failure(home: Home, exc: VmkeepError) -> None:
    """Leave why the appliance stopped for the ``start`` that waits for it."""
    if isinstance(exc, AlreadyRunningError):
        return  # another appliance runs: the start that waits finds it
    with contextlib.suppress(OSError):
        write_private(home.start_failure, json.dumps(
            {"message": str(exc), "code": exc.code, "exit_code": exc.exit_code}).encode())
