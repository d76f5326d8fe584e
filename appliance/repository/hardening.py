"""Hardened (immutable) repositories: files locked with ``chattr +i`` on the SSH host by a
root-owned helper (``scripts/vmkeep-immutable``) that the appliance's account may run
through one sudo rule and that lifts only locks expired by the host's own clock.

**Epochs** keep locks from being extended forever by deduplication. Time is cut into epochs
of ``epoch_days`` from the repository's creation; every file written in an epoch is locked
until the epoch's end plus ``days``. A point made in an epoch therefore never outlives the
locks of the packs of its own epoch, so it may deduplicate against them (and inherit from a
parent of the same epoch) without extending any lock; it never deduplicates against packs of
an older epoch, whose locks end sooner. The first backup of a VM in a new epoch reads and
stores everything (an active full without deduplication against older epochs). A pack is so
locked at most ``epoch_days + days`` after it was written, and then maintenance lifts the lock
and prune can free it. The cost: one full copy of each VM per epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

from appliance.errors import LockedError, StorageIOError, UsageError

HELPER: Final = "/usr/local/sbin/vmkeep-immutable"
MIN_DAYS: Final = 7
MAX_DAYS: Final = 9999
RECORDS: Final = "immutable"  # the repository's own record of its locks: immutable/<id>.json


class ImmutableError(LockedError):
    """A file to be removed is immutable until a date."""

    code = "immutable"


@dataclass(frozen=True, slots=True)
class Hardening:
    days: int  # locked this long after the end of the epoch a file was written in
    epoch_days: int

    def __post_init__(self) -> None:
        if not MIN_DAYS <= self.days <= MAX_DAYS:
            raise UsageError(f"immutability must last {MIN_DAYS} to {MAX_DAYS} days, not "
                             f"{self.days}")
        if not 1 <= self.epoch_days <= MAX_DAYS:
            raise UsageError(f"an epoch must last 1 to {MAX_DAYS} days, not {self.epoch_days}")


def epoch_of(origin: datetime, now: datetime, epoch_days: int) -> tuple[datetime, datetime]:
    """The epoch (start, end) that ``now`` falls in, epochs counted from ``origin`` (pure)."""
    length = timedelta(days=epoch_days)
    n = max(0, math.floor((now - origin) / length))
    start = origin + n * length
    return start, start + length


def lock_until(h: Hardening, origin: datetime, now: datetime) -> datetime:
    """Until when a file written ``now`` is immutable (pure)."""
    return epoch_of(origin, now, h.epoch_days)[1] + timedelta(days=h.days)


def refuse_immutable(names: Iterable[str], locked_until: dict[str, datetime],
                     doing: str) -> None:
    """Raise ImmutableError when any of ``names`` is locked (``locked_until``: the files the
    host still holds immutable, with their dates), naming the latest date (pure check)."""
    locked = sorted((locked_until[n], n) for n in names if n in locked_until)
    if locked:
        until, name = locked[-1]
        raise ImmutableError(
            f"cannot {doing}: {name} (and {len(locked) - 1} other file(s)) of the hardened "
            f"repository is immutable until {until:%Y-%m-%d %H:%M} UTC; it can be removed "
            "after that date, when maintenance lifts the lock")


class _Runs(Protocol):
    def run(self, argv: list[str], stdin: bytes = b"", *, timeout: float = 300.0
            ) -> tuple[int, str, str]: ...


class Helper:
    """The host's helper, run as root through ``sudo -n`` over the repository's login."""

    def __init__(self, backend: _Runs, root: str) -> None:
        self.backend = backend
        self.root = root

    def _run(self, *args: str, stdin: bytes = b"") -> str:
        status, out, err = self.backend.run(["sudo", "-n", HELPER, *args], stdin)
        if status != 0:
            why = err.strip() or out.strip() or f"exit status {status}"
            raise StorageIOError(
                f"the immutability helper on the repository host refused: {why}. Install it "
                f"as root there (scripts/install-immutable-helper.sh ACCOUNT {self.root})")
        return out

    def check(self) -> None:
        if self._run("check", self.root).strip() != "ok":
            raise StorageIOError("the immutability helper did not answer ok")

    def lock(self, names: list[str], until: datetime) -> None:
        if names:
            self._run("lock", self.root, str(int(until.timestamp())),
                      stdin="".join(f"{n}\n" for n in names).encode())

    def expire(self) -> list[str]:
        """Lift the locks the host's clock says have expired; their files."""
        return [line[7:] for line in self._run("expire", self.root).splitlines()
                if line.startswith("lifted ")]

    def status(self) -> list[tuple[datetime, str, str]]:
        """(until, flag, file) of every lock the helper keeps; flag "i" when immutable."""
        out = []
        for line in self._run("status", self.root).splitlines():
            parts = line.split("\t")
            if len(parts) == 3:
                out.append((datetime.fromtimestamp(int(parts[0]), UTC), parts[1], parts[2]))
        return out
