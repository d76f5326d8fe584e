"""What the engine reads from: a disk of known size, its allocated or changed areas, its bytes.

vSphere's snapshot disks and plain image files both implement :class:`Source`. This module
imports nothing of vmkeep's repository, catalog or vSphere code, so all of them may use it.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from appliance.errors import BadInputError, NotFoundError, SourceError


@dataclass(frozen=True, slots=True, order=True)
class Extent:
    """A byte range of a disk: [offset, offset + length)."""

    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + self.length


class Source(Protocol):
    """One disk to back up. ``read`` may be called from several threads at once."""

    @property
    def size(self) -> int: ...

    @property
    def label(self) -> str: ...

    def allocated_areas(self) -> Sequence[Extent]:
        """Areas that may hold data (vSphere: QueryChangedDiskAreas with changeId "*")."""
        ...

    def read(self, offset: int, length: int) -> bytes:
        """Bytes at ``offset``; short only at the end of the disk."""
        ...

    def close(self) -> None: ...


def blocks_touched(extents: Iterable[Extent], block_size: int, disk_size: int) -> list[int]:
    """Ascending indices of the blocks that any extent overlaps (pure)."""
    last = (disk_size + block_size - 1) // block_size
    touched: set[int] = set()
    for e in extents:
        if e.length <= 0:
            continue
        first = e.offset // block_size
        end = min((e.end + block_size - 1) // block_size, last)
        touched.update(range(first, end))
    return sorted(touched)


def parse_areas(text: str, what: str, disk_size: int) -> list[Extent]:
    """Parse a changed-areas JSON list of {"offset": int, "length": int}; check it fits."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInputError(f"changed-areas file {what} is not valid JSON ({exc.msg} at line "
                            f"{exc.lineno}); give a JSON list of {{\"offset\", \"length\"}}"
                            ) from None
    if not isinstance(doc, list):
        raise BadInputError(f"changed-areas file {what} must hold a JSON list of "
                            "{\"offset\": int, \"length\": int} objects")
    areas: list[Extent] = []
    for i, item in enumerate(doc):
        if (not isinstance(item, dict) or set(item) - {"offset", "length"}
                or not all(isinstance(item.get(k), int) and not isinstance(item.get(k), bool)
                           for k in ("offset", "length"))):
            raise BadInputError(f"changed-areas file {what}: entry {i} is {json.dumps(item)}; "
                                "each entry must be {\"offset\": int, \"length\": int}")
        off, length = int(item["offset"]), int(item["length"])
        if off < 0 or length < 0:
            raise BadInputError(f"changed-areas file {what}: entry {i} is {json.dumps(item)}; "
                                "offset and length must not be negative")
        if off + length > disk_size:
            raise BadInputError(
                f"changed-areas file {what}: entry {i} ends at byte {off + length}, beyond the "
                f"disk's size of {disk_size} bytes; give the areas of this disk"
            )
        areas.append(Extent(off, length))
    return areas


class ImageFileSource:
    """A raw disk image (or block device) on the local filesystem."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            raise NotFoundError(f"image file {path} does not exist; name an existing file"
                                ) from None
        except OSError as exc:
            raise SourceError(f"cannot open image file {path}: {exc.strerror}") from None
        if stat.S_ISDIR(mode):
            raise BadInputError(f"{path} is a folder; name an image file")
        if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
            raise BadInputError(f"{path} is neither a regular file nor a block device; name a "
                                "disk image file or a block device")
        try:
            self._fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise NotFoundError(f"image file {path} does not exist; name an existing file"
                                ) from None
        except IsADirectoryError:
            raise BadInputError(f"{path} is a folder; name an image file") from None
        except PermissionError:
            raise SourceError(f"image file {path} is not readable (permission denied); run as "
                              "a user who can read it") from None
        except OSError as exc:
            raise SourceError(f"cannot open image file {path}: {exc.strerror}") from None
        try:
            self._size = os.lseek(self._fd, 0, os.SEEK_END)
            # Fail early on files that open but cannot be read (e.g. a directory on some systems).
            os.pread(self._fd, 1, 0)
        except OSError as exc:
            os.close(self._fd)
            if exc.errno == errno.EISDIR:
                raise BadInputError(f"{path} is a folder; name an image file") from None
            raise SourceError(f"cannot read image file {path}: {exc.strerror}") from None
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)

    @property
    def size(self) -> int:
        return self._size

    @property
    def label(self) -> str:
        return self.path.name

    def allocated_areas(self) -> list[Extent]:
        """Data extents from SEEK_DATA/SEEK_HOLE; the whole file where holes are unknown."""
        areas: list[Extent] = []
        pos = 0
        try:
            while pos < self._size:
                try:
                    start = os.lseek(self._fd, pos, os.SEEK_DATA)
                except OSError as exc:
                    if exc.errno == errno.ENXIO:
                        break
                    raise
                end = os.lseek(self._fd, start, os.SEEK_HOLE)
                areas.append(Extent(start, end - start))
                pos = end
        except OSError:
            return [Extent(0, self._size)] if self._size else []
        return areas

    def read(self, offset: int, length: int) -> bytes:
        try:
            data = os.pread(self._fd, length, offset)
            while len(data) < length and offset + len(data) < self._size:
                more = os.pread(self._fd, length - len(data), offset + len(data))
                if not more:
                    break
                data += more
            return data
        except OSError as exc:
            raise SourceError(f"reading {self.path} at byte {offset} failed: {exc.strerror}"
                              ) from None

    def close(self) -> None:
        os.close(self._fd)
