"""Log backup: database logs (PostgreSQL's archived WAL, or what a log backup command writes)
collected from a guest folder over SFTP into the repository, every N minutes.

Each collection is a restore point of the object ``<VM>:logs`` whose "disks" are the files
collected (label: the file's name; meta: its size and time), so the files are compressed,
hashed, deduplicated and catalogued like disk blocks, and verify, retention and restore work
on them unchanged. A file is removed from the guest only once the point naming it is durable;
a file already stored (its removal failed before) is not stored twice, only removed. Files
changed in the last ``settle_seconds`` are left for the next run (still being written).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from appliance.guest.scripts import Guest, delete_files, fetch_file, list_files
from appliance.jobs.backup import BackupOptions, DiskInput, run_backup
from appliance.jobs.workspace import Workspace
from appliance.progress import human_bytes
from appliance.source import Extent

OBJECT_KIND = "logs"


def logs_object(vm: str) -> str:
    return f"{vm}:logs"


class BytesSource:
    """A file's bytes as a disk to back up."""

    def __init__(self, label: str, data: bytes) -> None:
        self._label = label
        self._data = data

    @property
    def size(self) -> int:
        return len(self._data)

    @property
    def label(self) -> str:
        return self._label

    def allocated_areas(self) -> Sequence[Extent]:
        return [Extent(0, len(self._data))] if self._data else []

    def read(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length]

    def close(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class LogCollection:
    point_id: str | None
    stored: tuple[str, ...]  # files stored by this run
    removed: tuple[str, ...]  # files removed from the guest (stored now or before)
    waiting: tuple[str, ...]  # files left for the next run (changed too recently)


def stored_names(ws: Workspace, vm: str) -> set[str]:
    """The file names the repository holds for ``vm``'s logs."""
    cat, repo = ws.cat, ws.repo
    return {d.label for p in cat.points(repo.id, logs_object(vm)) for d in cat.disks(p.point_id)}


def collect_logs(guest: Guest, folder: str, pattern: str, ws: Workspace, vm: str, *,
                 settle_seconds: float = 10.0, options: BackupOptions | None = None,
                 log: Callable[[str, str], None] = lambda _l, _m: None) -> LogCollection:
    """One collection (see the module), in a shared workspace."""
    now = time.time()
    files = list_files(guest, folder, pattern)
    ready = [f for f in files if now - f.mtime >= settle_seconds]
    waiting = tuple(f.name for f in files if now - f.mtime < settle_seconds)
    known = stored_names(ws, vm)
    new = [f for f in ready if f.name not in known]
    point_id: str | None = None
    if new:
        inputs = [DiskInput(n, BytesSource(f.name, fetch_file(guest, folder, f.name)),
                            changed_reason="log file",
                            meta={"file": f.name, "size": f.size, "mtime": f.mtime})
                  for n, f in enumerate(new)]
        result = run_backup(ws, logs_object(vm), inputs,
                            options or BackupOptions(block_size=1 << 20),
                            object_kind=OBJECT_KIND,
                            config={"folder": folder, "pattern": pattern,
                                    "files": [f.name for f in new]})
        point_id = result.point_id
        log("info", f"stored {len(new)} log file(s) from {folder} as point {point_id} "
                    f"({human_bytes(result.bytes_stored)}): {new[0].name} … {new[-1].name}")
    removable = [f.name for f in ready]
    if removable:
        delete_files(guest, folder, removable)
        log("info", f"removed {len(removable)} stored log file(s) from {folder} in the guest")
    return LogCollection(point_id, tuple(f.name for f in new), tuple(removable), waiting)
