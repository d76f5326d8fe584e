"""A repository folder on a Linux host reached over SSH (SFTP, with Paramiko).

Named ``sftp://USER@HOST[:PORT]/ABSOLUTE/PATH``. The host key is pinned (``appliance.ssh``).
Same semantics as the local backend (see ``backend.py``), checked by the same conformance
suite:

- ``put`` writes ``tmp/<name>.<random>.tmp`` with pipelined writes, makes it durable with
  OpenSSH's ``fsync@openssh.com`` extension (OpenSSH 6.5 and later; Paramiko has no call for
  it, so the request is sent by hand), then renames it into place with
  ``posix-rename@openssh.com`` (atomic, replaces). A server without ``fsync@openssh.com`` is
  refused: without it a finished file could be lost by a crash of the host. The rename itself
  is made durable by the host's journaling file system (ext4, xfs) within seconds; a point
  whose manifest a host crash took back is not shown (the catalog follows the manifests).
- ``get`` prefetches the whole object with parallel requests; ``get_range`` keeps a few files
  open per thread, since restores read many ranges of the same packs, and reads in requests
  of up to 255 KiB.
- Each thread has its own SFTP channel over one SSH connection.

When the connection drops, every call reconnects with back-off (``Reconnect``: by default
every 15 s for up to 30 minutes) and repeats what it was doing: a put starts its temporary
file afresh, so a backup goes on with the next block instead of starting over, and no point
can have a hole (its manifest is written last, after every pack is durable).

Folders are made 0700 and files 0600 on the host, whatever the SFTP server's umask (a file is
made 0600 before a byte is written to it); ``tighten`` takes group and other access off what
an older vmkeep (or a hand) left open.
"""

from __future__ import annotations

import contextlib
import errno
import posixpath
import secrets
import shlex
import stat as stat_mod
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import unquote, urlsplit

import paramiko
from paramiko.sftp import CMD_EXTENDED

from appliance.errors import NoSpaceError, NotFoundError, StorageIOError, UsageError
from appliance.private import DIR_MODE, FILE_MODE, SHARED, Tightened, private_mode
from appliance.repository.backend import TMP_FOLDER, ObjectInfo, ObjectNotFound
from appliance.ssh import SshAuth, SshError, SshTarget, connect

SCHEME: Final = "sftp://"
WRITE_CHUNK: Final = 1 << 20
# Fewer, larger SFTP requests and packets: Paramiko's cost is per packet, in Python.
WINDOW: Final = 64 << 20
MAX_PACKET: Final = 256 << 10
MAX_REQUEST: Final = 255 << 10  # OpenSSH's sftp-server takes requests up to 256 KiB
CONNECTIONS: Final = 2  # threads share these in turn
OPEN_FILES: Final = 8  # per thread, for get_range
T = TypeVar("T")


def is_sftp(location: str) -> bool:
    return location.startswith(SCHEME)


@dataclass(frozen=True, slots=True)
class SftpLocation:
    target: SshTarget
    path: str  # absolute, no trailing slash

    def __str__(self) -> str:
        port = "" if self.target.port == 22 else f":{self.target.port}"
        return f"{SCHEME}{self.target.user}@{self.target.host}{port}{self.path}"


def parse_sftp_url(url: str) -> SftpLocation:
    """``sftp://USER@HOST[:PORT]/ABSOLUTE/PATH`` (an IPv6 host in brackets)."""
    bad = (f"{url!r} is not an SSH repository location; write it as "
           "sftp://USER@HOST[:PORT]/ABSOLUTE/PATH")
    if not is_sftp(url):
        raise UsageError(bad)
    parts = urlsplit(url)
    try:
        port = parts.port or 22
    except ValueError:
        raise UsageError(f"{bad} (the port must be a number 1 … 65535)") from None
    if not parts.username or not parts.hostname:
        raise UsageError(f"{bad} (the user and the host are needed)")
    path = unquote(parts.path).rstrip("/")
    if not path.startswith("/") or parts.query or parts.fragment or \
            ".." in path.split("/"):
        raise UsageError(f"{bad} (the path must be absolute)")
    return SftpLocation(SshTarget(parts.hostname, port, unquote(parts.username)), path)


@dataclass(frozen=True, slots=True)
class Reconnect:
    """How a dropped connection is retried: every ``every`` seconds for up to ``give_up``."""

    every: float = 15.0
    give_up: float = 30 * 60.0


class _Slot:
    """One SSH connection of the backend's, and how often it was (re)made."""

    def __init__(self) -> None:
        self.client: paramiko.SSHClient | None = None
        self.generation = 0


class _Dropped(Exception):
    """The connection broke under a call (internal: the call is retried)."""


def _missing(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno == errno.ENOENT


class SftpBackend:
    """A repository folder on an SSH host (see the module)."""

    def __init__(self, where: SftpLocation, auth: SshAuth, fingerprint: str | None, *,
                 create: bool = False, reconnect: Reconnect = Reconnect(),
                 on_reconnect: Callable[[str], None] | None = None,
                 connections: int = CONNECTIONS) -> None:
        self.where = where
        self.auth = auth
        self.fingerprint = fingerprint
        self.reconnect = reconnect
        self.on_reconnect = on_reconnect
        self.reconnects = 0
        self._lock = threading.Lock()
        self._slots = [_Slot() for _ in range(max(1, connections))]
        self._next_slot = 0
        self._closed = False
        self.parallel_writes = len(self._slots)  # packs the backup may write at once
        self._local = threading.local()
        self._dirs: set[str] = set()
        self._connect(self._slots[0])
        self._prepare_root(create)

    # -- the connections ----------------------------------------------------------------------

    def _connect(self, slot: _Slot) -> None:
        client = connect(self.where.target, self.auth, self.fingerprint)
        with self._lock:
            old, slot.client = slot.client, client
            slot.generation += 1
        if old is not None:
            old.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            clients = [slot.client for slot in self._slots]
            for slot in self._slots:
                slot.client = None
                slot.generation += 1
        for client in clients:
            if client is not None:
                client.close()

    def __enter__(self) -> SftpBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _slot(self) -> _Slot:
        """This thread's connection: threads are spread over the connections in turn, so
        parallel writers (and Paramiko's per-connection encryption) run side by side."""
        slot: _Slot | None = getattr(self._local, "slot", None)
        if slot is None:
            with self._lock:
                slot = self._slots[self._next_slot % len(self._slots)]
                self._next_slot += 1
            self._local.slot = slot
        return slot

    def _sftp(self, slot: _Slot) -> paramiko.SFTPClient:
        """This thread's SFTP channel on its connection (made when missing)."""
        local = self._local
        if getattr(local, "generation", None) != slot.generation or \
                getattr(local, "sftp", None) is None:
            if self._closed:
                raise StorageIOError(f"{self.where}: the connection is closed")
            if slot.client is None:
                try:
                    self._connect(slot)
                except SshError as exc:
                    raise _Dropped(str(exc)) from exc
            client = slot.client
            try:
                transport = client.get_transport() if client is not None else None
                if transport is None:
                    raise _Dropped("the connection is closed")
                local.sftp = paramiko.SFTPClient.from_transport(
                    transport, window_size=WINDOW, max_packet_size=MAX_PACKET)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise _Dropped(str(exc)) from exc
            local.generation = slot.generation
            local.files = OrderedDict()
        sftp: paramiko.SFTPClient = local.sftp
        return sftp

    def _call(self, what: str, fn: Callable[[paramiko.SFTPClient], T]) -> T:
        """``fn`` on this thread's channel; a dropped connection is reconnected (with
        back-off) and ``fn`` repeated."""
        deadline = time.monotonic() + self.reconnect.give_up
        attempt = 0
        slot = self._slot()
        while True:
            generation = slot.generation
            try:
                return fn(self._sftp(slot))
            except (_Dropped, paramiko.SSHException, EOFError, ConnectionError,
                    TimeoutError) as exc:
                why = str(exc) or type(exc).__name__
            except OSError as exc:
                if exc.errno is not None or self._alive(slot):
                    raise  # an answer of the server (a missing file, a full disk): final
                why = str(exc) or type(exc).__name__
            attempt += 1
            while True:
                if time.monotonic() >= deadline:
                    raise StorageIOError(
                        f"{self.where}: the connection dropped ({why}) and did not come back "
                        f"within {self.reconnect.give_up:g} s; check the network and the host, "
                        "then run again (what is stored stays)")
                if self.on_reconnect is not None:
                    self.on_reconnect(f"the connection to {self.where.target} dropped during "
                                      f"{what} ({why}); reconnecting (attempt {attempt})")
                with self._lock:
                    current = slot.generation
                if current != generation:
                    break  # another thread reconnected it already
                time.sleep(min(self.reconnect.every, max(0.0, deadline - time.monotonic())))
                try:
                    self._connect(slot)
                except SshError as exc:
                    if exc.code in ("host_key_changed", "host_key_unknown", "ssh_auth"):
                        raise
                    why = str(exc)
                    attempt += 1
                    continue
                self.reconnects += 1
                break

    def _alive(self, slot: _Slot | None = None) -> bool:
        client = (slot or self._slot()).client
        transport = client.get_transport() if client is not None else None
        return transport is not None and transport.is_active()

    # -- names --------------------------------------------------------------------------------

    @property
    def location(self) -> str:
        return str(self.where)

    def _path(self, name: str) -> str:
        if name.startswith("/") or ".." in name.split("/"):
            raise ValueError(f"bad object name {name!r}")
        return f"{self.where.path}/{name}" if name else self.where.path

    def _where(self, name: str) -> str:
        return f"{self.where}/{name}"

    def _error(self, exc: OSError, name: str) -> Exception:
        if _missing(exc):
            return ObjectNotFound(f"{self._where(name)} is missing")
        if exc.errno == errno.EACCES:
            return StorageIOError(f"{self._where(name)}: permission denied on the SSH host "
                                  "(an immutable file, or the account may not write there)")
        return StorageIOError(f"{self._where(name)}: {exc.strerror or exc} (if the host's disk "
                              "is full, free space or prune old restore points)")

    def _makedirs(self, sftp: paramiko.SFTPClient, path: str) -> None:
        if path in self._dirs:
            return
        parent = posixpath.dirname(path)
        if parent != path and parent not in self._dirs:
            self._makedirs(sftp, parent)
        try:
            sftp.mkdir(path, DIR_MODE)
            sftp.chmod(path, DIR_MODE)  # the server's umask filtered mkdir's mode
        except OSError:
            try:
                if not stat_mod.S_ISDIR(sftp.stat(path).st_mode or 0):
                    raise StorageIOError(f"{self.where.target}:{path} is not a folder") from None
            except FileNotFoundError:
                raise StorageIOError(f"cannot make the folder {path} on "
                                     f"{self.where.target}") from None
        self._dirs.add(path)

    def _prepare_root(self, create: bool) -> None:
        def check(sftp: paramiko.SFTPClient) -> None:
            try:
                st = sftp.stat(self.where.path)
            except FileNotFoundError:
                if not create:
                    raise NotFoundError(f"there is no repository at {self.where}: the folder "
                                        "does not exist") from None
                self._makedirs(sftp, self.where.path)
                return
            if not stat_mod.S_ISDIR(st.st_mode or 0):
                raise UsageError(f"{self.where} is not a folder on the SSH host")
            self._dirs.add(self.where.path)

        self._call("opening the repository", check)

    # -- the six primitives -------------------------------------------------------------------

    def put(self, name: str, data: bytes) -> None:
        target = self._path(name)

        def run(sftp: paramiko.SFTPClient) -> None:
            tmp = self._path(f"{TMP_FOLDER}/{posixpath.basename(name)}."
                             f"{secrets.token_hex(6)}.tmp")
            try:
                self._makedirs(sftp, posixpath.dirname(tmp))
                self._makedirs(sftp, posixpath.dirname(target))
                with sftp.open(tmp, "wb") as f:
                    f.chmod(FILE_MODE)  # before any byte: the server's umask made it 0644
                    f.set_pipelined(True)
                    f.MAX_REQUEST_SIZE = MAX_REQUEST
                    view = memoryview(data)
                    for start in range(0, len(view), WRITE_CHUNK):
                        f.write(view[start : start + WRITE_CHUNK])
                    self._fsync(sftp, f)
                    # A pipelined write's failure (a full disk) is kept by the file, not
                    # raised: ask for it, and check the size the host has.
                    f._check_exception()  # type: ignore[attr-defined]
                    if (f.stat().st_size or 0) != len(data):
                        raise OSError(f"{tmp} holds {f.stat().st_size} of {len(data)} bytes")
                sftp.posix_rename(tmp, target)
            except OSError as exc:
                with contextlib.suppress(OSError, paramiko.SSHException, EOFError):
                    sftp.remove(tmp)
                if exc.errno is None and not self._alive():
                    raise
                free = self._free(sftp, self.where.path)
                if free is not None and free < len(data) + (1 << 20):
                    raise NoSpaceError(
                        f"no space left on {self.where.target} while writing {name} "
                        f"({free} bytes free); free space on the repository's host or prune "
                        "old restore points, then run again") from None
                raise self._error(exc, name) from None

        self._call(f"writing {name}", run)

    def tighten(self) -> list[Tightened]:
        """Take group and other access off the repository's folder and everything in it on
        the host, when the folder lets others in (else nothing there is theirs to reach):
        what was changed, or could not be (an immutable file of a hardened
        repository cannot). Links are left as they are."""

        def run(sftp: paramiko.SFTPClient) -> list[Tightened]:
            out: list[Tightened] = []

            def fix(path: str, mode: int) -> None:
                if stat_mod.S_ISLNK(mode) or not stat_mod.S_IMODE(mode) & SHARED:
                    return
                old, new = stat_mod.S_IMODE(mode), private_mode(mode)
                try:
                    sftp.chmod(path, new)
                except FileNotFoundError:
                    return
                except OSError as exc:
                    if exc.errno is None and not self._alive():
                        raise
                    why = ("immutable or not the account's" if exc.errno == errno.EACCES
                           else f"cannot change it: {exc.strerror or exc}")
                    out.append(Tightened(f"{self.where.target}:{path}", old, None, why))
                    return
                out.append(Tightened(f"{self.where.target}:{path}", old, new))

            def walk(path: str) -> None:
                try:
                    entries = sftp.listdir_attr(path)
                except FileNotFoundError:
                    return
                for e in entries:
                    child = f"{path}/{e.filename}"
                    fix(child, e.st_mode or 0)
                    if stat_mod.S_ISDIR(e.st_mode or 0):
                        walk(child)

            root = self.where.path
            mode = sftp.stat(root).st_mode or 0
            if not stat_mod.S_IMODE(mode) & SHARED:
                return out  # behind a private folder nothing is others' to reach
            fix(root, mode)
            walk(root)
            return out

        return self._call("making the repository private", run)

    def run(self, argv: list[str], stdin: bytes = b"", *, timeout: float = 300.0
            ) -> tuple[int, str, str]:
        """Run a command on the host over this backend's SSH login (exit status, stdout,
        stderr); the arguments are quoted for the remote shell."""
        slot = self._slot()
        self._sftp(slot)  # connected
        client = slot.client
        if client is None:
            raise StorageIOError(f"{self.where}: the connection is closed")
        command = " ".join(shlex.quote(a) for a in argv)
        try:
            chan_in, chan_out, chan_err = client.exec_command(command, timeout=timeout)
            chan_in.write(stdin)
            chan_in.channel.shutdown_write()
            out = chan_out.read().decode(errors="replace")
            err = chan_err.read().decode(errors="replace")
            status = chan_out.channel.recv_exit_status()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise StorageIOError(f"running {argv[0]} on {self.where.target} failed: "
                                 f"{exc}") from None
        return status, out, err

    def _free(self, sftp: paramiko.SFTPClient, path: str) -> int | None:
        """Free bytes of the file system at ``path`` (OpenSSH's statvfs@openssh.com)."""
        got = self._statvfs(sftp, path)
        return got[0] if got else None

    def _statvfs(self, sftp: paramiko.SFTPClient, path: str) -> tuple[int, int] | None:
        try:
            msg = _request(sftp, "statvfs@openssh.com", path)
            _bsize, frsize, blocks, _bfree, bavail = (msg.get_int64() for _ in range(5))
        except (OSError, paramiko.SSHException, EOFError):
            return None
        return bavail * frsize, blocks * frsize

    def space(self) -> tuple[int, int] | None:
        """(free, total) bytes of the host's file system under the repository; None when
        the server does not say."""
        return self._call("looking at free space",
                          lambda sftp: self._statvfs(sftp, self.where.path))

    def _fsync(self, sftp: paramiko.SFTPClient, f: paramiko.SFTPFile) -> None:
        f.flush()
        try:
            _request(sftp, "fsync@openssh.com", f.handle)
        except OSError as exc:
            if exc.errno is None and not self._alive():
                raise
            raise StorageIOError(
                f"{self.where.target} does not make files durable on request "
                f"(fsync@openssh.com: {exc}); vmkeep needs an OpenSSH 6.5 or later SFTP server "
                "so that a finished pack survives a crash of the host") from None

    def get(self, name: str) -> bytes:
        path = self._path(name)

        def run(sftp: paramiko.SFTPClient) -> bytes:
            try:
                with sftp.open(path, "rb") as f:
                    size = f.stat().st_size or 0
                    f.prefetch(size)
                    data: bytes = f.read(size)
                    return data
            except OSError as exc:
                if exc.errno is None and not self._alive():
                    raise
                raise self._error(exc, name) from None

        return self._call(f"reading {name}", run)

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        path = self._path(name)

        def run(sftp: paramiko.SFTPClient) -> bytes:
            files: OrderedDict[str, Any] = self._local.files
            try:
                f = files.get(path)
                if f is None:
                    f = sftp.open(path, "rb")
                    f.MAX_REQUEST_SIZE = MAX_REQUEST  # a block in few round trips
                    files[path] = f
                    while len(files) > OPEN_FILES:
                        files.popitem(last=False)[1].close()
                files.move_to_end(path)
                if length <= 0:
                    return b""
                return _read_at(f, offset, length)
            except OSError as exc:
                stale = files.pop(path, None)
                if stale is not None:
                    with contextlib.suppress(OSError, paramiko.SSHException, EOFError):
                        stale.close()
                if exc.errno is None and not self._alive():
                    raise
                raise self._error(exc, name) from None

        return self._call(f"reading {name}", run)

    def list(self, folder: str) -> list[str]:
        base = self._path(folder)

        def run(sftp: paramiko.SFTPClient) -> list[str]:
            names: list[str] = []

            def walk(path: str, rel: str) -> None:
                try:
                    entries = sftp.listdir_attr(path)
                except FileNotFoundError:
                    return
                for e in entries:
                    child = f"{rel}/{e.filename}" if rel else e.filename
                    if stat_mod.S_ISDIR(e.st_mode or 0):
                        walk(f"{path}/{e.filename}", child)
                    else:
                        names.append(child)

            try:
                walk(base, folder.strip("/"))
            except OSError as exc:
                if exc.errno is None and not self._alive():
                    raise
                raise self._error(exc, folder) from None
            return sorted(names)

        return self._call(f"listing {folder}", run)

    def delete(self, name: str) -> None:
        path = self._path(name)
        tries = 0

        def run(sftp: paramiko.SFTPClient) -> None:
            nonlocal tries
            tries += 1
            try:
                sftp.remove(path)
            except OSError as exc:
                if _missing(exc) and tries > 1:
                    return  # removed before the connection dropped: done
                if exc.errno is None and not self._alive():
                    raise
                raise self._error(exc, name) from None

        self._call(f"deleting {name}", run)

    def stat(self, name: str) -> ObjectInfo:
        path = self._path(name)

        def run(sftp: paramiko.SFTPClient) -> ObjectInfo:
            try:
                st = sftp.stat(path)
            except OSError as exc:
                if exc.errno is None and not self._alive():
                    raise
                raise self._error(exc, name) from None
            return ObjectInfo(name, st.st_size or 0, float(st.st_mtime or 0))

        return self._call(f"looking at {name}", run)


def _request(sftp: paramiko.SFTPClient, extension: str, *args: Any) -> Any:
    """An OpenSSH extended request (Paramiko sends only the ones it knows); its reply."""
    send: Callable[..., tuple[int, Any]] = getattr(sftp, "_request")  # noqa: B009
    return send(CMD_EXTENDED, extension, *args)[1]


def _read_at(f: paramiko.SFTPFile, offset: int, length: int) -> bytes:
    f.seek(offset)
    out: list[bytes] = []
    done = 0
    while done < length:
        chunk = f.read(length - done)
        if not chunk:
            break
        out.append(chunk)
        done += len(chunk)
    return b"".join(out)
