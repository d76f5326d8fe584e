"""Prune: apply retention, delete manifests, then delete dead packs and compact sparse ones.

Plan first (nothing changes; ``--dry-run`` prints the plan), then check the plan, then execute
in an exclusive workspace in this order: removed points marked → their manifests deleted →
catalog forgets them → packs with nothing live deleted (room first: a full repository can be
pruned) → live blocks of sparse packs copied to new packs, made durable and indexed → the
compacted packs deleted. A crash at any step leaves every kept point restorable; the next prune
finishes the work. The check (``check_plan``) is an assertion over the plan: it never deletes a
manifest or a pack a kept point needs, whatever the catalog held.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from appliance.errors import IntegrityError, RepositoryFormatError, UsageError
from appliance.faults import crash_point, hold_point
from appliance.jobs.retention import Decision, PointAge, RetentionPolicy, apply_policy
from appliance.jobs.sync import index_pack
from appliance.jobs.workspace import Workspace
from appliance.repository.pack import ENTRY, FOOTER, HEADER, PackWriter, parse_pack
from catalog.models import PackUsage

DEFAULT_COMPACT_BELOW = 0.75


@dataclass(frozen=True, slots=True)
class PrunePlan:
    decisions: tuple[Decision, ...]
    delete_packs: tuple[PackUsage, ...]
    compact_packs: tuple[PackUsage, ...]

    @property
    def remove_points(self) -> list[str]:
        return [d.point_id for d in self.decisions if not d.keep]

    @property
    def keep_points(self) -> list[str]:
        return [d.point_id for d in self.decisions if d.keep]

    @property
    def bytes_freed(self) -> int:
        freed = sum(p.size for p in self.delete_packs)
        for p in self.compact_packs:
            freed += p.size - (HEADER.size + FOOTER.size + p.live_entries * ENTRY.size
                               + p.live_bytes)
        return freed


def choose_packs(usage: Sequence[PackUsage], compact_below: float
                 ) -> tuple[list[PackUsage], list[PackUsage]]:
    """Split packs into (delete: nothing live, compact: live share under the threshold)."""
    delete = [u for u in usage if u.live_entries == 0]
    compact = [u for u in usage if u.live_entries and u.stored_bytes
               and u.live_bytes / u.stored_bytes < compact_below]
    return delete, compact


def plan_prune(ws: Workspace, policy: RetentionPolicy, now: datetime, *,
               compact_below: float = DEFAULT_COMPACT_BELOW,
               names: Collection[str] | None = None) -> PrunePlan:
    """``names``: apply the policy to these objects' points only (a job's VMs); the others'
    points are kept."""
    repo, cat = ws.repo, ws.cat
    points = cat.points(repo.id)
    mine = [p for p in points if names is None or p.object_name in names]
    decisions = apply_policy([PointAge(p.point_id, p.object_name, p.created) for p in mine],
                             policy, now)
    decisions += [Decision(p.point_id, p.object_name, p.created, True, ("not in scope",))
                  for p in points if names is not None and p.object_name not in names]
    decisions.sort(key=lambda d: (d.created, d.point_id))
    keep = [d.point_id for d in decisions if d.keep]
    delete, compact = choose_packs(cat.pack_usage(repo.id, keep), compact_below)
    return PrunePlan(tuple(decisions), tuple(delete), tuple(compact))


def plan_removal(ws: Workspace, point_ids: Collection[str], *,
                 compact_below: float = DEFAULT_COMPACT_BELOW) -> PrunePlan:
    """Remove exactly ``point_ids`` (a move took them elsewhere); keep every other point."""
    repo, cat = ws.repo, ws.cat
    decisions = [Decision(p.point_id, p.object_name, p.created, p.point_id not in point_ids,
                          ("moved to another repository",) if p.point_id in point_ids
                          else ("not moved",))
                 for p in cat.points(repo.id)]
    keep = [d.point_id for d in decisions if d.keep]
    delete, compact = choose_packs(cat.pack_usage(repo.id, keep), compact_below)
    return PrunePlan(tuple(decisions), tuple(delete), tuple(compact))


@dataclass(frozen=True, slots=True)
class PruneResult:
    points_removed: int
    packs_deleted: int
    packs_compacted: int
    packs_written: int
    bytes_freed: int


def check_plan(ws: Workspace, plan: PrunePlan) -> None:
    """Refuse a plan that would delete what a kept point needs (IntegrityError, nothing
    changed): a point both kept and removed, a kept point without its own manifest, or a
    deleted pack holding the copy of a block a kept point reads."""
    repo, cat = ws.repo, ws.cat
    keep, remove = plan.keep_points, plan.remove_points
    problems: list[str] = []
    both = sorted(set(keep) & set(remove))
    if both:
        problems.append(f"point(s) {', '.join(both)} would be both kept and removed")
    if len(set(remove)) != len(remove):
        problems.append("a point would be removed twice")
    manifests = set(repo.point_ids())
    lost = sorted(set(keep) - manifests)
    if lost:
        problems.append(f"kept point(s) {', '.join(lost)} have no manifest of their own")
    doomed = [p.pack_id for p in plan.delete_packs]
    needed = cat.live_entries(repo.id, keep, doomed) if doomed else {}
    if needed:
        problems.append(f"pack(s) {', '.join(sorted(needed))} would be deleted though kept "
                        "points read blocks from them")
    if problems:
        raise IntegrityError(f"the prune plan for {repo.location} was refused, nothing was "
                             f"deleted: {'; '.join(problems)}; run {ws.rescan_hint} and "
                             "verify, then prune again")


def execute_prune(ws: Workspace, plan: PrunePlan,
                  progress: Callable[[str], None] | None = None) -> PruneResult:
    """Check a plan, then carry it out. The workspace is exclusive and the plan made in it."""
    repo, cat = ws.repo, ws.cat
    if not ws.exclusive:
        raise UsageError("a prune needs the repository's exclusive lock")
    check_plan(ws, plan)
    hold_point("prune-checked", repo.id)
    say = progress or (lambda _msg: None)
    before = cat.total_pack_bytes(repo.id)
    cat.mark_removing(repo.id, plan.remove_points)
    repo.note_removed(plan.remove_points)
    crash_point("prune-points-marked")
    for point_id in plan.remove_points:
        repo.delete_manifest(point_id)
        crash_point("prune-manifest-deleted")
    for point_id in reversed(plan.remove_points):
        cat.remove_point(point_id)
    crash_point("prune-points-forgotten")
    say(f"removed {len(plan.remove_points)} restore points")
    # Packs with nothing live go first: deleting needs no space, compacting does, so a prune
    # on a full repository makes room before it writes.
    for usage in plan.delete_packs:
        repo.delete_pack(usage.pack_id)
        crash_point("prune-pack-deleted")
    cat.remove_packs(repo.id, [u.pack_id for u in plan.delete_packs])
    written = 0
    spared: set[str] = set()
    if plan.compact_packs:
        live = cat.live_entries(repo.id, plan.keep_points, [p.pack_id for p in plan.compact_packs])
        writer = PackWriter()

        def flush() -> None:
            nonlocal writer, written
            if len(writer):
                w, writer = writer, PackWriter()
                repo.write_pack(w)
                crash_point("compact-pack-written")
                index_pack(ws, w.pack_id)
                crash_point("compact-pack-indexed")
                written += 1

        for usage in plan.compact_packs:
            keep_ids = set(live.get(usage.pack_id, ()))
            data = repo.read_pack(usage.pack_id)
            what = f"pack {usage.pack_id}"
            for entry in parse_pack(data, usage.pack_id, what):
                if entry.block_id not in keep_ids:
                    continue
                stored = data[entry.offset : entry.offset + entry.stored_len]
                try:
                    repo.open_block(entry, stored, what)  # never copy a damaged block
                except (IntegrityError, RepositoryFormatError) as exc:
                    # Its only copy is damaged: keep the pack, so a check can still name it.
                    cat.mark_damaged(repo.id, [(usage.pack_id, entry.block_id, str(exc))])
                    spared.add(usage.pack_id)
                    continue
                writer.add(entry.block_id, entry.kind, entry.codec, stored, entry.plain_len,
                           entry.check, entry.key_id)  # a sealed block stays sealed as is
                keep_ids.discard(entry.block_id)
                if writer.size >= repo.config.pack_size:
                    flush()
        flush()
        say(f"compacted {len(plan.compact_packs)} packs into {written}")
    doomed = [u.pack_id for u in plan.compact_packs if u.pack_id not in spared]
    for pack_id in doomed:
        repo.delete_pack(pack_id)
        crash_point("prune-pack-deleted")
    cat.remove_packs(repo.id, doomed)
    repo.sweep_tmp()
    after = cat.total_pack_bytes(repo.id)
    return PruneResult(len(plan.remove_points), len(plan.delete_packs),
                       len(plan.compact_packs), written, max(0, before - after))


def sweep(ws: Workspace) -> tuple[int, int]:
    """Remove what crashed runs left: files in tmp/ and packs no point references. Needs an
    exclusive workspace. Returns (tmp files, packs) removed."""
    repo, cat = ws.repo, ws.cat
    if not ws.exclusive:
        raise UsageError("a sweep needs the repository's exclusive lock")
    tmp = repo.sweep_tmp()
    orphans = cat.unreferenced_packs(repo.id)
    for pack_id in orphans:
        repo.delete_pack(pack_id)
        crash_point("sweep-pack-deleted")
    cat.remove_packs(repo.id, orphans)
    return tmp, len(orphans)
