"""Copying restore points into another repository (backup copy jobs, and moves).

A copy is a point of its own in the target: each block is read from the source, checked,
identified anew under the target's block-id key (ids are keyed per repository), and the ones
the target lacks are re-encoded for it (its compression and, if it is encrypted, its key) and
written as new packs; then the manifest is written under a new point id, with the same
creation time and disks (so the same CBT change ids), its parent being the copy of the
original's parent when there is one. Its reason starts with ``copy of point <id>``: that is
how a later run knows what is there already. Each copy is verified before it counts. The
caller holds a shared lock on both repositories and has synchronised both catalogs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from appliance.errors import IntegrityError
from appliance.jobs.backup import new_point_id, packs_into
from appliance.jobs.reader import BlockReader
from appliance.jobs.verify import verify_point
from appliance.jobs.workspace import Workspace
from appliance.repository import codec
from appliance.repository.codec import ID_SIZE
from appliance.repository.manifest import BlockMap
from catalog.models import PointRow
from catalog.store import Catalog

_COPY = re.compile(r"^copy of point (\S+?)(?::|$)")


def copied_from(reason: str) -> str | None:
    """The original's point id when a point is a copy (pure)."""
    m = _COPY.match(reason)
    return m.group(1) if m else None


@dataclass
class CopyResult:
    copied: dict[str, str] = field(default_factory=dict)  # original -> copy
    present: dict[str, str] = field(default_factory=dict)  # copied before: original -> copy
    blocks_sent: int = 0
    bytes_stored: int = 0


BATCH = 256  # blocks read, re-identified and looked up at a time


def _learn(mapping: dict[bytes, bytes], src_cat: Catalog, original: str, dst_cat: Catalog,
           copy: str) -> None:
    """Block ids under the source's key → under the target's, from an original and its copy
    (same disks, same block indices): so unchanged blocks need not be read again."""
    for disk in src_cat.disks(original):
        old_idx, old_ids = src_cat.resolved_map(original, disk.disk_index)
        new_idx, new_ids = dst_cat.resolved_map(copy, disk.disk_index)
        new_at = {i: new_ids[n * ID_SIZE:(n + 1) * ID_SIZE] for n, i in enumerate(new_idx)}
        for n, i in enumerate(old_idx):
            new = new_at.get(i)
            if new is not None:
                mapping[old_ids[n * ID_SIZE:(n + 1) * ID_SIZE]] = new


def copy_points(src_ws: Workspace, dst_ws: Workspace, point_ids: Sequence[str], *,
                log: Callable[[str], None] = lambda _m: None) -> CopyResult:
    """Copy ``point_ids`` (oldest first) from the source workspace into the target one; see
    the module. Block ids are keyed per repository, so each block is identified anew under
    the target's key (read once: an original and its copy tell the mapping of blocks a later
    point shares)."""
    src_cat, dst, dst_cat = src_ws.cat, dst_ws.repo, dst_ws.cat
    result = CopyResult()
    for p in dst_cat.points(dst.id):
        original = copied_from(p.reason)
        if original is not None:
            result.present[original] = p.point_id
    rows = sorted((r for r in (src_cat.point(pid) for pid in point_ids) if r is not None),
                  key=lambda r: (r.created, r.point_id))
    with BlockReader(src_ws) as reader:
        _copy(src_ws, dst_ws, rows, reader, result, log)
    return result


def _copy(src_ws: Workspace, dst_ws: Workspace, rows: Sequence[PointRow], reader: BlockReader,
          result: CopyResult, log: Callable[[str], None]) -> None:
    src, src_cat, dst, dst_cat = src_ws.repo, src_ws.cat, dst_ws.repo, dst_ws.cat
    key = dst.block_key()
    mapping: dict[bytes, bytes] = {}
    learned: set[str] = set()
    for row in rows:
        if row.point_id in result.present:
            continue
        manifest = src.read_manifest(row.point_id)
        copies = {**result.present, **result.copied}
        parent_copy = copies.get(manifest.parent or "")
        if manifest.parent and parent_copy and manifest.parent not in learned:
            _learn(mapping, src_cat, manifest.parent, dst_cat, parent_copy)
            learned.add(manifest.parent)
        compression = codec.compression_named(manifest.compression)
        disks = []
        with packs_into(dst_ws) as sink:
            for disk in manifest.disks:
                todo = [loc for loc in src_cat.restore_plan(src.id, row.point_id, disk.index)
                        if loc.block_id not in mapping]
                for start in range(0, len(todo), BATCH):
                    batch = [(loc, reader.read(loc, row.point_id))
                             for loc in todo[start:start + BATCH]]
                    block_ids = [codec.block_id(key, plain) for _loc, plain in batch]
                    have = dst_cat.existing_block_ids(dst.id, sorted(set(block_ids)))
                    for (loc, plain), bid in zip(batch, block_ids, strict=True):
                        mapping[loc.block_id] = bid
                        if bid in have or bid in sink.pending:
                            continue
                        codec_id, stored, check, key_id = dst.encode_block(
                            plain, compression, bid, codec.check_of(plain))
                        sink.add(bid, codec_id, stored, len(plain), check, key_id)
                        result.blocks_sent += 1
                ids = b"".join(mapping[disk.blocks.id_at(n)]
                               for n in range(len(disk.blocks)))
                disks.append(replace(disk, blocks=BlockMap(disk.blocks.indices, ids)))
        new_id = new_point_id(manifest.created)
        dst.write_manifest(replace(
            manifest, point_id=new_id, parent=parent_copy, disks=tuple(disks),
            reason=f"copy of point {row.point_id}: {manifest.reason}",
            bytes_stored=sink.bytes_stored))
        dst_ws.resync()
        report = verify_point(dst_ws, new_id)
        if not report.ok:
            dst.delete_manifest(new_id)
            dst_cat.remove_point(new_id)
            raise IntegrityError(f"the copy of point {row.point_id} does not verify in "
                                 f"{dst.location}: {report.damage[0].problem}; it was removed")
        result.copied[row.point_id] = new_id
        result.bytes_stored += sink.bytes_stored
        log(f"copied point {row.point_id} ({row.object_name}) as {new_id}: "
            f"{sink.blocks_new} new block(s), verified")
