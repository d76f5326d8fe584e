"""A TLS-terminating HTTP/1.1 reverse proxy for tests, in front of a vcsim instance: it sees
what the server side of vSphere sees.

Clients connect to the proxy (127.0.0.1, a free port) with vmkeep's own
``appliance.vsphere.session.connect(proxy.host, proxy.port, …, insecure=True)``; SOAP calls
(POST /sdk) and datastore transfers (GET/PUT /folder/…) are then forwarded to vcsim over HTTPS
(no verification upstream) with their method, path, headers (Cookie, Range, …) and body. Each
client connection is kept alive and has its own kept-alive upstream connection; the upstream
status (206 for Range reads) and headers come back unchanged, except hop-by-hop headers and the
framing: bodies are forwarded with a Content-Length.

It counts, thread-safely, the GET /folder/ requests and the response body bytes it forwarded
for them (in total and per path), and the SOAP methods called. With ``fail_every=N`` it fails
every Nth GET /folder/ request it receives, either by closing the client connection abruptly
(TCP reset, no reply) or by answering 503, and counts these drops. A retry of a dropped request
(same path and Range) is never dropped again unless ``drop_retries`` is set, so a client that
retries gets through in a bounded number of attempts: slower, never wrong.

The proxy presents a throwaway self-signed certificate made with ``cryptography``. ``stop``
shuts every client and upstream socket and joins every thread it started, with a deadline;
threads still alive after it are reported as an error rather than leaked silently.
"""

from __future__ import annotations

import datetime
import http.client
import http.server
import ipaddress
import re
import socket
import socketserver
import ssl
import struct
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

FailMode = Literal["close", "503"]

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "proxy-connection",
})
FOLDER = "/folder/"
IDLE_TIMEOUT = 30.0  # a client connection idle this long is closed
UPSTREAM_TIMEOUT = 30.0
STOP_DEADLINE = 10.0
THREAD_PREFIX = "vmkeep-test-proxy"
_SOAP_METHOD = re.compile(rb"<(?:[\w.-]+:)?Body\b[^>]*>\s*<(?:[\w.-]+:)?([A-Za-z_][\w.]*)")


def make_certificate(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A throwaway self-signed certificate for ``host`` (an IP address): (cert, key) PEMs."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vmkeep test proxy")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "proxy-cert.pem", directory / "proxy-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass(frozen=True)
class PathCount:
    requests: int = 0
    body_bytes: int = 0


@dataclass(frozen=True)
class ProxyStats:
    """What the proxy saw since it started (or since ``reset``)."""

    folder_gets: int = 0  # GET /folder/… requests received, dropped ones included
    folder_bytes: int = 0  # body bytes of the GET /folder/… replies forwarded to clients
    drops: int = 0  # GET /folder/… requests failed on purpose (closed or 503)
    by_path: Mapping[str, PathCount] = field(default_factory=dict)  # forwarded, per URL path
    soap_calls: Mapping[str, int] = field(default_factory=dict)  # SOAP method -> calls


class _Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.folder_gets = 0
        self.folder_bytes = 0
        self.drops = 0
        self.by_path: dict[str, PathCount] = {}
        self.soap: Counter[str] = Counter()
        self.dropped_keys: set[tuple[str, str]] = set()


class _Server(socketserver.TCPServer):
    """Accepts on 127.0.0.1; one named thread per client connection, all tracked."""

    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, proxy: CountingProxy) -> None:
        self.proxy = proxy
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        t = threading.Thread(target=self._serve_connection, args=(request, client_address),
                             name=f"{THREAD_PREFIX}-conn", daemon=True)
        if not self.proxy._track_thread(t, request):
            self.shutdown_request(request)
            return
        t.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception as exc:
            self.proxy._note_error(exc)
        finally:
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # errors are noted in _serve_connection; nothing is printed


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _Server

    def setup(self) -> None:
        proxy = self.server.proxy
        raw: socket.socket = self.request
        raw.settimeout(IDLE_TIMEOUT)
        tls = proxy._wrap(raw)  # registered before the (possibly blocking) handshake
        self.request = tls
        try:
            tls.do_handshake()
        except BaseException:
            proxy._untrack_socket(tls)
            tls.close()
            raise
        self._upstream: http.client.HTTPSConnection | None = None
        self._upstream_used = 0
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self._close_upstream()
            self.server.proxy._untrack_socket(self.request)
            self.request.close()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # --- forwarding -----------------------------------------------------------------

    def _forward(self) -> None:
        proxy = self.server.proxy
        body = self._read_body()
        url_path = urllib.parse.urlsplit(self.path).path
        is_folder_get = self.command == "GET" and url_path.startswith(FOLDER)
        if is_folder_get:
            fail = proxy._count_folder_get(self.path, self.headers.get("Range", ""))
            if fail == "close":
                self._drop_connection()
                return
            if fail == "503":
                self._reply_503()
                return
        elif self.command == "POST" and body:
            proxy._count_soap(body)
        try:
            status, reason, headers, payload = self._upstream_request(body)
        except (OSError, http.client.HTTPException) as exc:
            proxy._note_error(exc)
            self._reply_simple(502, "Bad Gateway", f"upstream failed: {exc}".encode())
            return
        self.send_response_only(status, reason)
        no_body = self.command == "HEAD" or status in (204, 304) or 100 <= status < 200
        for name, value in headers:
            if name.lower() == "content-length" and not no_body:
                continue
            self.send_header(name, value)
        if not no_body:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if not no_body:
            self.wfile.write(payload)
        if is_folder_get:
            proxy._count_folder_bytes(url_path, len(payload))

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = do_OPTIONS = _forward

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length", "0") or "0")
        return self.rfile.read(length) if length > 0 else b""

    def _forward_headers(self) -> list[tuple[str, str]]:
        listed = {t.strip().lower() for t in self.headers.get("Connection", "").split(",")}
        return [(k, v) for k, v in self.headers.items()
                if k.lower() not in HOP_BY_HOP and k.lower() not in listed
                and k.lower() != "content-length"]

    def _upstream_request(self, body: bytes
                          ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        headers = self._forward_headers()
        for attempt in range(2):
            reused = self._upstream is not None and self._upstream_used > 0
            conn = self._upstream_conn()
            try:
                conn.putrequest(self.command, self.path, skip_host=True,
                                skip_accept_encoding=True)
                for name, value in headers:
                    conn.putheader(name, value)
                if body or self.command in ("POST", "PUT"):
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body or None)
                resp = conn.getresponse()
                payload = resp.read()
            except (OSError, http.client.HTTPException):
                self._close_upstream()
                if attempt == 0 and reused:
                    continue  # the kept-alive upstream connection went stale: once more
                raise
            self._upstream_used += 1
            if resp.will_close:
                self._close_upstream()
            kept = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP]
            return resp.status, resp.reason, kept, payload
        raise http.client.HTTPException("unreachable")  # pragma: no cover

    def _upstream_conn(self) -> http.client.HTTPSConnection:
        if self._upstream is None:
            proxy = self.server.proxy
            conn = http.client.HTTPSConnection(proxy.upstream_host, proxy.upstream_port,
                                               timeout=UPSTREAM_TIMEOUT,
                                               context=proxy._upstream_ctx)
            conn.connect()
            proxy._track_upstream(conn)
            self._upstream = conn
            self._upstream_used = 0
        return self._upstream

    def _close_upstream(self) -> None:
        conn, self._upstream = getattr(self, "_upstream", None), None
        if conn is not None:
            self.server.proxy._untrack_socket(conn.sock)
            conn.close()

    # --- injected failures ----------------------------------------------------------

    def _drop_connection(self) -> None:
        """Close the client connection without a reply: a TCP reset, no TLS goodbye."""
        self.close_connection = True
        with suppress(OSError):
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))

    def _reply_503(self) -> None:
        self._reply_simple(503, "Service Unavailable", b"injected failure: try again\n")

    def _reply_simple(self, status: int, reason: str, payload: bytes) -> None:
        self.send_response_only(status, reason)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class CountingProxy:
    """The proxy; use as a context manager (or ``start``/``stop``)."""

    def __init__(self, upstream_host: str, upstream_port: int, cert_dir: Path, *,
                 fail_every: int = 0, fail_mode: FailMode = "close",
                 drop_retries: bool = False) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        cert, key = make_certificate(cert_dir)
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.load_cert_chain(cert, key)
        self._upstream_ctx = ssl.create_default_context()
        self._upstream_ctx.check_hostname = False
        self._upstream_ctx.verify_mode = ssl.CERT_NONE
        self._c = _Counters()
        self._fail_every = 0
        self._fail_mode: FailMode = "close"
        self._drop_retries = drop_retries
        self.set_failures(fail_every, fail_mode)
        self._lock = threading.Lock()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._sockets: set[socket.socket] = set()
        self._errors: list[str] = []
        self._server: _Server | None = None
        self._accept: threading.Thread | None = None
        self.host = "127.0.0.1"
        self.port = 0

    # --- control --------------------------------------------------------------------

    def start(self) -> CountingProxy:
        self._server = _Server(self)
        self.port = int(self._server.server_address[1])
        self._accept = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"{THREAD_PREFIX}-accept", daemon=True)
        self._accept.start()
        return self

    def stop(self) -> None:
        """Stop accepting, cut every connection, join every thread (bounded)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()  # returns once serve_forever has left its loop
        server.server_close()
        with self._lock:
            self._stopping = True
            sockets = list(self._sockets)
            threads = [*self._threads, *([self._accept] if self._accept else [])]
        for s in sockets:
            with suppress(OSError):
                socket.socket.shutdown(s, socket.SHUT_RDWR)  # the fd, not the TLS layer
        deadline = time.monotonic() + STOP_DEADLINE
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in threads if t.is_alive()]
        if alive:
            raise RuntimeError(f"proxy threads still running {STOP_DEADLINE} s after stop: "
                               f"{alive}")

    def __enter__(self) -> CountingProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def set_failures(self, every: int, mode: FailMode = "close") -> None:
        """Fail every ``every``-th GET /folder/ request from now on (0: none)."""
        if every < 0 or mode not in ("close", "503"):
            raise ValueError(f"bad failure setting {every!r}, {mode!r}")
        with self._c.lock:
            self._fail_every = every
            self._fail_mode = mode

    def stats(self) -> ProxyStats:
        c = self._c
        with c.lock:
            return ProxyStats(c.folder_gets, c.folder_bytes, c.drops,
                              MappingProxyType(dict(c.by_path)),
                              MappingProxyType(dict(c.soap)))

    def reset(self) -> None:
        """Zero the counters (the failure setting stays)."""
        c = self._c
        with c.lock:
            c.folder_gets = c.folder_bytes = c.drops = 0
            c.by_path.clear()
            c.soap.clear()
            c.dropped_keys.clear()

    @property
    def errors(self) -> list[str]:
        """Connection errors seen (client resets after a drop are normal)."""
        with self._lock:
            return list(self._errors)

    # --- used by the server and handlers --------------------------------------------

    def _count_folder_get(self, path: str, range_header: str) -> FailMode | None:
        c = self._c
        with c.lock:
            c.folder_gets += 1
            every = self._fail_every
            if not every or c.folder_gets % every:
                return None
            key = (path, range_header)
            if key in c.dropped_keys and not self._drop_retries:
                return None
            c.dropped_keys.add(key)
            c.drops += 1
            return self._fail_mode

    def _count_folder_bytes(self, url_path: str, n: int) -> None:
        c = self._c
        with c.lock:
            c.folder_bytes += n
            old = c.by_path.get(url_path, PathCount())
            c.by_path[url_path] = PathCount(old.requests + 1, old.body_bytes + n)

    def _count_soap(self, body: bytes) -> None:
        m = _SOAP_METHOD.search(body[:4096])
        if m:
            with self._c.lock:
                self._c.soap[m.group(1).decode("ascii", "replace")] += 1

    def _track_thread(self, t: threading.Thread, raw: socket.socket) -> bool:
        with self._lock:
            if self._stopping:
                return False
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
            self._sockets.add(raw)
            return True

    def _wrap(self, raw: socket.socket) -> ssl.SSLSocket:
        with self._lock:
            self._sockets.discard(raw)
            if self._stopping:
                raw.close()
                raise ConnectionAbortedError("the proxy is stopping")
            tls = self._tls.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            self._sockets.add(tls)
        return tls

    def _track_upstream(self, conn: http.client.HTTPSConnection) -> None:
        with self._lock:
            if self._stopping:
                conn.close()
                raise ConnectionAbortedError("the proxy is stopping")
            if conn.sock is not None:
                self._sockets.add(conn.sock)

    def _untrack_socket(self, s: socket.socket | None) -> None:
        if s is not None:
            with self._lock:
                self._sockets.discard(s)

    def _note_error(self, exc: BaseException) -> None:
        with self._lock:
            if len(self._errors) < 100:
                self._errors.append(f"{type(exc).__name__}: {exc}")


@contextmanager
def counting_proxy(upstream_host: str, upstream_port: int, cert_dir: Path,
                   **kw: Any) -> Iterator[CountingProxy]:
    """A started proxy, stopped (all threads joined) on exit."""
    with CountingProxy(upstream_host, upstream_port, cert_dir, **kw) as proxy:
        yield proxy
