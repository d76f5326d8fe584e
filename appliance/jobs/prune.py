"""Prune: apply retention, delete manifests, then delete dead packs and compact sparse ones.

Plan first (nothing changes; ``--dry-run`` prints the plan), then execute under an exclusive
lock in this order: manifests of removed points deleted → catalog forgets them → packs with
nothing live deleted (room first: a full repository can be pruned) → live blocks of sparse
packs copied to new packs, made durable and indexed → the compacted packs deleted.
A crash at any step leaves every kept point restorable; the next prune finishes the work.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from appliance.faults import crash_point
from appliance.jobs.retention import Decision, PointAge, RetentionPolicy, apply_policy
from appliance.jobs.sync import index_pack, sync
from appliance.repository.lock import leftovers_likely
from appliance.repository.pack import ENTRY, FOOTER, HEADER, PackWriter, parse_pack
from appliance.repository.repo import Repository
from catalog.models import PackUsage
from catalog.store import Catalog

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


def plan_prune(repo: Repository, cat: Catalog, policy: RetentionPolicy, now: datetime, *,
               compact_below: float = DEFAULT_COMPACT_BELOW,
               names: Collection[str] | None = None) -> PrunePlan:
    """``names``: apply the policy to these objects' points only (a job's VMs); the others'
    points are kept."""
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


def plan_removal(repo: Repository, cat: Catalog, point_ids: Collection[str], *,
                 compact_below: float = DEFAULT_COMPACT_BELOW) -> PrunePlan:
    """Remove exactly ``point_ids`` (a move took them elsewhere); keep every other point."""
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


def execute_prune(repo: Repository, cat: Catalog, plan: PrunePlan,
                  progress: Callable[[str], None] | None = None) -> PruneResult:
    """Carry out a plan. The caller holds the exclusive lock and planned under it."""
    say = progress or (lambda _msg: None)
    before = cat.total_pack_bytes(repo.id)
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
    if plan.compact_packs:
        live = cat.live_entries(repo.id, plan.keep_points, [p.pack_id for p in plan.compact_packs])
        writer = PackWriter()

        def flush() -> None:
            nonlocal writer, written
            if len(writer):
                w, writer = writer, PackWriter()
                repo.write_pack(w)
                crash_point("compact-pack-written")
                index_pack(repo, cat, w.pack_id)
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
                repo.open_block(entry, stored, what)  # never copy a damaged block
                writer.add(entry.block_id, entry.kind, entry.codec, stored, entry.plain_len,
                           entry.check, entry.key_id)  # a sealed block stays sealed as is
                keep_ids.discard(entry.block_id)
                if writer.size >= repo.config.pack_size:
                    flush()
        flush()
        say(f"compacted {len(plan.compact_packs)} packs into {written}")
    for usage in plan.compact_packs:
        repo.delete_pack(usage.pack_id)
        crash_point("prune-pack-deleted")
    cat.remove_packs(repo.id, [u.pack_id for u in plan.compact_packs])
    repo.sweep_tmp()
    after = cat.total_pack_bytes(repo.id)
    return PruneResult(len(plan.remove_points), len(plan.delete_packs),
                       len(plan.compact_packs), written, max(0, before - after))


def sweep(repo: Repository, cat: Catalog) -> tuple[int, int]:
    """Remove what crashed runs left: files in tmp/ and packs no point references.

    Call under an exclusive lock with the catalog in sync. Returns (tmp files, packs) removed.
    """
    tmp = repo.sweep_tmp()
    orphans = cat.unreferenced_packs(repo.id)
    for pack_id in orphans:
        repo.delete_pack(pack_id)
        crash_point("sweep-pack-deleted")
    cat.remove_packs(repo.id, orphans)
    return tmp, len(orphans)


def cleanup(repo: Repository, cat: Catalog, *, force: bool = False) -> None:
    """Sweep crash leftovers when nobody else uses the repository (needs the exclusive lock).

    Without ``force`` only when there are signs of a crash: a dead process's lock or files in
    tmp/ (a failed run that exited normally calls this with ``force``).
    """
    if not force and not leftovers_likely(repo.backend):
        return
    lock = repo.try_exclusive("cleanup")
    if lock is None:
        return
    with lock:
        sync(repo, cat)
        sweep(repo, cat)
