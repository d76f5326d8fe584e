"""Backup: plan (pure) which blocks of which disks to read, then execute the data path.

Write ordering (docs/FORMAT.md §Write ordering): packs durable → each pack indexed in the
catalog → manifest durable → point recorded in the catalog (complete) → the point's catalog
view checked against its manifest. A crash anywhere leaves no point that claims blocks it does
not have; leftover packs are swept by the next run that can take the exclusive lock. A new
point never references a block it cannot vouch for: deduplication skips copies found damaged
and blocks whose pack is gone, and an incremental reads again what its parent lost.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from appliance.errors import SourceError, UsageError
from appliance.faults import crash_point, hold_point
from appliance.jobs.backup_stats import STAGE_READ, BackupStats, StageTimes, stage_waits
from appliance.jobs.blockmap import overlay
from appliance.jobs.point_check import settle_point
from appliance.jobs.sync import Delta, record_point
from appliance.jobs.workspace import Workspace
from appliance.repository import codec
from appliance.repository.manifest import BlockMap, DiskRecord, Manifest
from appliance.repository.pack import KIND_DISK_BLOCK, PackWriter
from appliance.source import Extent, Source, blocks_touched
from catalog.models import DiskRow, NewBlock
from catalog.store import Catalog

BLOCK_SIZES: Final = {"256K": 256 << 10, "512K": 512 << 10, "1M": 1 << 20, "4M": 4 << 20}
DEFAULT_BLOCK_SIZE: Final = 1 << 20
BATCH_BYTES: Final = 16 << 20


def block_size_named(text: str) -> int:
    key = text.upper().removesuffix("IB").removesuffix("B")
    if key in BLOCK_SIZES:
        return BLOCK_SIZES[key]
    if key.isdigit() and int(key) in BLOCK_SIZES.values():
        return int(key)
    raise UsageError(f"block size {text!r} is not supported; choose one of "
                     f"{', '.join(BLOCK_SIZES)}")


@dataclass(frozen=True, slots=True)
class BackupOptions:
    block_size: int = DEFAULT_BLOCK_SIZE
    compression: str = codec.DEFAULT_COMPRESSION
    threads: int = 2  # hashing and compression
    # Blocks read (and hashed) at once; 0: ``threads``. More than ``threads`` pays off when a
    # read waits on a network (the HTTPS datastore transport: one connection per stream).
    read_streams: int = 0


@dataclass(frozen=True, slots=True)
class DiskInput:
    """One disk to back up: its source, what changed (None: nothing trustworthy) and metadata."""

    index: int
    source: Source
    changed: Sequence[Extent] | None = None
    change_id: str | None = None
    changed_reason: str = ""
    meta: dict[str, object] = field(default_factory=dict)  # JSON, stored with the disk


@dataclass(frozen=True, slots=True)
class DiskShape:
    """What the plan needs to know of a disk (pure data, no I/O)."""

    index: int
    size: int
    allocated: tuple[Extent, ...]
    changed: tuple[Extent, ...] | None
    changed_reason: str = ""


@dataclass(frozen=True, slots=True)
class DiskPlan:
    index: int
    size: int
    block_size: int
    read_blocks: tuple[int, ...]
    base_point: str | None  # the previous point to inherit unread blocks from
    full_read: bool
    reason: str

    @property
    def bytes_to_read(self) -> int:
        """The bytes the planned reads cover (the disk's last block may be short)."""
        bs = self.block_size
        return sum(min(bs, self.size - i * bs) for i in self.read_blocks)


@dataclass(frozen=True, slots=True)
class BackupPlan:
    object_name: str
    parent: str | None
    disks: tuple[DiskPlan, ...]
    kind: str
    reason: str

    @property
    def bytes_to_read(self) -> int:
        return sum(d.bytes_to_read for d in self.disks)


def plan_backup(object_name: str, shapes: Sequence[DiskShape], parent: str | None,
                parent_disks: Sequence[DiskRow], block_size: int,
                unavailable: Mapping[int, Sequence[int]] | None = None) -> BackupPlan:
    """Decide, per disk, which blocks to read and what the point inherits (pure).
    ``unavailable``: per disk, blocks of the parent's map with no good stored copy (their pack
    is gone or they were found damaged); an incremental reads them again."""
    lost = unavailable or {}
    by_index = {d.disk_index: d for d in parent_disks}
    plans: list[DiskPlan] = []
    for s in shapes:
        prev = by_index.get(s.index) if parent else None
        full_reason = ""
        if prev is None:
            full_reason = (f"first backup of {object_name}" if parent is None
                           else f"disk {s.index} is new")
        elif prev.block_size != block_size:
            full_reason = (f"block size changed from {prev.block_size} to {block_size}: "
                           "full read")
        elif prev.size != s.size:
            full_reason = f"disk size changed from {prev.size} to {s.size} bytes: full read"
        elif s.changed is None:
            full_reason = (s.changed_reason or "no changed-areas list") + (
                ": read all allocated areas; deduplication stores only what changed")
        if full_reason:
            reads = blocks_touched(s.allocated, block_size, s.size)
            base = parent if prev is not None and prev.block_size == block_size else None
            plans.append(DiskPlan(s.index, s.size, block_size, tuple(reads), base, True,
                                  full_reason))
        else:
            assert s.changed is not None
            reads = blocks_touched(s.changed, block_size, s.size)
            reason = f"changed areas: {len(reads)} blocks to read"
            again = sorted(set(lost.get(s.index, ())) - set(reads))
            if again:
                reads = sorted({*reads, *again})
                reason += (f", and {len(again)} whose stored copy is lost or damaged read "
                           "again")
            plans.append(DiskPlan(s.index, s.size, block_size, tuple(reads), parent, False,
                                  reason))
    full = all(p.full_read for p in plans)
    reason = "; ".join(f"disk {p.index}: {p.reason}" for p in plans)
    return BackupPlan(object_name, parent, tuple(plans), "full" if full else "incremental",
                      reason)


@dataclass(frozen=True, slots=True)
class BackupResult:
    point_id: str
    kind: str
    reason: str
    bytes_read: int
    bytes_stored: int
    blocks_new: int
    blocks_deduplicated: int
    manifest_bytes: int
    seconds: float
    warnings: tuple[str, ...] = ()  # e.g. the catalog's view repaired from the manifest
    bytes_processed: int = 0  # the disks' capacity
    bytes_new: int = 0  # the new blocks' bytes before compression
    stages: StageTimes = field(default_factory=StageTimes)  # where the pipeline waited

    @property
    def stats(self) -> BackupStats:
        return BackupStats(self.bytes_processed, self.bytes_read, self.bytes_new,
                           self.bytes_stored, self.seconds, self.stages)


ProgressFn = Callable[[int, int], None]
# Of the block ids the repository holds, which a new point may use (a hardened repository's
# epochs: only those in packs locked long enough, or written by this run).
DedupFilter = Callable[[set[bytes], frozenset[str]], set[bytes]]

@dataclass(frozen=True, slots=True)
class DiskProgress:
    """One disk's progress after a batch: bytes of its planned reads done and in all, and the
    stage the pipeline waited on longest in that batch (the bottleneck)."""

    index: int
    done: int
    total: int
    bottleneck: str


DiskProgressFn = Callable[[DiskProgress], None]


def bottleneck(read_wait: float, read_s: float, hash_s: float, compress_wait: float,
               write_wait: float) -> str:
    """The stage the main loop waited on longest (pure; see ``stage_waits``)."""
    return stage_waits(read_wait, read_s, hash_s, compress_wait, write_wait).bottleneck()


def new_point_id(now: datetime) -> str:
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(4)}"


class PackSink:
    """Appends new blocks to the open pack. A full pack is written and made durable by a
    background thread (so hashing and compression go on meanwhile), then indexed in the
    catalog. Blocks of packs not yet indexed stay in ``pending`` for deduplication."""

    MAX_IN_FLIGHT: Final = 2

    def __init__(self, ws: Workspace, io: ThreadPoolExecutor,
                 dedup: DedupFilter | None = None) -> None:
        self.repo = ws.repo
        self.cat = ws.cat
        self.io = io
        self.dedup = dedup
        self.written: set[str] = set()  # packs of this run, durable and indexed
        self.open = PackWriter()
        self.pending: set[bytes] = set()
        self.in_flight: deque[tuple[PackWriter, Future[int]]] = deque()
        self.bytes_stored = 0
        self.bytes_new = 0  # before compression
        self.blocks_new = 0
        self.write_wait = 0.0  # seconds the last drain waited on pack writes

    def add(self, block_id: bytes, codec_id: int, stored: bytes, plain_len: int,
            check: bytes, key_id: int = 0) -> None:
        self.open.add(block_id, KIND_DISK_BLOCK, codec_id, stored, plain_len, check, key_id)
        self.pending.add(block_id)
        self.bytes_stored += len(stored)
        self.bytes_new += plain_len
        self.blocks_new += 1
        if self.open.size >= self.repo.config.pack_size:
            self.flush()

    def flush(self) -> None:
        """Hand the open pack to the writer thread; settle packs beyond the in-flight limit."""
        if len(self.open):
            writer, self.open = self.open, PackWriter()
            self.in_flight.append((writer, self.io.submit(self.repo.write_pack, writer)))
        while len(self.in_flight) > self.MAX_IN_FLIGHT:
            self._settle()

    def _settle(self) -> None:
        writer, fut = self.in_flight.popleft()
        size = fut.result()
        crash_point("backup-pack-written")
        hold_point("backup-pack-written", writer.pack_id)
        self.cat.add_pack(self.repo.id, writer.pack_id, size, [
            NewBlock(e.block_id, e.kind, e.codec, e.key_id, e.offset, e.stored_len, e.plain_len)
            for e in writer.entries])
        crash_point("backup-pack-indexed")
        self.written.add(writer.pack_id)
        self.pending.difference_update(e.block_id for e in writer.entries)

    def drain(self) -> None:
        """Make every pack durable and indexed (before the manifest is written)."""
        t0 = time.perf_counter()
        self.flush()
        while self.in_flight:
            self._settle()
        self.write_wait += time.perf_counter() - t0

    def abandon(self) -> None:
        """After a failure: wait for writes under way, so cleanup never races them."""
        for _writer, fut in self.in_flight:
            with contextlib.suppress(Exception):  # the first error is already being raised
                fut.result()
        self.in_flight.clear()


@dataclass(frozen=True, slots=True)
class _Read:
    index: int
    data: bytes | None  # None: all zero
    block_id: bytes
    check: bytes
    read_s: float = 0.0  # seconds this block spent in the source's read
    hash_s: float = 0.0  # … and in hashing


def _read_block(source: Source, key: bytes, index: int, block_size: int, size: int,
                zero: bytes) -> _Read:
    offset = index * block_size
    length = min(block_size, size - offset)
    t0 = time.perf_counter()
    data = source.read(offset, length)
    t1 = time.perf_counter()
    if len(data) != length:
        raise SourceError(f"{source.label}: read {len(data)} bytes at {offset}, expected "
                          f"{length}; the source changed size during the backup")
    if data == (zero if length == block_size else bytes(length)):
        return _Read(index, None, b"", b"", t1 - t0, time.perf_counter() - t1)
    block_id, check = codec.block_id(key, data), codec.check_of(data)
    return _Read(index, data, block_id, check, t1 - t0, time.perf_counter() - t1)


def _backup_disk(plan: DiskPlan, source: Source, key: bytes, sink: PackSink, cat: Catalog,
                 repo_id: str, compression: codec.Compression, pool: ThreadPoolExecutor,
                 readers: ThreadPoolExecutor, progress: Callable[[int, str], None]
                 ) -> tuple[list[tuple[int, bytes | None]], int, int, StageTimes]:
    """Read the planned blocks; return (updates, bytes read, deduplicated blocks, where the
    pipeline waited)."""
    bs = plan.block_size
    zero = bytes(bs)
    batch_len = max(2, BATCH_BYTES // bs)
    reads = plan.read_blocks
    batches = [reads[i : i + batch_len] for i in range(0, len(reads), batch_len)]
    updates: list[tuple[int, bytes | None]] = []
    bytes_read = 0
    deduped = 0
    stages = StageTimes()

    def submit(batch: Sequence[int]) -> list[Future[_Read]]:
        return [readers.submit(_read_block, source, key, i, bs, plan.size, zero)
                for i in batch]

    ahead = submit(batches[0]) if batches else []
    for n in range(len(batches)):
        t0 = time.perf_counter()
        current = [f.result() for f in ahead]
        read_wait = time.perf_counter() - t0
        ahead = submit(batches[n + 1]) if n + 1 < len(batches) else []
        candidates = [r for r in current if r.data is not None]
        wanted = {r.block_id for r in candidates} - sink.pending
        known = cat.existing_block_ids(repo_id, sorted(wanted))
        if sink.dedup is not None:
            known = sink.dedup(known, frozenset(sink.written))
        to_store: list[tuple[_Read, bytes]] = []
        taken: set[bytes] = set()
        for r in candidates:
            if r.block_id in known or r.block_id in sink.pending or r.block_id in taken:
                deduped += 1
            elif r.data is not None:
                taken.add(r.block_id)
                to_store.append((r, r.data))
        packed = [pool.submit(sink.repo.encode_block, data, compression, r.block_id, r.check)
                  for r, data in to_store]
        compress_wait = write_wait = 0.0
        for (r, data), fut in zip(to_store, packed, strict=True):
            t0 = time.perf_counter()
            codec_id, stored, check, key_id = fut.result()
            t1 = time.perf_counter()
            sink.add(r.block_id, codec_id, stored, len(data), check, key_id)
            compress_wait += t1 - t0
            write_wait += time.perf_counter() - t1
        for r in current:
            updates.append((r.index, r.block_id if r.data is not None else None))
            bytes_read += min(bs, plan.size - r.index * bs)
        waits = stage_waits(read_wait, sum(r.read_s for r in current),
                            sum(r.hash_s for r in current), compress_wait, write_wait)
        stages = stages + waits
        progress(bytes_read, waits.bottleneck())
    return updates, bytes_read, deduped, stages


def _backup_disks(disks: Sequence[DiskInput], plan: BackupPlan, key: bytes, sink: PackSink,
                  cat: Catalog, repo_id: str, compression: codec.Compression,
                  pool: ThreadPoolExecutor, readers: ThreadPoolExecutor,
                  progress: ProgressFn | None, total: int,
                  disk_progress: DiskProgressFn | None = None
                  ) -> tuple[list[DiskRecord], dict[int, Delta], int, int, StageTimes]:
    """Back up each disk in turn; return (manifest disk records, catalog deltas against each
    disk's base point, bytes read, deduplicated blocks, where the pipeline waited)."""
    records: list[DiskRecord] = []
    deltas: dict[int, Delta] = {}
    bytes_read = deduped = 0
    stages = StageTimes()
    for d, dplan in zip(disks, plan.disks, strict=True):
        planned = dplan.bytes_to_read

        def report(done: int, stage: str, before: int = bytes_read, index: int = d.index,
                   planned: int = planned) -> None:
            if disk_progress is not None:
                disk_progress(DiskProgress(index, done, planned, stage))
            if progress is not None:
                progress(before + done, total)

        if disk_progress is not None:
            disk_progress(DiskProgress(d.index, 0, planned, STAGE_READ))

        updates, read, dd, waits = _backup_disk(dplan, d.source, key, sink, cat, repo_id,
                                                compression, pool, readers, report)
        stages = stages + waits
        if dplan.base_point is not None:
            idx, ids = cat.resolved_map(dplan.base_point, d.index)
            base_map = BlockMap(idx, ids)
        else:
            base_map = BlockMap.empty()
        new_map, d_idx, d_ids = overlay(base_map, updates, replace_all=dplan.full_read)
        deltas[d.index] = (dplan.base_point, d_idx, d_ids)
        records.append(DiskRecord(d.index, d.source.label, d.source.size, dplan.block_size,
                                  new_map, d.change_id, dict(d.meta)))
        bytes_read += read
        deduped += dd
    return records, deltas, bytes_read, deduped, stages


@contextlib.contextmanager
def packs_into(ws: Workspace, dedup: DedupFilter | None = None) -> Iterator[PackSink]:
    """A pack sink for new blocks; on leaving, every pack is durable and indexed (or, after an
    error, the writes under way are waited for, so cleanup never races them). A network
    backend may write packs side by side (each writer on its own connection)."""
    io = ThreadPoolExecutor(max_workers=getattr(ws.repo.backend, "parallel_writes", 1),
                            thread_name_prefix="pack-writer")
    sink = PackSink(ws, io, dedup)
    try:
        yield sink
        sink.drain()
    except BaseException:
        sink.abandon()
        raise
    finally:
        io.shutdown(wait=True)


def run_backup(ws: Workspace, object_name: str, disks: Sequence[DiskInput],
               options: BackupOptions, *, object_kind: str = "image",
               config: Mapping[str, object] | None = None, object_uuid: str | None = None,
               progress: ProgressFn | None = None,
               disk_progress: DiskProgressFn | None = None,
               dedup: DedupFilter | None = None) -> BackupResult:
    """Back up ``disks`` as one new restore point in a (shared) workspace. ``disk_progress``
    hears each disk's progress and bottleneck after every batch (and once at 0 when the disk
    starts). The point is returned only once its catalog view equals its manifest."""
    repo, cat = ws.repo, ws.cat
    started = time.monotonic()
    compression = codec.compression_named(options.compression)
    if options.block_size not in BLOCK_SIZES.values():
        raise UsageError(f"block size {options.block_size} is not supported")
    parent_row = cat.latest_point(repo.id, object_name)
    parent = parent_row.point_id if parent_row else None
    parent_disks = cat.disks(parent) if parent else []
    shapes = [DiskShape(d.index, d.source.size, tuple(d.source.allocated_areas()),
                        tuple(d.changed) if d.changed is not None else None, d.changed_reason)
              for d in disks]
    lost = {d.disk_index: cat.unavailable_blocks(repo.id, d.point_id, d.disk_index)
            for d in parent_disks}
    plan = plan_backup(object_name, shapes, parent, parent_disks, options.block_size, lost)
    key = repo.block_key()
    with packs_into(ws, dedup) as sink, \
            ThreadPoolExecutor(max_workers=max(1, options.threads),
                               thread_name_prefix="backup") as pool, \
            ThreadPoolExecutor(max_workers=max(1, options.read_streams or options.threads),
                               thread_name_prefix="backup-read") as readers:
        records, deltas, bytes_read, deduped, stages = _backup_disks(
            disks, plan, key, sink, cat, repo.id, compression, pool, readers, progress,
            plan.bytes_to_read, disk_progress)
        sink.drain()  # timed: the last packs' writes are the repository's share
    stages = stages + StageTimes(target=sink.write_wait)
    crash_point("backup-before-manifest")
    now = datetime.now(UTC)
    manifest = Manifest(
        point_id=new_point_id(now), object_name=object_name, object_kind=object_kind,
        created=now, kind=plan.kind, parent=parent, compression=compression.name,
        reason=plan.reason, bytes_read=bytes_read, bytes_stored=sink.bytes_stored,
        disks=tuple(records), config=dict(config or {}), object_uuid=object_uuid)
    manifest_bytes = repo.write_manifest(manifest)
    crash_point("backup-manifest-written")
    # The catalog stores the point as a delta against its parent: rows ∝ changed blocks.
    record_point(ws, manifest, manifest_bytes, parent, deltas)
    crash_point("backup-point-recorded")
    warnings = settle_point(ws, manifest, manifest_bytes)
    return BackupResult(manifest.point_id, plan.kind, plan.reason, bytes_read,
                        sink.bytes_stored, sink.blocks_new, deduped, manifest_bytes,
                        time.monotonic() - started, tuple(warnings),
                        sum(d.source.size for d in disks), sink.bytes_new, stages)
