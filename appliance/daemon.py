"""The appliance process: one per home, serving the API on a Unix socket.

- The home folder is created with mode 0700 when missing; one that exists with group or
  other access is made private at start (each path changed named in the log and in the start
  notice) unless ``--allow-shared-home``; so are the folders of its local repositories (in a
  thread: they may be large). The appliance runs under ``umask 077``, so that what DuckDB
  makes itself (the catalog's WAL) is private too.
- One appliance per home: it holds ``flock`` on ``HOME/appliance.lock`` for its whole life.
- The socket is bound by the appliance itself under ``umask 0177``, so it is 0600 from the
  moment it exists (uvicorn's own ``uds=`` creates it world-accessible and chmods it later);
  every connection's peer uid is checked (``SO_PEERCRED``) and one from another uid is
  closed before a byte is read.
- ``start`` runs ``python -m appliance.daemon`` detached (new session, standard streams to
  ``HOME/appliance.log``) and returns once the appliance answers its handshake. When the
  appliance stops before it answers, it leaves why in ``HOME/appliance.failed`` (message,
  code, exit code) and ``start`` fails with that one line and exit code.
- The catalog is read in full before the appliance serves (``open_registry``): a damaged
  one, or a missing one in a home with other state, stops it (exit 13) with the commands that
  restore it; ``--new-catalog`` starts on a new, empty one on purpose.
- Its socket's folder must be its user's and writable by no one else, as its clients check
  (``appliance.client.check_socket_folder``); ``start`` refuses a home whose lock file is
  another user's, and reports an appliance already running only after the client's checks
  of the socket and of the process serving it (``SO_PEERCRED``) passed.
- ``stop`` asks it to stop over the API and waits until it is gone.
- At start it has its id (``HOME/appliance.id``, made the first time), marks the sessions a
  crash cut short interrupted, then, in a thread, removes the snapshots its finished sessions
  left (appliance/leftovers.py) and has the alerts looked for at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.client import ApplianceClient, check_socket_folder, owned_by_other
from appliance.errors import (
    ApplianceError,
    ApplianceNotRunningError,
    CatalogDamagedError,
    CatalogMissingError,
    RemoteError,
    UsageError,
    VmkeepError,
)
from appliance.home import Home, appliance_id, resolve
from appliance.private import summary, tighten_tree
from appliance.process import process_alive
from appliance.secret_store import write_private

if TYPE_CHECKING:
    from appliance.notifier import Notifier
    from appliance.registry import Registry
    from appliance.sessions.manager import SessionManager

log = logging.getLogger("appliance.daemon")

START_TIMEOUT = 30.0
# The catalog is read in full before the appliance answers (open_registry); a start waits
# this much longer per byte of it (measured ~200 MB/s on 2 busy cores; a quarter of that).
VERIFY_BYTES_PER_SECOND = 50 << 20
STOP_TIMEOUT = 60.0
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class AlreadyRunningError(ApplianceError):
    """Another appliance holds this home."""

    code = "appliance_running"


@dataclass(frozen=True, slots=True)
class Started:
    pid: int
    already_running: bool
    socket: Path
    notice: str | None = None  # what the appliance did at start that its admin should know


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket (None if unknown)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    except OSError:
        return None
    _pid, uid, _gid = _PEERCRED.unpack(raw)
    return int(uid)


def bind_socket(path: Path) -> socket.socket:
    """A listening Unix socket at ``path``, mode 0600 from the moment it exists."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(os.fspath(path))
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    sock.listen(64)
    sock.setblocking(False)
    return sock


def _make_home(home: Home) -> None:
    if not home.root.exists():
        try:
            home.root.mkdir(mode=0o700, parents=True)
        except FileExistsError:
            pass  # a second `appliance start` made it at the same moment; the lock decides
        else:
            os.chmod(home.root, 0o700)  # mkdir's mode is filtered by the umask
    if not home.root.is_dir():
        raise ApplianceError(f"appliance home {home.root} is not a folder; name a folder "
                             "with --home or VMKEEP_HOME")
    if not home.socket.parent.exists():
        home.socket.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(home.socket.parent, 0o700)


@contextlib.contextmanager
def _home_lock(home: Home) -> Iterator[None]:
    fd = os.open(home.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise AlreadyRunningError(f"an appliance already runs for home {home.root}; "
                                          "stop it with `vmkeep appliance stop`") from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def _protocol_class() -> type[asyncio.Protocol]:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class PeerCheckedProtocol(H11Protocol):
        """uvicorn's HTTP/1.1 protocol that closes connections from another uid."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            sock = transport.get_extra_info("socket")
            uid = peer_uid(sock) if sock is not None else None
            if uid != os.getuid():
                log.warning("refused a connection from uid %s: only uid %s may use the "
                            "appliance", uid, os.getuid())
                transport.abort()

    return PeerCheckedProtocol


def _restore(home: Home) -> str:
    """The command that brings the configuration back, said as part of a sentence."""
    latest = home.latest_config_backup()
    what = "to bring its vCenters, repositories, jobs and settings back from the latest " \
        "configuration backup"
    if latest is None:
        return (f"`vmkeep config restore --from REPOSITORY-FOLDER` {what} (a repository "
                "folder holding appliance-config/)")
    if latest.startswith("sftp://"):
        return (f"`vmkeep config restore --from FILE` {what}, {latest}, copied to this "
                "machine first (scp)")
    return f"`vmkeep config restore --from {latest}` {what}"


def _restore_hint(home: Home) -> str:
    return f"run `vmkeep appliance start --new-catalog` then {_restore(home)}"


def open_registry(home: Home, *, new_catalog: bool = False) -> tuple[Registry, str | None]:
    """The appliance's registry on a catalog that exists and reads in full, and a notice for
    the administrator (None: nothing to say). A missing catalog in a used home, or a damaged
    one, stops the start (CatalogMissingError, CatalogDamagedError) unless ``new_catalog``:
    then a damaged file is moved aside and the appliance starts empty on purpose. Called
    under the home's lock."""
    from appliance.registry import Registry
    from catalog.store import CatalogBusy, CatalogDamaged, CatalogVersionError

    path = home.catalog
    if not path.exists():
        if not home.used():
            return Registry(home), None  # a new home
        if not new_catalog:
            raise CatalogMissingError(
                f"the appliance's catalog {path} is missing, but this home holds other "
                f"appliance state (secrets, configuration backups); {_restore_hint(home)}; "
                "the appliance does not start empty unless told to")
        notice = (f"the catalog {path} was missing: started with a new, empty one as asked "
                  f"(--new-catalog); now run {_restore(home)}")
        log.warning("%s", notice)
        return Registry(home), notice
    try:
        registry = Registry(home)
    except CatalogBusy:
        raise ApplianceError(f"the appliance's catalog {path} is open in another process; "
                             "stop it, then start the appliance") from None
    except CatalogVersionError:
        raise ApplianceError(f"the appliance's catalog {path} was written by a newer vmkeep; "
                             "run that version (or newer)") from None
    except CatalogDamaged as exc:
        damage = exc.detail
    else:
        try:
            began = time.monotonic()
            with registry.catalog() as cat:
                cat.check()
            log.info("catalog %s read in full in %.1f s", path, time.monotonic() - began)
            if new_catalog:
                registry.close()
                raise UsageError(f"the appliance's catalog {path} reads in full: "
                                 "--new-catalog replaces only a missing or damaged one (to "
                                 "start empty on purpose, move it away first)")
            return registry, None
        except CatalogDamaged as exc:
            damage = exc.detail
            with contextlib.suppress(Exception):  # a damaged database may not close cleanly
                registry.close()
    if not new_catalog:
        raise CatalogDamagedError(f"the appliance's catalog {path} is damaged ({damage}); "
                                  f"{_restore_hint(home)}")
    log.warning("catalog %s is damaged: %s", path, damage)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    os.rename(path, aside)
    wal = path.with_name(path.name + ".wal")
    if wal.exists():
        os.rename(wal, path.with_name(f"{wal.name}.damaged-{stamp}"))
    notice = (f"the damaged catalog {path} was moved to {aside}; started with a new, empty "
              f"one as asked (--new-catalog); now run {_restore(home)}")
    log.warning("%s", notice)
    return Registry(home), notice


def tighten_home(home: Home) -> str | None:
    """Take group and other access off the home and all it holds; the notice naming what was
    changed (None: it was private)."""
    changed = tighten_tree(home.root)
    if not changed:
        return None
    notice = summary(changed, f"the appliance home {home.root}") + \
        " (start with --allow-shared-home to leave a home as it is)"
    log.warning("%s", notice)
    return notice


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

    _make_home(home)
    check_socket_folder(home.socket, os.geteuid())
    with _home_lock(home):
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
                               alerts=notifier.alerts)
        config = uvicorn.Config(create_app(state), http=_protocol_class(), lifespan="off",
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


def _answers(home: Home) -> int | None:
    """The pid of the appliance answering on the socket, or None."""
    try:
        with ApplianceClient(home.socket, timeout=5) as client:
            return client.handshake().pid
    except ApplianceNotRunningError:
        return None


def _log_tail(home: Home, lines: int = 5) -> str:
    try:
        text = home.log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


def _start_failure(home: Home) -> VmkeepError | None:
    """Why the appliance did not start, as it wrote it (None: it wrote nothing)."""
    try:
        doc = json.loads(home.start_failure.read_text())
        return RemoteError(str(doc["message"]), code=str(doc["code"]),
                           exit_code=int(doc["exit_code"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _start_notice(home: Home) -> str | None:
    try:
        return home.start_notice.read_text().strip() or None
    except OSError:
        return None


def _check_home_owner(home: Home) -> None:
    """The home's lock file (it holds the running appliance's pid), when there is one, must be
    this user's: another user's appliance is not ours to report or to start over."""
    try:
        owner = os.stat(home.lock).st_uid
    except OSError:
        return
    if owner != os.geteuid():
        raise owned_by_other(f"the appliance home {home.root} (its lock file {home.lock})",
                             owner, os.geteuid())


def start(home: Home, *, timeout: float = START_TIMEOUT, new_catalog: bool = False,
          allow_shared_home: bool = False) -> Started:
    """Start the appliance detached; return once it answers (or when one already runs).
    ``new_catalog``: start on a new, empty catalog when the home's is missing or damaged.
    ``allow_shared_home``: leave a home with group or other access so.
    Raises SocketTrustError when the home's lock file, the socket, its folder or the process
    serving it is another user's."""
    _check_home_owner(home)
    pid = _answers(home)
    if pid is not None:
        return Started(pid, True, home.socket)
    _make_home(home)
    for stale in (home.start_failure, home.start_notice):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    env = {**os.environ, "VMKEEP_HOME": str(home.root), "VMKEEP_SOCKET": str(home.socket)}
    with open(home.log, "ab", buffering=0) as logfile:
        os.chmod(home.log, 0o600)
        proc = subprocess.Popen(
            [sys.executable, "-m", "appliance.daemon", "--home", str(home.root),
             *(["--new-catalog"] if new_catalog else []),
             *(["--allow-shared-home"] if allow_shared_home else [])],
            stdin=subprocess.DEVNULL, stdout=logfile, stderr=logfile, env=env,
            start_new_session=True, close_fds=True, cwd="/")
    with contextlib.suppress(OSError):
        timeout += home.catalog.stat().st_size / VERIFY_BYTES_PER_SECOND
    deadline = time.monotonic() + timeout
    delay = 0.02
    while time.monotonic() < deadline:
        pid = _answers(home)
        if pid is not None:
            return Started(pid, pid != proc.pid, home.socket,
                           _start_notice(home) if pid == proc.pid else None)
        if proc.poll() is not None:
            pid = _answers(home)  # lost a race with another start: that one runs
            if pid is not None:
                return Started(pid, True, home.socket)
            failure = _start_failure(home)
            if failure is not None:
                raise failure
            raise ApplianceError(f"the appliance exited with status {proc.returncode} while "
                                 f"starting: {_log_tail(home) or 'no log'} (log: {home.log})")
        time.sleep(delay)
        delay = min(delay * 2, 0.25)
    raise ApplianceError(f"the appliance did not answer within {timeout:g} s; see {home.log}")


def stop(home: Home, *, timeout: float = STOP_TIMEOUT) -> int | None:
    """Ask the appliance to stop and wait until it is gone. Returns its pid (None: none ran)."""
    try:
        with ApplianceClient(home.socket, timeout=10) as client:
            pid = client.handshake().pid
            client.shutdown()
    except ApplianceNotRunningError:
        return None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_alive(pid) and not home.socket.exists():
            return pid
        time.sleep(0.05)
    raise ApplianceError(f"the appliance (pid {pid}) did not stop within {timeout:g} s; see "
                         f"{home.log}, or end it with `kill {pid}`")


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


if __name__ == "__main__":
    sys.exit(main())
