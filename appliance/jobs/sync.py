"""Keeping the catalog's index in step with a repository, and rebuilding it (``rescan``).

The repository is the truth: packs and manifests present there are indexed; rows for files
that are gone are dropped. Damaged files are skipped and reported, never half-indexed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from appliance.errors import IntegrityError, NotFoundError, RepositoryFormatError
from appliance.faults import crash_point
from appliance.jobs.blockmap import overlay
from appliance.repository.backend import ObjectNotFound
from appliance.repository.manifest import BlockMap, Manifest, manifest_name
from appliance.repository.repo import Repository
from catalog.models import NewBlock, NewDisk, PointRow
from catalog.store import Catalog


@dataclass(slots=True)
class SyncResult:
    packs_added: int = 0
    packs_removed: int = 0
    points_added: int = 0
    points_removed: int = 0
    damaged: list[str] = field(default_factory=list)


def index_pack(repo: Repository, cat: Catalog, pack_id: str) -> None:
    size, entries = repo.read_pack_index(pack_id)
    cat.add_pack(repo.id, pack_id, size, [
        NewBlock(e.block_id, e.kind, e.codec, e.key_id, e.offset, e.stored_len, e.plain_len)
        for e in entries])


Delta = tuple[str | None, list[int], list[bytes | None]]  # (base point, indices, ids)


def record_point(repo: Repository, cat: Catalog, m: Manifest, manifest_bytes: int,
                 base_point: str | None, deltas: dict[int, Delta] | None = None) -> None:
    """Add a point to the catalog, its block maps stored as deltas against ``base_point``.

    ``deltas`` (per disk index), when the caller already has them, saves resolving the base.
    """
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
    cat.add_point(repo.id, point, m.config, disks)


def sync(repo: Repository, cat: Catalog) -> SyncResult:
    """Bring the catalog's index of ``repo`` up to date with the repository's files."""
    result = SyncResult()
    cat.ensure_repository(repo.id, repo.location, repo.config.key_id)
    # Packs first: points need their blocks indexed.
    on_disk = set(repo.pack_ids())
    known = cat.pack_ids(repo.id)
    gone = sorted(known - on_disk)
    cat.remove_packs(repo.id, gone)
    result.packs_removed = len(gone)
    for pack_id in sorted(on_disk - known):
        try:
            index_pack(repo, cat, pack_id)
            result.packs_added += 1
        except ObjectNotFound:
            continue
        except (IntegrityError, RepositoryFormatError) as exc:
            result.damaged.append(str(exc))
    # Points.
    manifests = set(repo.point_ids())
    known_points = cat.point_ids(repo.id)
    for point_id in sorted(known_points - manifests, reverse=True):
        cat.remove_point(point_id)
        result.points_removed += 1
    new: list[tuple[Manifest, int]] = []
    for point_id in sorted(manifests - known_points):
        try:
            m = repo.read_manifest(point_id)
            size = repo.backend.stat(manifest_name(point_id)).size
        except (ObjectNotFound, NotFoundError):
            continue
        except (IntegrityError, RepositoryFormatError) as exc:
            result.damaged.append(str(exc))
            continue
        new.append((m, size))
    for m, size in sorted(new, key=lambda t: (t[0].created, t[0].point_id)):
        base = m.parent if m.parent and cat.point(m.parent) else None
        record_point(repo, cat, m, size, base)
        result.points_added += 1
        crash_point("sync-point-recorded")
    cat.mark_synced(repo.id)
    return result


def rescan(repo: Repository, cat: Catalog) -> SyncResult:
    """Forget everything the catalog knows of ``repo`` and index it again from its files."""
    cat.clear_index(repo.id)
    return sync(repo, cat)
