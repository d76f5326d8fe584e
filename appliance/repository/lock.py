"""Repository locks, after restic's model.

Backups, restores and checks take a *shared* lock; prune and compact take an *exclusive* one.
A process writes its lock file ``locks/<id>`` first and then lists the others: if any holds a
conflicting mode, it removes its own and waits (or gives up). A lock is *stale* when its
process is gone (same host, pid not running or started at another time) or when it was not
refreshed for ``STALE_AFTER`` seconds; stale locks are removed by whoever finds them. Holders
refresh their lock every ``REFRESH_EVERY`` seconds from a background thread.

Reading needs no writes: a shared lock taken with ``read_only_ok`` on a repository where the
lock file cannot be written (a full or read-only file system, no permission) is a *read-only*
lock: it still refuses while a live exclusive lock is held, but writes, refreshes and removes
nothing (not even stale locks), and says so in ``RepoLock.note``.

Deleting needs no space, a lock file does: an exclusive lock whose file does not fit (a full
repository, which only a prune can make room in) is an *empty* ``locks/<id>`` file, which
needs an inode but no data block. Every reader takes an unreadable lock file for a held
exclusive lock of unknown owner (until it is ``STALE_AFTER`` old), which is what it is; its
holder writes the whole lock file as soon as the deletes have made room (it tries every
``RETRY_FULL_EVERY`` seconds).
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Final

from appliance.errors import (
    IntegrityError,
    LockedError,
    NoSpaceError,
    RepositoryFormatError,
    StorageIOError,
)
from appliance.process import process_alive, process_start
from appliance.repository import objfile
from appliance.repository.backend import TMP_FOLDER, Backend, ObjectNotFound

STALE_AFTER: Final = 30 * 60.0
JUNK_IGNORED_AFTER: Final = 60.0  # an unreadable lock file older than this: readers ignore it
REFRESH_EVERY: Final = 5 * 60.0
RETRY_FULL_EVERY: Final = 2.0
LOCKS: Final = "locks"


@dataclass(frozen=True, slots=True)
class LockInfo:
    lock_id: str
    host: str
    pid: int
    pid_start: int | None
    exclusive: bool
    operation: str
    created: float
    refreshed: float

    def to_json(self) -> dict[str, Any]:
        return {"id": self.lock_id, "host": self.host, "pid": self.pid,
                "pid_start": self.pid_start, "exclusive": self.exclusive,
                "operation": self.operation, "created": self.created,
                "refreshed": self.refreshed}

    @staticmethod
    def from_json(doc: dict[str, Any]) -> LockInfo:
        return LockInfo(str(doc["id"]), str(doc["host"]), int(doc["pid"]), doc.get("pid_start"),
                        bool(doc["exclusive"]), str(doc.get("operation", "")),
                        float(doc["created"]), float(doc["refreshed"]))

    def describe(self) -> str:
        mode = "exclusive" if self.exclusive else "shared"
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.created))
        return f"{mode} lock of {self.operation} (pid {self.pid} on {self.host}, since {since})"

    def is_stale(self, now: float) -> bool:
        if self.host == socket.gethostname() and not process_alive(self.pid, self.pid_start):
            return True
        return now - self.refreshed > STALE_AFTER


class RepoLock:
    """A held lock; use as a context manager or call ``release()``.

    ``read_only``: no lock file was written (it could not be: ``note`` says why, in a line
    for the user); such a lock has no refresher and releases nothing. ``note`` may also name
    unreadable lock files a reader went past."""

    def __init__(self, backend: Backend, info: LockInfo, *, note: str | None = None,
                 empty: bool = False, read_only: bool = False) -> None:
        self.backend = backend
        self.info = info
        self.note = note
        self.read_only = read_only
        self.empty = empty  # an exclusive lock held by an empty file (a full repository)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not self.read_only:
            self._thread = threading.Thread(target=self._refresher, daemon=True,
                                            name=f"lock-refresh-{info.lock_id[:6]}")
            self._thread.start()

    @property
    def name(self) -> str:
        return f"{LOCKS}/{self.info.lock_id}"

    def _refresher(self) -> None:
        while not self._stop.wait(RETRY_FULL_EVERY if self.empty else REFRESH_EVERY):
            info = LockInfo(**{**_fields(self.info), "refreshed": time.time()})
            try:
                self.backend.put(self.name, objfile.encode_json(objfile.MAGIC_LOCK,
                                                                info.to_json()))
                self.info = info
                self.empty = False
            except Exception:  # the next refresh tries again; staleness is 6 refreshes away
                with contextlib.suppress(Exception):
                    if self.empty:  # still no room: keep the empty file's age young
                        self.backend.put(self.name, b"")

    def release(self) -> None:
        self._stop.set()
        if self._thread is None:
            return
        self._thread.join(timeout=5)
        with contextlib.suppress(ObjectNotFound):
            self.backend.delete(self.name)

    def __enter__(self) -> RepoLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _fields(info: LockInfo) -> dict[str, Any]:
    return {f: getattr(info, f) for f in LockInfo.__slots__}


def read_locks(backend: Backend) -> list[tuple[str, LockInfo | None]]:
    """Every lock file as (name, info); info is None for a damaged or vanished lock file."""
    out: list[tuple[str, LockInfo | None]] = []
    for name in backend.list(LOCKS):
        try:
            doc = objfile.decode_json(objfile.MAGIC_LOCK, backend.get(name), name)
            out.append((name, LockInfo.from_json(doc)))
        except ObjectNotFound:
            continue
        except (IntegrityError, RepositoryFormatError, KeyError, TypeError, ValueError):
            out.append((name, None))
    return out


def leftovers_likely(backend: Backend) -> bool:
    """Did a process die holding a lock here, or leave files in tmp/? (cheap: two listings)"""
    if backend.list(TMP_FOLDER):
        return True
    now = time.time()
    return any(info is None or info.is_stale(now) for _name, info in read_locks(backend))


def _remove_stale(backend: Backend, name: str) -> None:
    """Delete a dead process's lock, leaving a marker in tmp/ so that the next process able to
    take the exclusive lock sweeps what the dead one may have left behind."""
    with contextlib.suppress(StorageIOError):  # swept meanwhile: a sweep is under way anyway
        backend.put(f"{TMP_FOLDER}/stale-{name.rsplit('/', 1)[-1]}", b"")
    with contextlib.suppress(ObjectNotFound):
        backend.delete(name)


def _unreadable(backend: Backend, name: str, age: float, exclusive: bool) -> str:
    """A conflict's description for a lock file whose owner cannot be read."""
    ignored = (f"after {STALE_AFTER / 60:.0f} minutes it is removed" if exclusive else
               f"readers ignore it once it is {JUNK_IGNORED_AFTER:.0f} s old")
    return (f"lock file {backend.location}/{name} cannot be read (no vmkeep lock, or a "
            f"damaged one; written {age:.0f} s ago) and counts as held: {ignored}; delete the "
            "file if no vmkeep process is at work")


def acquire(backend: Backend, *, exclusive: bool, operation: str, wait: float = 0.0,
            read_only_ok: bool = False) -> RepoLock:
    """Take a lock, waiting up to ``wait`` seconds for conflicting holders to finish.

    ``read_only_ok`` (shared locks only; ignored for an exclusive one): when the lock file
    cannot be written, return a read-only lock (see the module's documentation) once no live
    exclusive lock is held."""
    read_only_ok = read_only_ok and not exclusive
    deadline = time.monotonic() + wait
    pause = 0.05
    swept = 0
    while True:
        now = time.time()
        info = LockInfo(secrets.token_hex(16), socket.gethostname(), os.getpid(),
                        process_start(os.getpid()), exclusive, operation, now, now)
        name = f"{LOCKS}/{info.lock_id}"
        empty = False
        try:
            backend.put(name, objfile.encode_json(objfile.MAGIC_LOCK, info.to_json()))
        except NoSpaceError as exc:
            if read_only_ok:
                return _read_only(backend, info, "no space left on the storage", exc, deadline)
            if not exclusive:
                raise
            try:  # an empty file needs no data block (see the module's documentation)
                backend.put(name, b"")
            except (NoSpaceError, StorageIOError):
                raise exc from None
            empty = True
        except StorageIOError as exc:
            # Lock files are written through tmp/, which an exclusive holder (prune, cleanup)
            # sweeps without regard for lock requests under way: write it again.
            swept += 1
            if swept > 3:
                if not read_only_ok:
                    raise
                return _read_only(backend, info, str(exc), exc, deadline)
            continue
        conflict: str | None = None
        passed: list[str] = []  # unreadable lock files old enough for a reader to ignore
        for other_name, other in read_locks(backend):
            if other_name == name:
                continue
            if other is None:
                # A lock file whose owner cannot be read (damage, or junk someone put there).
                # Lock files are written whole (through tmp/), so it is no holder's lock being
                # written: after a minute readers ignore it; exclusive takers wait for it
                # until it is stale, and then remove it.
                try:
                    age = now - backend.stat(other_name).mtime
                except ObjectNotFound:
                    continue
                if age > STALE_AFTER:
                    _remove_stale(backend, other_name)
                    continue
                if age > JUNK_IGNORED_AFTER and not exclusive:
                    passed.append(f"{backend.location}/{other_name}")
                    continue
                conflict = conflict or _unreadable(backend, other_name, age, exclusive)
                continue
            if other.is_stale(now):
                _remove_stale(backend, other_name)
                continue
            if exclusive or other.exclusive:
                conflict = other.describe()
        if conflict is None:
            note = (f"went past lock file(s) {', '.join(passed)}: unreadable (no vmkeep lock, "
                    f"or a damaged one) and older than {JUNK_IGNORED_AFTER:.0f} s; delete them "
                    "if no vmkeep process is at work" if passed else None)
            return RepoLock(backend, info, empty=empty, note=note)
        with contextlib.suppress(ObjectNotFound):
            backend.delete(name)
        if time.monotonic() >= deadline:
            raise LockedError(
                f"repository {backend.location} is locked: {conflict}; wait for it "
                "to finish (or pass a longer --lock-wait), or remove the lock if that process "
                "is gone"
            )
        time.sleep(pause * (0.5 + random.random()))
        pause = min(pause * 2, 1.0)


def _read_only(backend: Backend, info: LockInfo, why: str, exc: Exception,
               deadline: float) -> RepoLock:
    """The read-only lock: no file written, but no reading under a live exclusive lock (an
    unreadable lock file counts as one while it is young, as for any reader)."""
    pause = 0.05
    while True:
        now = time.time()
        conflict: str | None = None
        for other_name, other in read_locks(backend):
            if other is None:
                with contextlib.suppress(ObjectNotFound):
                    age = now - backend.stat(other_name).mtime
                    if age <= JUNK_IGNORED_AFTER:
                        conflict = _unreadable(backend, other_name, age, False)
            elif other.exclusive and not other.is_stale(now):
                conflict = other.describe()
        if conflict is None:
            note = (f"repository {backend.location} is read-only here (lock file could not be "
                    f"written: {why}); reading without a lock")
            return RepoLock(backend, info, note=note, read_only=True)
        if time.monotonic() >= deadline:
            raise LockedError(
                f"repository {backend.location} is locked: {conflict}; wait for it "
                "to finish (or pass a longer --lock-wait); the repository cannot be written "
                f"here either ({exc})"
            ) from None
        time.sleep(pause * (0.5 + random.random()))
        pause = min(pause * 2, 1.0)
