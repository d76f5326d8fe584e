"""Storage backends: the six primitives every repository location implements.

Names are relative, '/'-separated paths such as ``packs/3f/3f9a….pack``. Semantics, which the
conformance suite in ``tests/repository/test_backend_conformance.py`` checks on every backend:

- ``put(name, data)``: atomic and durable. When it returns, ``name`` holds exactly ``data`` and
  survives a crash; a reader never sees a partial file (written under a temporary name in
  ``tmp/``, flushed, then renamed; the folder is flushed too). Replaces an existing object
  atomically. Fails with :class:`NoSpaceError` when storage is full, leaving ``name`` as it was.
- ``get(name)`` / ``get_range(name, offset, length)``: the bytes; :class:`ObjectNotFound` when
  absent. ``get_range`` returns fewer bytes only at the end of the object.
- ``list(folder)``: names of objects below ``folder`` (recursively), sorted; empty if none.
- ``delete(name)``: removes it durably; :class:`ObjectNotFound` when absent.
- ``stat(name)``: size and modification time; :class:`ObjectNotFound` when absent.
- ``close()``: lets go of connections (a network backend); the backend is not used after.

Every folder a backend makes is 0700 and every file 0600, whatever the umask: a repository is
its owner's alone (``appliance.private``; the threat model, docs/FORMAT.md).

Errors are final in the local and memory backends (no retry); a network backend retries
transient failures itself and raises :class:`StorageIOError` once it gives up.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from appliance.errors import NoSpaceError, NotFoundError, StorageIOError
from appliance.faults import crash_point
from appliance.private import make_dir, open_new

TMP_FOLDER = "tmp"
WRITEBACK_STEP = 4 << 20


class ObjectNotFound(NotFoundError):
    """An object the repository expected is missing."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    name: str
    size: int
    mtime: float


class Backend(Protocol):
    """Where a repository's files live."""

    @property
    def location(self) -> str: ...

    def put(self, name: str, data: bytes) -> None: ...

    def get(self, name: str) -> bytes: ...

    def get_range(self, name: str, offset: int, length: int) -> bytes: ...

    def list(self, folder: str) -> list[str]: ...

    def delete(self, name: str) -> None: ...

    def stat(self, name: str) -> ObjectInfo: ...

    def close(self) -> None: ...


def _io_error(exc: OSError, what: str) -> Exception:
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return NoSpaceError(f"no space left while writing {what}; free space on the repository's "
                            "storage or prune old restore points, then run again")
    return StorageIOError(f"{what}: {exc.strerror or exc}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBackend:
    """A folder on a local (or locally mounted) filesystem."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def location(self) -> str:
        return str(self.root)

    def close(self) -> None:
        pass

    def _path(self, name: str) -> Path:
        if name.startswith("/") or ".." in name.split("/"):
            raise ValueError(f"bad object name {name!r}")
        return self.root / name

    def put(self, name: str, data: bytes) -> None:
        target = self._path(name)
        tmp_dir = self.root / TMP_FOLDER
        tmp = tmp_dir / f"{target.name}.{secrets.token_hex(6)}.tmp"
        try:
            make_dir(tmp_dir)
            make_dir(target.parent)
            fd = open_new(tmp)
            try:
                view = memoryview(data)
                done = 0
                while done < len(view):
                    done += os.write(fd, view[done : done + WRITEBACK_STEP])
                    # Start writeback of what is written (asynchronously): one fsync of a
                    # large dirty file is much slower here than a steady stream.
                    os.posix_fadvise(fd, 0, done, os.POSIX_FADV_DONTNEED)
                os.fsync(fd)
            finally:
                os.close(fd)
            crash_point("put-tmp-written")  # the file is whole in tmp/, not yet in place
            os.rename(tmp, target)
            _fsync_dir(target.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise _io_error(exc, f"{self.root}/{name}") from None

    def get(self, name: str) -> bytes:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(f"{self.root}/{name} is missing") from None
        except OSError as exc:
            raise _io_error(exc, f"{self.root}/{name}") from None

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        try:
            fd = os.open(self._path(name), os.O_RDONLY)
        except FileNotFoundError:
            raise ObjectNotFound(f"{self.root}/{name} is missing") from None
        except OSError as exc:
            raise _io_error(exc, f"{self.root}/{name}") from None
        try:
            chunks: list[bytes] = []
            done = 0
            while done < length:
                chunk = os.pread(fd, length - done, offset + done)
                if not chunk:
                    break
                chunks.append(chunk)
                done += len(chunk)
            return b"".join(chunks)
        except OSError as exc:
            raise _io_error(exc, f"{self.root}/{name}") from None
        finally:
            os.close(fd)

    def list(self, folder: str) -> list[str]:
        base = self._path(folder)
        names: list[str] = []
        try:
            for dirpath, _dirs, files in os.walk(base):
                rel = os.path.relpath(dirpath, self.root)
                for fname in files:
                    names.append(f"{rel}/{fname}" if rel != "." else fname)
        except OSError as exc:
            raise _io_error(exc, f"{self.root}/{folder}") from None
        return sorted(names)

    def delete(self, name: str) -> None:
        path = self._path(name)
        try:
            path.unlink()
            _fsync_dir(path.parent)
        except FileNotFoundError:
            raise ObjectNotFound(f"{self.root}/{name} is missing") from None
        except OSError as exc:
            raise _io_error(exc, f"{self.root}/{name}") from None

    def stat(self, name: str) -> ObjectInfo:
        try:
            st = self._path(name).stat()
        except FileNotFoundError:
            raise ObjectNotFound(f"{self.root}/{name} is missing") from None
        except OSError as exc:
            raise _io_error(exc, f"{self.root}/{name}") from None
        return ObjectInfo(name, st.st_size, st.st_mtime)


class MemoryBackend:
    """Objects in a dict: for tests and for staging. Thread-safe, never durable."""

    def __init__(self, name: str = "memory") -> None:
        self._objects: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()
        self._name = name

    @property
    def location(self) -> str:
        return f"memory:{self._name}"

    def close(self) -> None:
        pass

    def put(self, name: str, data: bytes) -> None:
        with self._lock:
            self._objects[name] = (bytes(data), time.time())

    def get(self, name: str) -> bytes:
        with self._lock:
            try:
                return self._objects[name][0]
            except KeyError:
                raise ObjectNotFound(f"{self.location}/{name} is missing") from None

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        return self.get(name)[offset : offset + length]

    def list(self, folder: str) -> list[str]:
        prefix = folder.rstrip("/") + "/"
        with self._lock:
            return sorted(n for n in self._objects if n.startswith(prefix))

    def delete(self, name: str) -> None:
        with self._lock:
            if self._objects.pop(name, None) is None:
                raise ObjectNotFound(f"{self.location}/{name} is missing")

    def stat(self, name: str) -> ObjectInfo:
        with self._lock:
            try:
                data, mtime = self._objects[name]
            except KeyError:
                raise ObjectNotFound(f"{self.location}/{name} is missing") from None
        return ObjectInfo(name, len(data), mtime)
