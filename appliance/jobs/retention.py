"""Retention policy: which restore points to keep, and why (pure; table-tested)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from appliance.errors import UsageError


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    keep_last: int | None = None
    keep_days: float | None = None

    def __post_init__(self) -> None:
        if self.keep_last is None and self.keep_days is None:
            raise UsageError("a retention policy needs --keep-last N and/or --keep-days D")
        check_retention(self.keep_last, self.keep_days)


def check_retention(keep_last: int | None, keep_days: float | None) -> None:
    """The one rule for retention settings, a job's and a prune's alike (either may be None):
    ``keep_last`` at least 1 (the newest point of each VM is always kept), ``keep_days`` more
    than 0 (as the CLI's ``--keep-days`` and docs/CLI.md say: "younger than D days")."""
    if keep_last is not None and keep_last < 1:
        raise UsageError(f"--keep-last must be at least 1, not {keep_last}; vmkeep always "
                         "keeps at least the newest point of each VM")
    if keep_days is not None and keep_days <= 0:
        raise UsageError(f"--keep-days must be more than 0, not {keep_days:g}")


@dataclass(frozen=True, slots=True)
class PointAge:
    point_id: str
    object_name: str
    created: datetime


@dataclass(frozen=True, slots=True)
class Decision:
    point_id: str
    object_name: str
    created: datetime
    keep: bool
    reasons: tuple[str, ...]


def apply_policy(points: Sequence[PointAge], policy: RetentionPolicy, now: datetime
                 ) -> list[Decision]:
    """Decide for each point, per object name, newest first: keep if any rule keeps it.

    Rules: the ``keep_last`` newest; those younger than ``keep_days`` days; and always the
    newest point of each object. Decisions come back oldest first, like point listings.
    """
    by_name: dict[str, list[PointAge]] = {}
    for p in points:
        by_name.setdefault(p.object_name, []).append(p)
    out: list[Decision] = []
    for _name, group in by_name.items():
        group = sorted(group, key=lambda p: (p.created, p.point_id), reverse=True)
        for rank, p in enumerate(group):
            reasons: list[str] = []
            if rank == 0:
                reasons.append("newest point")
            if policy.keep_last is not None and rank < policy.keep_last:
                reasons.append(f"within the last {policy.keep_last}")
            if (policy.keep_days is not None
                    and now - p.created < timedelta(days=policy.keep_days)):
                reasons.append(f"younger than {policy.keep_days:g} days")
            out.append(Decision(p.point_id, p.object_name, p.created, bool(reasons),
                                tuple(reasons)))
    return sorted(out, key=lambda d: (d.created, d.point_id))
