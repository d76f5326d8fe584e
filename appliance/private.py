"""Private by default: what vmkeep makes is its owner's alone, whatever the umask.

Folders are made 0700 and files 0600 (the mode given at creation, then set again, since the
umask filters it); a repository, the appliance's home and the offline catalog cache that
already exist with group or other access are *tightened* (:func:`tighten_tree`), each path
changed named in a warning. A file held immutable (``chattr +i``: a hardened repository's)
cannot be changed: it is reported as left as it is, never an error.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600
SHARED: Final = 0o077  # group and other bits


@dataclass(frozen=True, slots=True)
class Tightened:
    """A path that had group or other access: ``new`` is its mode now, or None when it could
    not be changed (``why``)."""

    path: str
    old: int
    new: int | None
    why: str = ""

    def describe(self) -> str:
        if self.new is not None:
            return f"{self.path} ({self.old:04o} -> {self.new:04o})"
        return f"{self.path} ({self.old:04o}: {self.why}, left as it is)"


def summary(changed: Iterable[Tightened], what: str, limit: int = 20) -> str:
    """One line naming what was tightened (the first ``limit`` paths, then a count)."""
    items = list(changed)
    named = "; ".join(t.describe() for t in items[:limit])
    more = f"; and {len(items) - limit} more" if len(items) > limit else ""
    return f"{what} had group or other access, taken away here: {named}{more}"


def make_dir(path: Path) -> None:
    """``path`` as a folder (its missing parents too), each folder made here 0700; an
    existing folder is left as it is."""
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise
        return
    except FileNotFoundError:
        if path.parent == path:
            raise
        make_dir(path.parent)
        try:
            os.mkdir(path, DIR_MODE)
        except FileExistsError:
            return  # made meanwhile by another writer
    os.chmod(path, DIR_MODE)  # the umask filtered mkdir's mode


def open_new(path: Path, flags: int = os.O_WRONLY) -> int:
    """A new file (``O_CREAT | O_EXCL``), mode 0600 from the moment it exists; its fd."""
    fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def private_mode(mode: int) -> int:
    """``mode`` without its group and other bits."""
    return stat.S_IMODE(mode) & ~SHARED


def tighten_path(path: str, st: os.stat_result) -> Tightened | None:
    """Take group and other access off ``path`` (None: it had none, or it is a link)."""
    if stat.S_ISLNK(st.st_mode) or not stat.S_IMODE(st.st_mode) & SHARED:
        return None
    old = stat.S_IMODE(st.st_mode)
    new = private_mode(st.st_mode)
    try:
        os.chmod(path, new)  # not a link (lstat above)
    except FileNotFoundError:
        return None  # removed meanwhile
    except OSError as exc:
        why = ("immutable" if exc.errno == errno.EPERM and _immutable(path)
               else f"cannot change it: {exc.strerror}")
        return Tightened(path, old, None, why)
    return Tightened(path, old, new)


def shared_by_design(st: os.stat_result) -> bool:
    """A folder meant for everyone (sticky, like /tmp, or writable by all): never vmkeep's to
    close."""
    mode = stat.S_IMODE(st.st_mode)
    return stat.S_ISDIR(st.st_mode) and bool(mode & (stat.S_ISVTX | stat.S_IWOTH))


def _refused(root: Path) -> list[Tightened]:
    """``root`` left as it is when it is a folder shared by design (else nothing to say)."""
    try:
        st = os.stat(root)
    except OSError:
        return []
    if not shared_by_design(st):
        return []
    return [Tightened(os.fspath(root), stat.S_IMODE(st.st_mode), None,
                      "a folder shared by design (sticky or writable by all): give vmkeep a "
                      "folder of its own")]


def tighten_tree(root: Path) -> list[Tightened]:
    """Every path under ``root`` (itself included) with group or other access made private;
    what was changed or could not be. Only a ``root`` that others may enter is walked: behind
    a private one nothing is theirs to reach, so a private repository costs one ``stat``.
    Symbolic links are neither followed nor changed; a missing ``root`` has nothing to
    change; a folder shared by design (/tmp) is reported and neither changed nor entered."""
    refused = _refused(root)
    if refused:
        return refused
    if not _open(os.fspath(root)):
        return []
    out: list[Tightened] = []

    def visit(path: str) -> bool:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        got = tighten_path(path, st)
        if got is not None:
            out.append(got)
        return stat.S_ISDIR(st.st_mode)

    if not visit(os.fspath(root)):
        return out
    for dirpath, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            visit(os.path.join(dirpath, name))
    return out


def tighten_files(folder: Path, names: Callable[[str], bool]) -> list[Tightened]:
    """``folder`` itself and the files in it whose names ``names`` accepts (not below) made
    private: for a folder that may hold what is not vmkeep's (a cache folder given by the
    administrator). A folder shared by design is reported and left."""
    refused = _refused(folder)
    if refused:
        return refused
    out: list[Tightened] = []
    try:
        entries = [os.fspath(folder), *(os.path.join(folder, n) for n in sorted(
            os.listdir(folder)) if names(n))]
    except FileNotFoundError:
        return out
    for path in entries:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        got = tighten_path(path, st)
        if got is not None:
            out.append(got)
    return out


def _open(path: str) -> bool:
    """Whether the folder ``path`` lets group or other users in (False: missing, or a link)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(st.st_mode) and bool(stat.S_IMODE(st.st_mode) & SHARED)


def _immutable(path: str) -> bool:
    """Whether ``path`` carries the immutable (or append-only) attribute (``lsattr``'s i/a)."""
    import fcntl
    import struct

    fs_ioc_getflags = 0x80086601
    immutable_fl, append_fl = 0x10, 0x20
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        raw = fcntl.ioctl(fd, fs_ioc_getflags, struct.pack("l", 0))
    except OSError:
        return False
    finally:
        os.close(fd)
    return bool(struct.unpack("l", raw)[0] & (immutable_fl | append_fl))
