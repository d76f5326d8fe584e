"""What the offline ``vmkeep image`` commands print with ``--json``: one small object per
command, made of the engine's results (docs/CLI.md lists their fields)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.jobs.backup import BackupResult
    from appliance.jobs.prune import PrunePlan, PruneResult
    from appliance.jobs.restore import RestoreResult
    from appliance.jobs.verify import VerifyReport
    from appliance.jobs.workspace import SyncResult

JsonObject = dict[str, object]


def dump(value: JsonObject) -> str:
    return json.dumps(value, indent=2)


def _utc(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def backup(name: str, result: BackupResult) -> JsonObject:
    return {"point_id": result.point_id, "name": name, "kind": result.kind,
            "reason": result.reason, "bytes_read": result.bytes_read,
            "bytes_stored": result.bytes_stored, "blocks_new": result.blocks_new,
            "blocks_deduplicated": result.blocks_deduplicated, "seconds": result.seconds,
            "warnings": list(result.warnings)}


def restore(result: RestoreResult) -> JsonObject:
    return {"point_id": result.point_id, "disk": result.disk_index,
            "target": str(result.target), "size": result.size,
            "bytes_written": result.bytes_written, "seconds": result.seconds,
            "removed_partials": [str(p) for p in result.removed_partials]}


def verify(report: VerifyReport) -> JsonObject:
    return {"ok": report.ok, "points_checked": report.points_checked,
            "packs_checked": report.packs_checked, "blocks_checked": report.blocks_checked,
            "bytes_checked": report.bytes_checked,
            "damage": [{"file": d.file, "problem": d.problem, "points": list(d.points)}
                       for d in report.damage],
            "damaged_points": report.damaged_points}


def rescan(repo: str, synced: SyncResult) -> JsonObject:
    return {"repo": repo, "points_added": synced.points_added,
            "packs_added": synced.packs_added, "damaged": list(synced.damaged)}


def prune(plan: PrunePlan, result: PruneResult | None, *, dry_run: bool) -> JsonObject:
    """The plan (each point's fate) and, unless a dry run, what was done."""
    return {"dry_run": dry_run,
            "points": [{"id": d.point_id, "name": d.object_name, "created": _utc(d.created),
                        "keep": d.keep, "reasons": list(d.reasons)} for d in plan.decisions],
            "bytes_freed_planned": plan.bytes_freed,
            "points_removed_planned": len(plan.remove_points),
            "packs_deleted_planned": len(plan.delete_packs),
            "packs_compacted_planned": len(plan.compact_packs),
            "result": None if result is None else {
                "points_removed": result.points_removed, "packs_deleted": result.packs_deleted,
                "packs_compacted": result.packs_compacted,
                "packs_written": result.packs_written, "bytes_freed": result.bytes_freed}}


def repair_config(repo: str, notes: list[str], points: int) -> JsonObject:
    return {"repo": repo, "notes": notes, "points": points}
