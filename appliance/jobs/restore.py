"""Restore a disk of a restore point to a raw image file.

The target is written under a temporary name beside it, sparse where the disk is zero, made
durable, and only then renamed into place: a failed restore leaves no target behind.

The temporary name, ``.NAME.vmkeep-partial-HOST-PID-START-RANDOM``, carries the writing
process: HOST (8 hex digits of a hash of the host name), its pid and its start time (clock
ticks after boot, from ``/proc/PID/stat``). A restore killed mid-way leaves that file; the next
restore into the same folder removes every such file of this host whose process is gone (the
pid no longer runs, or runs a process that started at another time), never a live one's nor
another host's (a folder shared over the network).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import (
    IntegrityError,
    NoSpaceError,
    NotFoundError,
    StorageIOError,
    UsageError,
)
from appliance.faults import crash_point, hold_point
from appliance.jobs.reader import BlockReader
from appliance.jobs.workspace import Workspace
from appliance.process import process_alive, process_start
from appliance.repository.backend import ObjectNotFound
from catalog.models import BlockLocation, PointRow

FLUSH_BYTES = 32 << 20  # start writeback of a restore target every this many bytes
PARTIAL_MARK = ".vmkeep-partial-"
_PARTIAL = re.compile(r"\.(?P<target>.+)\.vmkeep-partial-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-"
                      r"(?P<start>\d+)-[0-9a-f]{8}")


@dataclass(frozen=True, slots=True)
class RestoreResult:
    point_id: str
    disk_index: int
    target: Path
    size: int
    bytes_written: int
    seconds: float
    # Partial files of dead restores removed from the target's folder first.
    removed_partials: tuple[Path, ...] = ()


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def partial_path(target: Path) -> Path:
    """Where this process writes ``target`` before renaming it into place."""
    pid = os.getpid()
    return target.parent / (f".{target.name}{PARTIAL_MARK}{_host_tag()}-{pid}-"
                            f"{process_start(pid) or 0}-{secrets.token_hex(4)}")


def remove_dead_partials(folder: Path) -> tuple[Path, ...]:
    """Remove the partial files in ``folder`` that restores of this host which are no longer
    running left; return them. Files of live restores, of other hosts and of older vmkeep
    versions (whose names carry no pid) are kept."""
    host = _host_tag()
    removed: list[Path] = []
    try:
        names = [e.name for e in os.scandir(folder)
                 if PARTIAL_MARK in e.name and e.is_file(follow_symlinks=False)]
    except OSError:
        return ()
    for name in sorted(names):
        m = _PARTIAL.fullmatch(name)
        if m is None or m["host"] != host or process_alive(int(m["pid"]), int(m["start"])):
            continue
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
            removed.append(folder / name)
    return tuple(removed)


def find_point(ws: Workspace, point_id: str) -> PointRow:
    repo, cat = ws.repo, ws.cat
    row = cat.point(point_id)
    if row is None or row.repo_id != repo.id:
        if point_id in repo.point_ids():
            # The manifest exists but could not be indexed: say why (it is damaged).
            repo.read_manifest(point_id)
        raise NotFoundError(f"restore point {point_id!r} is not in repository {repo.location}; "
                            "list its points with `vmkeep image points --repo "
                            f"{repo.location}`")
    return row


def _fetch(reader: BlockReader, loc: BlockLocation, point_id: str) -> tuple[int, bytes]:
    return loc.block_index, reader.read(loc, point_id)


@dataclass(frozen=True, slots=True)
class DiskToRestore:
    """A disk of a point, checked against its manifest, with where each block lives."""

    point_id: str
    disk_index: int
    size: int
    block_size: int
    plan: tuple[BlockLocation, ...]  # ascending block index; blocks not listed are zero


def prepare_disk(ws: Workspace, point_id: str, disk_index: int) -> DiskToRestore:
    """Find disk ``disk_index`` of ``point_id`` and check the catalog against the manifest."""
    repo, cat = ws.repo, ws.cat
    point = find_point(ws, point_id)
    disks = {d.disk_index: d for d in cat.disks(point_id)}
    if disk_index not in disks:
        raise NotFoundError(f"restore point {point_id} has no disk {disk_index}; it has disks "
                            f"{', '.join(str(i) for i in sorted(disks))}")
    disk = disks[disk_index]
    # The manifest is the truth: a damaged or missing manifest means a damaged point.
    try:
        manifest = repo.read_manifest(point.point_id)
    except ObjectNotFound:
        raise IntegrityError(f"the manifest of point {point_id} is missing from the "
                             "repository") from None
    mdisk = next((d for d in manifest.disks if d.index == disk_index), None)
    plan = cat.restore_plan(repo.id, point_id, disk_index)
    if (mdisk is None or len(mdisk.blocks) != len(plan)
            or mdisk.blocks.ids != b"".join(p.block_id for p in plan)):
        raise IntegrityError(f"the catalog's block map of point {point_id} disagrees with its "
                             f"manifest; run {ws.rescan_hint}")
    return DiskToRestore(point_id, disk_index, disk.size, disk.block_size, tuple(plan))


def read_blocks(ws: Workspace, disk: DiskToRestore, *, threads: int = 2
                ) -> Iterator[tuple[int, bytes]]:
    """``(block index, plain bytes)`` of every stored block, ascending, each check verified
    (a damaged copy is recorded and another copy read, if there is one); read ahead by a
    window of about 32 MiB on ``threads`` threads."""
    with BlockReader(ws) as reader:
        yield from _read_blocks(reader, disk, threads)


def _read_blocks(reader: BlockReader, disk: DiskToRestore, threads: int
                 ) -> Iterator[tuple[int, bytes]]:
    bs = disk.block_size
    window = max(4, (32 << 20) // bs)
    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="restore") as pool:
        for start in range(0, len(disk.plan), window):
            chunk = disk.plan[start : start + window]
            for index, data in pool.map(lambda loc: _fetch(reader, loc, disk.point_id), chunk):
                if index * bs >= disk.size or len(data) != min(bs, disk.size - index * bs):
                    raise IntegrityError(f"block {index} of point {disk.point_id} holds "
                                         f"{len(data)} bytes, which does not fit the disk")
                yield index, data


def disk_bytes(ws: Workspace, disk: DiskToRestore, *, threads: int = 2,
               zero_chunk: int = 1 << 20) -> Iterator[bytes]:
    """The whole disk as consecutive byte strings (zeros where no block is stored), for a
    target that cannot be written sparse, such as an upload."""
    zeros = bytes(zero_chunk)
    pos = 0

    def gap(end: int) -> Iterator[bytes]:
        nonlocal pos
        while pos < end:
            n = min(zero_chunk, end - pos)
            yield zeros if n == zero_chunk else bytes(n)
            pos += n

    for index, data in read_blocks(ws, disk, threads=threads):
        yield from gap(index * disk.block_size)
        yield data
        pos += len(data)
    yield from gap(disk.size)


def take_name(tmp: Path, target: Path) -> None:
    """Give the written file ``tmp`` the name ``target`` unless a file took it meanwhile (the
    restore wrote for a while since ``check_target``): a hard link, which never replaces, then
    the temporary name removed. A file system without hard links gets a rename after one more
    look."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise UsageError(f"restore target {target} already exists (it was created while the "
                         "restore wrote) and was left as it is; remove it or name a new "
                         "file") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        check_target(target)
        os.rename(tmp, target)
        return
    tmp.unlink()


def check_target(target: Path) -> Path:
    """Refuse a restore target that exists (usage, 2, as `image restore` says before it opens
    the repository: docs/CLI.md) or whose folder does not (not found); its folder."""
    if target.exists():
        raise UsageError(f"restore target {target} already exists; remove it or name a "
                         "new file")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise NotFoundError(f"the folder of restore target {target} does not exist; create it "
                            "or name a file in an existing folder")
    return parent


def restore_disk(ws: Workspace, point_id: str, disk_index: int,
                 target: Path, *, threads: int = 2,
                 progress: Callable[[int, int], None] | None = None) -> RestoreResult:
    """Write the disk to ``target``; ``progress(bytes of the disk done, its size)`` after
    each stored block and at the end."""
    started = time.monotonic()
    disk = prepare_disk(ws, point_id, disk_index)
    parent = check_target(target)
    removed = remove_dead_partials(parent)
    tmp = partial_path(parent / target.name)
    written = 0
    bs = disk.block_size
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise StorageIOError(f"cannot create {tmp}: {exc.strerror}") from None
    try:
        hold_point("restore-writing", target.name)
        try:
            # Blocks are written in ascending order, extending the file; the size (and a trailing
            # hole) is set at the end. A pre-sized sparse file makes ext4's pwrite ~10x slower.
            flushed = 0
            for index, data in read_blocks(ws, disk, threads=threads):
                view = memoryview(data)
                pos = index * bs
                while view:
                    n = os.pwrite(fd, view, pos)
                    view = view[n:]
                    pos += n
                written += len(data)
                crash_point("restore-block-written")
                if pos - flushed >= FLUSH_BYTES:
                    # Start writing this stretch to disk now (asynchronously), so the final
                    # fsync does not wait for the whole image at once.
                    os.posix_fadvise(fd, flushed, pos - flushed, os.POSIX_FADV_DONTNEED)
                    flushed = pos
                if progress is not None:
                    progress(pos, disk.size)
            os.ftruncate(fd, disk.size)
            os.fsync(fd)
            if progress is not None:
                progress(disk.size, disk.size)
        finally:
            os.close(fd)
        take_name(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpaceError(f"no space left for restore target {target} ({disk.size} bytes "
                               "needed); free space there or restore to another folder"
                               ) from None
        if isinstance(exc, OSError):
            raise StorageIOError(f"writing restore target {target} failed: {exc.strerror}"
                                 ) from None
        raise
    return RestoreResult(point_id, disk_index, target, disk.size, written,
                         time.monotonic() - started, removed)
