"""Disk transports: read a snapshot's flat disk over HTTPS from the datastore (Range GETs with
the session cookie), or directly from a locally reachable datastore file.

Both are :class:`appliance.source.Source`; ``read`` is safe to call from several threads.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from appliance.errors import SourceError
from appliance.source import Extent

RETRIES = 4
BACKOFF = 0.1


class TransportError(SourceError):
    """A disk could not be read through its transport."""

    code = "vsphere_transport"


@dataclass(frozen=True, slots=True)
class DatastoreEndpoint:
    """Where to fetch datastore files: the vCenter/ESXi host, port, session cookie value
    (``vmware_soap_session``) and the TLS context (None: verify with the system's CAs)."""

    host: str
    port: int
    cookie: str
    ssl_context: ssl.SSLContext | None = None
    fingerprint: str | None = None  # pinned SHA-256 of the server certificate (hex)
    #: Logs in again when the session is gone and returns the live session's cookie
    #: (``VSphereSession.renewed_cookie``): a read refused its session (401/403) asks it once.
    renew: Callable[[], str] | None = None

    def check_peer(self, sock: socket.socket | None) -> None:
        """Refuse a connection whose certificate is not the pinned one (before the cookie is
        sent). Does nothing when nothing is pinned."""
        if self.fingerprint is None:
            return
        der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
        got = hashlib.sha256(der or b"").hexdigest()
        if got != self.fingerprint:
            raise TransportError(f"{self.host}:{self.port} presented a certificate with "
                                 f"fingerprint {got} on a datastore connection, expected "
                                 f"{self.fingerprint}: check the server")


def datastore_url_path(datacenter_name: str, datastore_name: str, path: str) -> str:
    """``/folder/<path>?dcPath=…&dsName=…``: a datastore file in vSphere's HTTP API."""
    query = urllib.parse.urlencode({"dcPath": datacenter_name, "dsName": datastore_name})
    return "/folder/" + urllib.parse.quote(path.lstrip("/")) + "?" + query


def range_ignored(what: str, first: int, last: int) -> str:
    """The error for a Range request answered with 200 (the whole file)."""
    return (f"reading {what}: the server answered the request for bytes {first}-{last} with "
            "HTTP 200 and the whole file (it ignored Range); vmkeep does not read disks from "
            "the start for every block: check what sits between this appliance and the "
            "server (a proxy that drops Range), or use another transport")


def _pad(data: bytes, offset: int, length: int, size: int) -> bytes:
    want = max(0, min(length, size - offset))
    if len(data) >= want:
        return data[:want]
    return data + bytes(want - len(data))


class DatastoreDiskSource:
    """A flat disk file on a datastore, read by HTTPS Range requests."""

    def __init__(self, endpoint: DatastoreEndpoint, datacenter_name: str, datastore_name: str,
                 path_of_flat_file: str, size: int, label: str,
                 allocated: Sequence[Extent], *, timeout: float = 60.0,
                 retries: int = RETRIES, backoff: float = BACKOFF) -> None:
        self.endpoint = endpoint
        self._size = size
        self._label = label
        self._allocated = list(allocated)
        self._timeout = timeout
        self._retries = max(1, retries)
        self._backoff = backoff
        self.url_path = datastore_url_path(datacenter_name, datastore_name, path_of_flat_file)
        self._what = f"[{datastore_name}] {path_of_flat_file}"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[http.client.HTTPSConnection] = []
        self._closed = False
        self._cookie = endpoint.cookie  # renewed when the session is found gone
        self.retried = 0  # reads that failed once and were tried again

    @property
    def size(self) -> int:
        return self._size

    @property
    def label(self) -> str:
        return self._label

    def allocated_areas(self) -> list[Extent]:
        return list(self._allocated)

    def _conn(self) -> http.client.HTTPSConnection:
        conn: http.client.HTTPSConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            ctx = self.endpoint.ssl_context or ssl.create_default_context()
            conn = http.client.HTTPSConnection(self.endpoint.host, self.endpoint.port,
                                               timeout=self._timeout, context=ctx)
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        if conn.sock is None:  # new, or closed by the server: check the pin before the cookie
            conn.connect()
            self.endpoint.check_peer(conn.sock)
        return conn

    def _drop_conn(self) -> None:
        conn: http.client.HTTPSConnection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
            with self._lock:
                if conn in self._conns:
                    self._conns.remove(conn)

    def _get(self, first: int, last: int) -> bytes:
        for renewed in (False, True):
            conn = self._conn()
            conn.request("GET", self.url_path, headers={
                "Range": f"bytes={first}-{last}",
                "Cookie": f"vmware_soap_session={self._cookie}",
                "Accept": "application/octet-stream",
            })
            resp = conn.getresponse()
            if resp.status == 200:
                # Range ignored: the whole file would follow. Never read it (time and memory
                # would grow with the offset); drop the connection and fail the read.
                self._drop_conn()
                raise TransportError(range_ignored(self._what, first, last))
            body = resp.read()
            if resp.status in (401, 403) and not renewed and self.endpoint.renew is not None:
                self._cookie = self.endpoint.renew()  # the session expired: log in again
                continue
            return self._answer(resp, body, first)
        raise AssertionError("unreachable")

    def _answer(self, resp: http.client.HTTPResponse, body: bytes, first: int) -> bytes:
        if resp.status == 206:
            got = _range_start(resp.getheader("Content-Range"))
            if got is not None and got != first:
                raise _Retryable(f"the server sent bytes from {got} where {first} was asked")
            return body
        if resp.status == 416:  # Past the end of a short file: zeros.
            return b""
        if resp.status in (401, 403):
            raise TransportError(f"reading {self._what}: the datastore refused the session "
                                 f"(HTTP {resp.status}); log in again")
        if resp.status == 404:
            raise TransportError(f"reading {self._what}: the file does not exist on the "
                                 "datastore (HTTP 404)")
        raise _Retryable(f"HTTP {resp.status} {resp.reason}")

    def read(self, offset: int, length: int) -> bytes:
        if self._closed:
            raise TransportError(f"reading {self._what}: the source is closed")
        if offset >= self._size or length <= 0:
            return b""
        length = min(length, self._size - offset)

        def failed() -> None:
            self._drop_conn()
            with self._lock:
                self.retried += 1

        try:
            return retrying(f"{self._what} at byte {offset} ({length} bytes)", self._retries,
                            self._backoff, lambda: _pad(self._get(offset, offset + length - 1),
                                                        offset, length, self._size), failed)
        except TransportError:
            self._drop_conn()
            raise

    def close(self) -> None:
        self._closed = True
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            c.close()


class _Retryable(Exception):
    """A response worth retrying (5xx, unexpected status)."""


def retrying(what: str, retries: int, backoff: float, attempt: Callable[[], bytes],
             failed: Callable[[], None]) -> bytes:
    """``attempt()``, tried up to ``retries`` times with a doubling ``backoff`` between (a
    disk source's read): a TransportError is final; after each failure worth retrying
    (an unexpected answer, a dropped connection) ``failed()`` runs; the last failure is
    named in the TransportError that ends it."""
    last_error = ""
    for n in range(retries):
        try:
            return attempt()
        except (_Retryable, OSError, http.client.HTTPException) as exc:
            failed()
            last_error = " ".join(str(exc).split()) or type(exc).__name__
            if n + 1 < retries:
                time.sleep(backoff * (2 ** n))
    raise TransportError(f"reading {what} failed after {retries} attempts: {last_error}")


def _range_start(content_range: str | None) -> int | None:
    """The first byte of ``Content-Range: bytes FIRST-LAST/SIZE`` (None if absent/odd)."""
    if not content_range or not content_range.startswith("bytes "):
        return None
    first, _, _rest = content_range[6:].partition("-")
    return int(first) if first.strip().isdigit() else None


class DirectPathDiskSource:
    """A flat disk file reachable on the local filesystem (hot-add, direct storage access)."""

    def __init__(self, path: str | os.PathLike[str], size: int, label: str,
                 allocated: Sequence[Extent]) -> None:
        self.path = os.fspath(path)
        self.retried = 0  # a local file is read once: nothing is tried again
        self._size = size
        self._label = label
        self._allocated = list(allocated)
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise TransportError(f"cannot open disk file {self.path}: {exc.strerror}") from None

    @property
    def size(self) -> int:
        return self._size

    @property
    def label(self) -> str:
        return self._label

    def allocated_areas(self) -> list[Extent]:
        return list(self._allocated)

    def read(self, offset: int, length: int) -> bytes:
        if offset >= self._size or length <= 0:
            return b""
        length = min(length, self._size - offset)
        try:
            data = os.pread(self._fd, length, offset)
            while 0 < len(data) < length:
                more = os.pread(self._fd, length - len(data), offset + len(data))
                if not more:
                    break
                data += more
        except OSError as exc:
            raise TransportError(f"reading {self.path} at byte {offset} failed: "
                                 f"{exc.strerror}") from None
        return _pad(data, offset, length, self._size)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def fetch_small_file(endpoint: DatastoreEndpoint, url_path: str, limit: int, what: str, *,
                     timeout: float = 60.0, headers: dict[str, str] | None = None) -> bytes:
    """A small datastore file (a disk's descriptor) whole, at most ``limit + 1`` bytes of it
    (more is the caller's to refuse), with the session cookie (or ``headers``)."""
    last_error = ""
    cookie, renewed = endpoint.cookie, False
    for attempt in range(RETRIES):
        ctx = endpoint.ssl_context or ssl.create_default_context()
        conn = http.client.HTTPSConnection(endpoint.host, endpoint.port, timeout=timeout,
                                           context=ctx)
        try:
            conn.connect()
            endpoint.check_peer(conn.sock)
            conn.request("GET", url_path, headers=headers or {
                "Cookie": f"vmware_soap_session={cookie}"})
            resp = conn.getresponse()
            if resp.status == 200:
                return resp.read(limit + 1)
            if resp.status in (401, 403) and not renewed and headers is None \
                    and endpoint.renew is not None:
                cookie, renewed = endpoint.renew(), True  # the session expired: log in again
                continue
            if resp.status in (401, 403):
                raise TransportError(f"reading {what}: the datastore refused the session "
                                     f"(HTTP {resp.status}); log in again")
            if resp.status == 404:
                raise TransportError(f"reading {what}: the file does not exist on the "
                                     "datastore (HTTP 404)")
            last_error = f"HTTP {resp.status} {resp.reason}: {resp.read(200)!r}"
        except (OSError, http.client.HTTPException) as exc:
            last_error = " ".join(str(exc).split()) or type(exc).__name__
        finally:
            conn.close()
        if attempt + 1 < RETRIES:
            time.sleep(BACKOFF * (2 ** attempt))
    raise TransportError(f"reading {what} failed after {RETRIES} attempts: {last_error}")


def read_local_head(path: str, limit: int) -> bytes:
    """The first ``limit + 1`` bytes of a local file (a descriptor on a mounted datastore)."""
    try:
        with open(path, "rb") as f:
            return f.read(limit + 1)
    except OSError as exc:
        raise TransportError(f"cannot read {path}: {exc.strerror}") from None


def session_cookie_value(raw_cookie: str) -> str:
    """The ``vmware_soap_session`` value out of a Set-Cookie style string (pyVmomi's
    ``stub.cookie``); the input itself when it holds no such name."""
    for part in raw_cookie.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name == "vmware_soap_session":
            return value.strip()
    return raw_cookie.strip()
