"""DatastoreDiskSource against a small HTTPS server that misbehaves the ways real middleboxes
and servers do: ignoring Range (HTTP 200 with the whole file), answering a different range
than asked, failing now and then."""

from __future__ import annotations

import http.server
import random
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.vsphere.transport import DatastoreDiskSource, DatastoreEndpoint, TransportError
from tests.vsphere.proxy import make_certificate

SIZE = 4 << 20
DATA = random.Random(3).randbytes(SIZE - 1000)  # a short file: the disk's tail reads as zeros


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    mode = "ok"  # "ok" | "ignore-range" | "wrong-range" | "fail-first"
    seen: list[str]

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that drops the connection mid-answer (as the reader does on a 200 to a
        Range request) is expected here: no traceback on stderr."""


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        rng = self.headers["Range"]
        self.server.seen.append(rng)
        first, last = (int(x) for x in rng.removeprefix("bytes=").split("-"))
        mode = self.server.mode
        if mode == "fail-first" and self.server.seen.count(rng) == 1:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "ignore-range":
            self.send_response(200)
            self.send_header("Content-Length", str(len(DATA)))
            self.end_headers()
            self.wfile.write(DATA)
            return
        if first >= len(DATA):
            self.send_response(416)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = first + 512 if mode == "wrong-range" else first
        body = DATA[start:last + 1]
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{start + len(body) - 1}/{len(DATA)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_Server]:
    cert, key = make_certificate(tmp_path)
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.seen = []
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=10)


def source(srv: _Server) -> DatastoreDiskSource:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    endpoint = DatastoreEndpoint("127.0.0.1", srv.server_address[1], "cookie", ctx)
    return DatastoreDiskSource(endpoint, "DC0", "ds", "vm/disk-flat.vmdk", SIZE, "disk0", [],
                               backoff=0.0)


def read_all(src: DatastoreDiskSource) -> bytes:
    return b"".join(src.read(off, 1 << 20) for off in range(0, SIZE, 1 << 20))


@pytest.mark.parametrize("mode", ["ok", "fail-first"])
def test_reads_give_the_disk_whatever_the_server_does(server: _Server, mode: str) -> None:
    server.mode = mode
    src = source(server)
    try:
        assert read_all(src) == DATA + bytes(SIZE - len(DATA))
        assert src.retried == (4 if mode == "fail-first" else 0)
    finally:
        src.close()


def test_a_range_answered_with_200_fails_at_once(server: _Server) -> None:
    """Issue 13: a 200 with the whole file is never read (it used to be read up to the block,
    for every block); the read fails, naming the file and what the server did."""
    server.mode = "ignore-range"
    src = source(server)
    try:
        with pytest.raises(TransportError, match=r"\[ds\] vm/disk-flat.vmdk: .*bytes "
                           r"1048576-2097151 with HTTP 200 .*ignored Range"):
            src.read(1 << 20, 1 << 20)
        assert server.seen == ["bytes=1048576-2097151"]  # not tried again
    finally:
        src.close()


def test_a_reply_for_another_range_is_never_used(server: _Server) -> None:
    server.mode = "wrong-range"
    src = source(server)
    try:
        with pytest.raises(TransportError, match="sent bytes from 512 where 0 was asked"):
            src.read(0, 1 << 20)
    finally:
        src.close()
