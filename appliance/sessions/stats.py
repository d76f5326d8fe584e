"""A finished backup session's statistics: its VMs' backups summed (``jobs/backup_stats``) into
the wire model clients show (``api.SessionStats``), and kept with the session's row in the
catalog (its ``detail_json``, key ``stats``), so a session read back later shows the same; a
restore session's outcome is kept there too (key ``outcome``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from appliance import api
from appliance.jobs.backup_stats import BackupStats, total


@dataclass(frozen=True, slots=True)
class VmRun:
    """One VM of a session: how long it took and what its backup did (None: it made none)."""

    vm: str
    seconds: float
    backup: BackupStats | None


def session_stats(started: datetime, ended: datetime, vms: Sequence[VmRun]) -> api.SessionStats:
    """The session's statistics from its VMs' (pure)."""
    s = total(v.backup for v in vms if v.backup is not None)
    duration = max(0.0, (ended - started).total_seconds())
    shares = s.stages.shares()
    seconds = dict(zip(shares, (s.stages.source, s.stages.cpu, s.stages.target), strict=True))
    return api.SessionStats(
        duration_seconds=duration, rate=s.read / duration if duration > 0 else 0.0,
        processed=s.processed, read=s.read, new=s.new, transferred=s.transferred,
        dedup_ratio=s.dedup_ratio, compression_ratio=s.compression_ratio,
        bottleneck=s.stages.bottleneck() if s.read else None,
        stages=[api.StageShare(stage=k, seconds=seconds[k], share=v)
                for k, v in shares.items()],
        vms=[api.VmStats(vm=v.vm, duration_seconds=v.seconds,
                         processed=v.backup.processed if v.backup else 0,
                         read=v.backup.read if v.backup else 0,
                         transferred=v.backup.transferred if v.backup else 0,
                         bottleneck=(v.backup.stages.bottleneck()
                                     if v.backup is not None and v.backup.read else None))
             for v in vms])


def detail_json(stats: api.SessionStats | None,
                outcome: api.SessionOutcome | None = None) -> str:
    """The session row's detail: a backup's statistics, a restore's outcome, once it ended."""
    detail: dict[str, object] = {}
    if stats is not None:
        detail["stats"] = stats.model_dump(mode="json")
    if outcome is not None:
        detail["outcome"] = outcome.model_dump(mode="json")
    return json.dumps(detail)


def stats_of(detail: str) -> api.SessionStats | None:
    """The statistics a session row's detail holds (None: none, or not readable)."""
    try:
        raw = json.loads(detail or "{}").get("stats")
        return api.SessionStats.model_validate(raw) if raw is not None else None
    except (ValueError, AttributeError):  # pydantic's ValidationError is a ValueError
        return None


def outcome_of(detail: str) -> api.SessionOutcome | None:
    """The restore outcome a session row's detail holds (None: none, or not readable)."""
    try:
        raw = json.loads(detail or "{}").get("outcome")
        return api.SessionOutcome.model_validate(raw) if raw is not None else None
    except (ValueError, AttributeError):
        return None
