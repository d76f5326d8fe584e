"""HostDiskSource against a small HTTPS "ESXi host" that takes each ticket once: the engine's
reader threads (blocks in ascending order, in any interleaving) are served from a few long
streams, one ticket each; a stream dropped midway is opened again where it stopped (a new
ticket); blocks outside the expected runs get a request of their own; the certificate is
pinned by SHA-1."""

from __future__ import annotations

import hashlib
import http.server
import random
import ssl
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from appliance.source import Extent
from appliance.vsphere.host_transport import HostDiskSource
from appliance.vsphere.transport import TransportError
from tests.vsphere.proxy import make_certificate

BS = 256 << 10
SIZE = 12 << 20
DATA = random.Random(7).randbytes(SIZE - 300_000)  # a short file: the tail reads as zeros


class _Host(http.server.ThreadingHTTPServer):
    daemon_threads = True
    issued: set[str]
    used: list[str]
    ranges: list[str]
    drop_after: int  # > 0: the first stream is cut after this many bytes
    lock: threading.Lock


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Host

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        cookie = self.headers.get("Cookie", "")
        ticket = cookie.removeprefix("vmware_cgi_ticket=")
        with self.server.lock:
            ok = ticket in self.server.issued and ticket not in self.server.used
            self.server.used.append(ticket)
        if not ok or "dcPath" in self.path:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        rng = self.headers["Range"]
        self.server.ranges.append(rng)
        first, last = (int(x) for x in rng.removeprefix("bytes=").split("-"))
        if first >= len(DATA):
            self.send_response(416)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = DATA[first:last + 1]
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {first}-{first + len(body) - 1}/{len(DATA)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with self.server.lock:
            cut, self.server.drop_after = self.server.drop_after, 0
        self.wfile.write(body[:cut] if cut else body)
        if cut:
            self.close_connection = True


@pytest.fixture
def host(tmp_path: Path) -> Iterator[tuple[_Host, str]]:
    cert, key = make_certificate(tmp_path)
    der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(Encoding.DER)
    srv = _Host(("127.0.0.1", 0), _Handler)
    srv.issued, srv.used, srv.ranges, srv.drop_after = set(), [], [], 0
    srv.lock = threading.Lock()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv, hashlib.sha1(der).hexdigest()
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=10)


def source(srv: _Host, thumbprint: str, **kw: int) -> HostDiskSource:
    n = iter(range(1_000_000))

    def ticket(url: str) -> str:
        assert url.startswith(f"https://127.0.0.1:{srv.server_address[1]}/folder/")
        t = f"t{next(n)}"
        srv.issued.add(t)
        return t

    return HostDiskSource("127.0.0.1", srv.server_address[1], thumbprint, "esx1", "ds",
                          "vm/disk-flat.vmdk", SIZE, "disk0", [], ticket, block_size=BS,
                          backoff=0, **kw)


def read_like_the_engine(src: HostDiskSource, blocks: list[int]) -> dict[int, bytes]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = pool.map(lambda b: (b, src.read(b * BS, min(BS, SIZE - b * BS))), blocks)
        return dict(got)


def want(b: int) -> bytes:
    data = DATA[b * BS:(b + 1) * BS]
    return data + bytes(min(BS, SIZE - b * BS) - len(data))


def test_a_few_streams_one_ticket_each(host: tuple[_Host, str]) -> None:
    srv, thumb = host
    src = source(srv, thumb, stream_bytes=4 << 20)
    runs = [Extent(0, 5 << 20), Extent(8 << 20, 4 << 20)]  # 20 + 16 blocks
    src.expect(runs)
    blocks = [*range(0, 20), *range(32, 48)]
    try:
        got = read_like_the_engine(src, blocks)
    finally:
        src.close()
    assert all(got[b] == want(b) for b in blocks)
    # 5 MiB in streams of 4 + 1 MiB; the second run: 4 MiB, mostly past the file's end
    assert srv.ranges == sorted(srv.ranges, key=lambda r: int(r[6:].split("-")[0]))
    assert len(srv.used) == len(set(srv.used)) == src.tickets == src.streams <= 3
    assert src.retried == 0


def test_a_dropped_stream_goes_on_where_it_stopped(host: tuple[_Host, str]) -> None:
    srv, thumb = host
    srv.drop_after = (3 << 20) + 1000  # mid-block
    src = source(srv, thumb)
    src.expect([Extent(0, 8 << 20)])
    try:
        got = read_like_the_engine(src, list(range(32)))
        extra = src.read(5 * BS, BS)  # a block read again: a request of its own
    finally:
        src.close()
    assert all(got[b] == want(b) for b in range(32)) and extra == want(5)
    assert src.retried >= 1
    assert len(srv.used) == len(set(srv.used)) == src.tickets == 3
    assert srv.ranges[1].startswith(f"bytes={3 << 20}-")  # from the block that broke
    assert srv.ranges[2] == f"bytes={5 * BS}-{6 * BS - 1}"


def test_a_read_far_ahead_is_served_alone_and_not_held(host: tuple[_Host, str]) -> None:
    """Read-ahead for other readers is bounded: a block too far past the stream gets its own
    request, and the stream drops it when it passes (nothing is held for nobody)."""
    srv, thumb = host
    src = source(srv, thumb, read_ahead=1 << 20)
    src.expect([Extent(0, 8 << 20)])
    try:
        assert src.read(30 * BS, BS) == want(30)
        assert [src.read(b * BS, BS) for b in range(32)] == [want(b) for b in range(32)]
        assert src._held == {} and src._held_bytes == 0
    finally:
        src.close()
    assert src.tickets == 2 and srv.ranges[0] == f"bytes={30 * BS}-{31 * BS - 1}"


def test_another_certificate_is_refused_before_a_ticket(host: tuple[_Host, str]) -> None:
    srv, _thumb = host
    src = source(srv, "12" * 20)
    src.expect([Extent(0, SIZE)])
    try:
        with pytest.raises(TransportError, match=r"SHA-1 .* the vCenter reports 12:12:"):
            src.read(0, BS)
    finally:
        src.close()
    assert srv.used == [] and src.tickets == 0
