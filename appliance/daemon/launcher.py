"""Starting and stopping the appliance from outside: ``start`` runs it detached and returns
once it answers its handshake (or with why it did not start); ``stop`` asks it to stop over
the API and waits until it is gone."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.client import ApplianceClient, owned_by_other
from appliance.daemon.home_lock import make_home
from appliance.errors import (
    ApplianceError,
    ApplianceNotRunningError,
    RemoteError,
    VmkeepError,
)
from appliance.home import Home
from appliance.process import process_alive

START_TIMEOUT = 30.0
# The catalog is read in full before the appliance answers (open_registry); a start waits
# this much longer per byte of it (measured ~200 MB/s on 2 busy cores; a quarter of that).
VERIFY_BYTES_PER_SECOND = 50 << 20
STOP_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Started:
    pid: int
    already_running: bool
    socket: Path
    notice: str | None = None  # what the appliance did at start that its admin should know


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
    make_home(home)
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
