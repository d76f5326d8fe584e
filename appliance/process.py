"""Is a process alive? One answer for the appliance's pid file, repository locks and restores'
partial files.

A process is alive when its pid exists, it is not a zombie (ended, not yet reaped by its
parent: state ``Z`` in ``/proc/PID/stat``), and, when the caller knows when it started, it
started then (else the pid was reused by another process). Another user's process counts
(``kill`` is refused, but it runs). Where ``/proc`` cannot be read, an existing pid is alive.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class _Stat:
    state: str
    start: int  # clock ticks after boot


def _stat(pid: int) -> _Stat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
        # The command name, in parentheses, may hold spaces and ")": the fields follow the last.
        fields = raw.rsplit(b")", 1)[1].split()
        return _Stat(fields[0].decode("ascii"), int(fields[19]))
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        return None


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot), or None when it cannot be read."""
    stat = _stat(pid)
    return None if stat is None else stat.start


def process_alive(pid: int, start: int | None = None) -> bool:
    """Whether ``pid`` runs (see the module); ``start`` (``process_start`` when it was
    recorded; None or 0: unknown) tells a reused pid from the process meant."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    stat = _stat(pid)
    if stat is None:
        return True
    if stat.state == "Z":
        return False
    return not start or stat.start == start
