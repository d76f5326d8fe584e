"""The workspace rule as a type: whatever reads or writes a repository gets a ``Workspace``.

``open_workspace`` opens nothing itself but, in this order: takes the repository's lock
(shared: backup, restore, verify, copy, list; exclusive: prune, compaction, move, cleanup),
then opens a private catalog cursor and brings the repository's index up to date *under* that
lock, and yields a frozen object holding the three. Every engine entry point in
``appliance.jobs`` takes a Workspace, never a bare repository or catalog, so "forgot the lock"
and "synced before locking" do not type-check.

Bringing the index up to date (docs/FORMAT.md §7): the repository is the truth. The catalog's
view is read *before* the repository is listed, so that a pack or point another worker writes
meanwhile is either in the listing or recorded by its writer — never taken for gone. Packs and
points are recorded once, whoever sees them first (``Catalog.add_pack``/``add_point`` under the
repository's index lock). A manifest whose file name is not the point id inside it is reported
as damage, never indexed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from appliance.errors import IntegrityError, LockedError, NotFoundError, RepositoryFormatError
from appliance.faults import crash_point, hold_point
from appliance.jobs.blockmap import overlay
from appliance.repository.backend import ObjectNotFound
from appliance.repository.lock import RepoLock, leftovers_likely
from appliance.repository.manifest import BlockMap, Manifest, manifest_name
from appliance.repository.repo import Repository
from catalog.models import NewBlock, NewDisk, PointRow
from catalog.store import Catalog

#: Per disk index: (base point, changed indices, their ids) of a new point's block map.
Delta = tuple[str | None, list[int], list[bytes | None]]


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What bringing the index up to date found."""

    packs_added: int = 0
    packs_removed: int = 0
    points_added: int = 0
    points_removed: int = 0
    damaged: tuple[str, ...] = ()  # files that could not be indexed, with the reason
    vanished: tuple[str, ...] = ()  # points whose manifest is gone though no prune removed it


@dataclass(frozen=True, slots=True)
class Workspace:
    """A repository under its lock, with a private catalog cursor in step with it."""

    repo: Repository
    cat: Catalog
    lock: RepoLock
    synced: SyncResult
    #: The command that rebuilds this catalog's index of the repository, as errors name it.
    rescan_hint: str = "a rescan of the repository"

    @property
    def exclusive(self) -> bool:
        return self.lock.info.exclusive

    @property
    def read_only(self) -> bool:
        """The lock could not be written (a full or read-only file system): reading only."""
        return self.lock.read_only

    def resync(self, *, rescan: bool = False) -> SyncResult:
        """Bring the index up to date again (with ``rescan``: rebuilt from nothing but a
        hardened repository's lock ledger), still under this workspace's lock."""
        if rescan:
            self.cat.clear_index(self.repo.id, keep_ledger=True)
        return _sync(self.repo, self.cat)


CursorFactory = Callable[[], Catalog]


@contextmanager
def open_workspace(repo: Repository, cursor: CursorFactory, *, exclusive: bool,
                   operation: str, wait: float = 0.0, read_only_ok: bool = False,
                   rescan: bool = False, rescan_hint: str | None = None
                   ) -> Iterator[Workspace]:
    """Lock ``repo``, open a catalog cursor with ``cursor()`` and bring it up to date under
    the lock (with ``rescan``: forget the repository's index first and rebuild it); closed
    and released on leaving."""
    lock = repo.lock(exclusive=exclusive, operation=operation, wait=wait,
                     read_only_ok=read_only_ok)
    try:
        cat = cursor()
        try:
            if rescan:
                cat.clear_index(repo.id)
            yield Workspace(repo, cat, lock, _sync(repo, cat),
                            rescan_hint or "a rescan of the repository")
        finally:
            cat.close()
    finally:
        lock.release()


def cleanup(repo: Repository, cursor: CursorFactory, *, force: bool = False) -> bool:
    """Sweep crash leftovers when nobody else uses the repository (an exclusive workspace,
    if it can be had at once). Without ``force`` only when there are signs of a crash: a dead
    process's lock or files in tmp/ (a failed run that exited normally passes ``force``).
    True when it swept."""
    from appliance.jobs.prune import sweep

    if not force and not leftovers_likely(repo.backend):
        return False
    try:
        with open_workspace(repo, cursor, exclusive=True, operation="cleanup") as ws:
            sweep(ws)
    except LockedError:
        return False
    return True


# -- keeping the index in step ------------------------------------------------------------


def index_pack_of(repo: Repository, cat: Catalog, pack_id: str) -> bool:
    """Index one pack from its own index (False: recorded already)."""
    size, entries = repo.read_pack_index(pack_id)
    return cat.add_pack(repo.id, pack_id, size, [
        NewBlock(e.block_id, e.kind, e.codec, e.key_id, e.offset, e.stored_len, e.plain_len)
        for e in entries])


def record_point_of(repo: Repository, cat: Catalog, m: Manifest, manifest_bytes: int,
                    base_point: str | None, deltas: dict[int, Delta] | None = None) -> bool:
    """Add a point to the catalog, its block maps stored as deltas against ``base_point``
    (False: recorded already). ``deltas`` (per disk index), when the caller already has
    them, saves resolving the base."""
    base_disks = {d.disk_index: d for d in cat.disks(base_point)} if base_point else {}
    disks: list[NewDisk] = []
    for d in m.disks:
        bd = base_disks.get(d.index)
        if deltas is not None and d.index in deltas:
            base, delta_idx, delta_ids = deltas[d.index]
            disks.append(NewDisk(d.index, d.label, d.size, d.block_size, d.change_id,
                                 json.dumps(d.meta), base, len(d.blocks), delta_idx, delta_ids))
            continue
        if bd is not None and bd.block_size == d.block_size:
            idx, ids = cat.resolved_map(bd.point_id, d.index)
            base_map, base = BlockMap(idx, ids), bd.point_id
        else:
            base_map, base = BlockMap.empty(), None
        updates = [(d.blocks.indices[i], d.blocks.id_at(i)) for i in range(len(d.blocks))]
        _new, delta_idx, delta_ids = overlay(base_map, updates, replace_all=True)
        disks.append(NewDisk(d.index, d.label, d.size, d.block_size, d.change_id,
                             json.dumps(d.meta), base, len(d.blocks), delta_idx, delta_ids))
    point = PointRow(m.point_id, repo.id, m.object_name, m.object_kind, m.created, m.kind,
                     m.parent, m.compression, m.reason, m.bytes_read, m.bytes_stored,
                     manifest_bytes)
    # The catalog keeps the config but the VM's whole ConfigInfo (tens of KiB a point, read
    # only by a restore, from the manifest).
    config = {k: v for k, v in m.config.items() if k != "vim_config"}
    return cat.add_point(repo.id, point, config, disks)


def _sync(repo: Repository, cat: Catalog) -> SyncResult:
    """Bring the catalog's index of ``repo`` up to date with the repository's files."""
    damaged: list[str] = []
    cat.ensure_repository(repo.id, repo.location, repo.config.key_id)
    # What the catalog knows is read before the repository is listed: a file another worker
    # writes now is in the listing or already recorded by its writer; never taken for gone.
    known = cat.pack_ids(repo.id)
    known_points = _known_points(cat, repo.id)
    on_disk = set(repo.pack_ids())
    hold_point("sync-listed", repo.id)
    gone = sorted(known - on_disk)
    cat.remove_packs(repo.id, gone)
    added = 0
    for pack_id in sorted(on_disk - known):
        try:
            added += index_pack_of(repo, cat, pack_id)
        except ObjectNotFound:
            continue
        except (IntegrityError, RepositoryFormatError) as exc:
            damaged.append(str(exc))
    manifests = set(repo.point_ids())
    # A prune that was killed after marking its points but before deleting their manifests:
    # they are points again (recorded anew below), never hidden while their manifest exists.
    for point_id in [p for p, row in known_points.items() if row is None and p in manifests]:
        cat.remove_point(point_id)
        del known_points[point_id]
    vanished: list[PointRow] = []
    removed = 0
    for point_id in sorted(set(known_points) - manifests, reverse=True):
        row = known_points[point_id]
        if row is not None:  # complete: no prune of this catalog was removing it
            vanished.append(row)
        cat.remove_point(point_id)
        removed += 1
    if vanished:  # unless a prune (of whichever catalog) recorded their removal
        pruned = repo.removed_ids()
        vanished = [r for r in vanished if r.point_id not in pruned]
    cat.note_vanished(repo.id, vanished)
    new: list[tuple[Manifest, int]] = []
    for point_id in sorted(manifests - set(known_points)):
        try:
            m = repo.read_manifest(point_id)
            size = repo.backend.stat(manifest_name(point_id)).size
        except (ObjectNotFound, NotFoundError):
            continue
        except (IntegrityError, RepositoryFormatError) as exc:
            damaged.append(str(exc))
            continue
        new.append((m, size))
    points = 0
    for m, size in sorted(new, key=lambda t: (t[0].created, t[0].point_id)):
        base = m.parent if m.parent and cat.point(m.parent) else None
        points += record_point_of(repo, cat, m, size, base)
        crash_point("sync-point-recorded")
    cat.mark_synced(repo.id)
    return SyncResult(added, len(gone), points, removed, tuple(damaged),
                      tuple(r.point_id for r in vanished))


def _known_points(cat: Catalog, repo_id: str) -> dict[str, PointRow | None]:
    """Every point the catalog has of the repository: complete ones with their row, those a
    prune is removing (no longer complete) with None."""
    hold_point("sync-reading-points", repo_id)
    return cat.point_states(repo_id)
