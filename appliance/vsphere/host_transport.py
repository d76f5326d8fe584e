"""Read a snapshot's flat disk from the ESXi host that runs the VM, in a few long Range
streams, each opened with its own single-use service ticket.

A ticket lets exactly one request in, so a block-per-request reader would need a ticket (a
vCenter round trip) per block. Instead the areas a backup will read (the blocks its plan
touches, :meth:`HostDiskSource.expect`) are cut into runs of contiguous blocks of at most
``stream_bytes``; the first read inside a run opens one GET for the whole rest of the run and
later reads take their bytes from that stream. The engine's reader threads ask for blocks in
ascending order but in any interleaving: whoever holds a run's stream reads forward up to its
own block and leaves the blocks it passed for their readers (at most ``read_ahead`` bytes are
held). Reads outside the expected runs (CBT sampling, retries of a passed block) get a stream of
their own, exactly their range.

The host's certificate is pinned by the SHA-1 thumbprint the vCenter reports for it; a
different certificate is refused before any ticket is sent. A Range answered with 200 fails
at once (the body is never read).
"""

from __future__ import annotations

import bisect
import http.client
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence

from appliance.source import Extent, blocks_touched
from appliance.vsphere.host_endpoint import TICKET_COOKIE, pin_mismatch
from appliance.vsphere.transport import (
    BACKOFF,
    RETRIES,
    TransportError,
    _pad,
    _range_start,
    _Retryable,
    range_ignored,
    retrying,
)

STREAM_BYTES = 256 << 20  # one ticket and one GET per this much of a contiguous run
READ_AHEAD = 64 << 20  # bytes held for other readers at most
CHUNK = 1 << 20

TicketFn = Callable[[str], str]  # the URL to GET → a single-use ticket id for it


def host_url_path(datastore_name: str, path: str) -> str:
    """``/folder/<path>?dsName=…``: a datastore file on an ESXi host (no dcPath)."""
    return ("/folder/" + urllib.parse.quote(path.lstrip("/")) + "?"
            + urllib.parse.urlencode({"dsName": datastore_name}))


class _Stream:
    """One GET over [pos, end): the bytes not yet taken."""

    def __init__(self, start: int, end: int) -> None:
        self.pos = start
        self.end = end
        self.lock = threading.Lock()
        self.conn: http.client.HTTPSConnection | None = None
        self.resp: http.client.HTTPResponse | None = None
        self.data_end = end  # past this the file has no bytes: zeros
        self.opened = 0


class HostDiskSource:
    """A flat disk file read from an ESXi host with service tickets (a Source)."""

    def __init__(self, address: str, port: int, thumbprint: str, host_name: str,
                 datastore_name: str, path_of_flat_file: str, size: int, label: str,
                 allocated: Sequence[Extent], ticket: TicketFn, *, block_size: int = CHUNK,
                 stream_bytes: int | None = None, read_ahead: int = READ_AHEAD,
                 timeout: float = 60.0, retries: int = RETRIES,
                 backoff: float = BACKOFF) -> None:
        self.address = address
        self.port = port
        self.thumbprint = thumbprint.replace(":", "").lower()
        self.host_name = host_name
        self.url_path = host_url_path(datastore_name, path_of_flat_file)
        self._what = f"[{datastore_name}] {path_of_flat_file} on host {host_name}"
        self._size = size
        self._label = label
        self._allocated = list(allocated)
        self._ticket = ticket
        self._bs = max(1, block_size)
        stream_bytes = STREAM_BYTES if stream_bytes is None else stream_bytes
        self._stream_bytes = max(self._bs, stream_bytes // self._bs * self._bs)
        self._read_ahead = read_ahead
        self._timeout = timeout
        self._retries = max(1, retries)
        self._backoff = backoff
        self._lock = threading.Lock()
        self._starts: list[int] = []  # expected runs, sorted by start
        self._streams: list[_Stream] = []
        self._held: dict[int, bytes] = {}  # blocks read ahead for their readers
        self._held_bytes = 0
        self._taken: set[int] = set()  # expected blocks already served another way
        self._closed = False
        self.retried = 0  # reads that failed once and were tried again
        self.tickets = 0  # service tickets acquired (one per request)
        self.streams = 0  # GET requests sent for data

    @property
    def size(self) -> int:
        return self._size

    @property
    def label(self) -> str:
        return self._label

    def allocated_areas(self) -> list[Extent]:
        return list(self._allocated)

    @property
    def url(self) -> str:
        """The URL a ticket is acquired for (an IPv6 address in brackets)."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"https://{host}:{self.port}{self.url_path}"

    def expect(self, areas: Sequence[Extent]) -> None:
        """The areas the backup will read (block by block, ascending): they are read in
        streams of contiguous blocks, one ticket each."""
        blocks = blocks_touched(areas, self._bs, self._size)
        streams: list[_Stream] = []
        i = 0
        while i < len(blocks):
            j = i
            while j + 1 < len(blocks) and blocks[j + 1] == blocks[j] + 1:
                j += 1
            start, stop = blocks[i] * self._bs, min((blocks[j] + 1) * self._bs, self._size)
            for a in range(start, stop, self._stream_bytes):
                streams.append(_Stream(a, min(a + self._stream_bytes, stop)))
            i = j + 1
        with self._lock:
            old, self._streams = self._streams, streams
            self._starts = [s.pos for s in streams]
            self._held.clear()
            self._held_bytes = 0
            self._taken.clear()
        for s in old:
            self._close_stream(s)

    # --- connections ------------------------------------------------------------------------

    def _connect(self) -> http.client.HTTPSConnection:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # verified below: pinned by the vCenter's thumbprint
        conn = http.client.HTTPSConnection(self.address, self.port, timeout=self._timeout,
                                           context=ctx)
        conn.connect()
        self._check_peer(conn.sock)
        return conn

    def _check_peer(self, sock: socket.socket | None) -> None:
        why = pin_mismatch(sock, self.thumbprint,
                           f"host {self.host_name} ({self.address}:{self.port})")
        if why:
            raise TransportError(why)

    def _open(self, first: int, last: int
              ) -> tuple[http.client.HTTPSConnection, http.client.HTTPResponse | None, int]:
        """GET bytes first..last with a fresh ticket: (conn, response or None when the file
        ends before ``first``, the end of the bytes the file has)."""
        conn = self._connect()
        try:
            ticket = self._ticket(self.url)
            with self._lock:
                self.tickets += 1
                self.streams += 1
            conn.request("GET", self.url_path, headers={
                "Range": f"bytes={first}-{last}",
                "Cookie": f"{TICKET_COOKIE}={ticket}",
                "Accept": "application/octet-stream",
            })
            resp = conn.getresponse()
            if resp.status == 206:
                got = _range_start(resp.getheader("Content-Range"))
                if got is not None and got != first:
                    raise _Retryable(f"the host sent bytes from {got} where {first} was asked")
                length = resp.getheader("Content-Length")
                end = first + int(length) if length and length.isdigit() else last + 1
                return conn, resp, min(end, last + 1)
            if resp.status == 200:
                raise TransportError(range_ignored(self._what, first, last))
            if resp.status == 416:  # past the end of a short file: zeros
                conn.close()
                return conn, None, first
            body = resp.read(300)
            if resp.status in (401, 403):
                raise TransportError(f"reading {self._what}: the host refused the service "
                                     f"ticket (HTTP {resp.status})")
            if resp.status == 404:
                raise TransportError(f"reading {self._what}: the file does not exist on the "
                                     "datastore (HTTP 404)")
            text = " ".join(body.decode("utf-8", "replace").split())
            raise _Retryable(f"HTTP {resp.status} {resp.reason}" + (f": {text}" if text else ""))
        except BaseException:
            conn.close()
            raise

    @staticmethod
    def _close_stream(s: _Stream) -> None:
        if s.conn is not None:
            s.conn.close()
        s.conn = s.resp = None

    def _take(self, s: _Stream, n: int) -> bytes:
        """The next ``n`` bytes of stream ``s`` (zeros past the file's end); opens it (a new
        ticket) when it is not open. Retryable errors propagate; the stream is then closed."""
        if s.resp is None and s.pos < s.data_end:
            s.conn, s.resp, s.data_end = self._open(s.pos, s.end - 1)
            s.opened += 1
        want_data = max(0, min(n, s.data_end - s.pos))
        parts: list[bytes] = []
        got = 0
        try:
            while got < want_data:
                assert s.resp is not None
                piece = s.resp.read(min(want_data - got, CHUNK))
                if not piece:
                    raise _Retryable(f"the host closed the stream at byte {s.pos + got}")
                parts.append(piece)
                got += len(piece)
        except BaseException:
            self._close_stream(s)  # the next read opens it again at s.pos (a new ticket)
            raise
        s.pos += n
        if s.pos >= s.data_end:
            self._close_stream(s)
        data = b"".join(parts)
        return data + bytes(n - got) if got < n else data

    def fetch_whole(self, limit: int) -> bytes:
        """The whole file (a descriptor), at most ``limit + 1`` bytes of it, with one ticket."""
        last_error = ""
        for attempt in range(self._retries):
            conn: http.client.HTTPSConnection | None = None
            try:
                conn = self._connect()
                ticket = self._ticket(self.url)
                with self._lock:
                    self.tickets += 1
                conn.request("GET", self.url_path,
                             headers={"Cookie": f"{TICKET_COOKIE}={ticket}"})
                resp = conn.getresponse()
                if resp.status == 200:
                    return resp.read(limit + 1)
                if resp.status in (401, 403):
                    raise TransportError(f"reading {self._what}: the host refused the "
                                         f"service ticket (HTTP {resp.status})")
                if resp.status == 404:
                    raise TransportError(f"reading {self._what}: the file does not exist on "
                                         "the datastore (HTTP 404)")
                last_error = f"HTTP {resp.status} {resp.reason}"
            except (OSError, http.client.HTTPException) as exc:
                last_error = " ".join(str(exc).split()) or type(exc).__name__
            finally:
                if conn is not None:
                    conn.close()
            if attempt + 1 < self._retries:
                time.sleep(self._backoff * (2 ** attempt))
        raise TransportError(f"reading {self._what} failed after {self._retries} attempts: "
                             f"{last_error}")

    # --- reads --------------------------------------------------------------------------------

    def _stream_for(self, offset: int, length: int) -> _Stream | None:
        with self._lock:
            i = bisect.bisect_right(self._starts, offset) - 1
            if i < 0:
                return None
            s = self._streams[i]
            return s if offset + length <= s.end else None

    def _from_stream(self, s: _Stream, offset: int, length: int) -> bytes | None:
        with s.lock:
            with self._lock:
                held = self._held.pop(offset, None)
                if held is not None:
                    self._held_bytes -= len(held)
                    if len(held) == length:
                        return held
                    return None  # not the block it was held as: a request of its own
                if s.pos > offset:
                    return None  # passed already (a re-read): a request of its own
                if offset - s.pos + self._held_bytes > self._read_ahead:
                    self._taken.add(offset)  # too far ahead: a request of its own
                    return None
            while s.pos < offset:  # blocks of other readers: hold them for them
                start = s.pos
                block = self._take(s, min(self._bs - start % self._bs, offset - start))
                with self._lock:
                    if start in self._taken:
                        self._taken.discard(start)
                    else:
                        self._held[start] = block
                        self._held_bytes += len(block)
            return self._take(s, length)

    def _exact(self, offset: int, length: int) -> bytes:
        s = _Stream(offset, offset + length)
        try:
            return self._take(s, length)
        finally:
            self._close_stream(s)

    def read(self, offset: int, length: int) -> bytes:
        if self._closed:
            raise TransportError(f"reading {self._what}: the source is closed")
        if offset >= self._size or length <= 0:
            return b""
        length = min(length, self._size - offset)

        def attempt() -> bytes:
            s = self._stream_for(offset, length)
            data = self._from_stream(s, offset, length) if s is not None else None
            if data is None:
                data = self._exact(offset, length)
            return _pad(data, offset, length, self._size)

        def failed() -> None:
            with self._lock:
                self.retried += 1

        return retrying(f"{self._what} at byte {offset} ({length} bytes)", self._retries,
                        self._backoff, attempt, failed)

    def close(self) -> None:
        self._closed = True
        with self._lock:
            streams, self._streams, self._starts = self._streams, [], []
            self._held.clear()
            self._held_bytes = 0
        for s in streams:
            self._close_stream(s)

