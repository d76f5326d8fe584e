"""Bad requests to a running appliance (started by the CLI, served by uvicorn on its Unix
socket) get a JSON error in the API's form, never a plain-text 500, and a body too large is
refused before it is read: a raw HTTP client over the socket, as any program could send."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.appliance.lab import run_vmkeep

MiB = 1 << 20


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, object]:
        """The body as the API's ErrorBody (code, message, exit_code)."""
        assert self.headers.get("content-type") == "application/json", self.headers
        doc = json.loads(self.body)
        assert isinstance(doc, dict) and set(doc) == {"code", "message", "exit_code"}, doc
        return doc


@dataclass
class Sent:
    bytes: int = 0


def parse(data: bytes) -> Reply:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip()
               for k, _, v in (line.partition(":") for line in lines[1:])}
    return Reply(status, headers, body[:int(headers.get("content-length", len(body)))])


def request(sock_path: Path, head: bytes, body: Iterable[bytes], sent: Sent) -> Reply:
    """Send ``head``, then the body pieces from a thread (stopping when the appliance closes
    the connection), and read the reply meanwhile."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(os.fspath(sock_path))
    s.settimeout(30)

    def send_body() -> None:
        try:
            for piece in body:
                s.sendall(piece)
                sent.bytes += len(piece)
        except OSError:
            pass  # the appliance answered and closed: the rest is never sent

    s.sendall(head)
    sender = threading.Thread(target=send_body, daemon=True)
    sender.start()
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass  # closed with our unsent body still on its way; the reply came first
    finally:
        s.shutdown(socket.SHUT_RDWR)
        s.close()
        sender.join(timeout=30)
    assert data, "no reply"
    return parse(data)


def post(sock_path: Path, path: str, doc: object) -> Reply:
    body = json.dumps(doc).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: appliance\r\nContent-Type: application/json\r\n"
            f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    return request(sock_path, head, [body], Sent())


@pytest.fixture(scope="module")
def sock() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="vmkeep-limits-", dir="/tmp"))
    env = {**os.environ, "VMKEEP_HOME": str(root / "home")}
    env.pop("VMKEEP_SOCKET", None)
    r = run_vmkeep(env, "appliance", "start")
    assert r.code == 0, r.err
    try:
        yield root / "home" / "appliance.sock"
    finally:
        run_vmkeep(env, "appliance", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_a_16_mib_body_is_refused_413_without_being_read(sock: Path) -> None:
    """Headers say 16 MiB; only 64 KiB follow, and the answer comes anyway: the appliance
    decided by the Content-Length and never waited for the rest."""
    head = (b"POST /v1/repositories HTTP/1.1\r\nHost: appliance\r\nContent-Type: "
            b"application/json\r\nContent-Length: 16777216\r\n\r\n")
    sent = Sent()
    reply = request(sock, head, [b"x" * 65536], sent)
    assert reply.status == 413
    err = reply.error()
    assert err["code"] == "too_large" and err["exit_code"] == 4
    assert "16777216" in str(err["message"]) and "1048576" in str(err["message"])


def test_a_chunked_body_is_cut_off_once_past_the_limit(sock: Path) -> None:
    """No Content-Length: the body streams in chunks, up to 16 MiB if the appliance kept
    reading; it answers 413 once past 1 MiB and closes, so most is never sent."""
    def chunks() -> Iterator[bytes]:
        piece = b"x" * 65536
        for _ in range(16 * MiB // len(piece)):
            yield b"%x\r\n" % len(piece) + piece + b"\r\n"
        yield b"0\r\n\r\n"

    head = (b"POST /v1/jobs HTTP/1.1\r\nHost: appliance\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    sent = Sent()
    reply = request(sock, head, chunks(), sent)
    assert reply.status == 413, reply
    assert reply.error()["code"] == "too_large"
    assert sent.bytes < 8 * MiB, f"{sent.bytes} bytes were taken before the answer"


@pytest.mark.parametrize("path", ["/srv/vmkeep/a\0b", "/etc", "/etc/", "/", "/proc",
                                  "/var/../usr", "/srv/vmkeep/\x1b[31mred", "relative/repo"])
def test_a_bad_repository_path_is_422_json(sock: Path, path: str) -> None:
    reply = post(sock, "/v1/repositories", {"name": "main", "path": path})
    assert reply.status == 422, reply
    err = reply.error()
    assert err["code"] == "bad_input" and err["exit_code"] == 4
    assert repr(path) in str(err["message"]), err  # the value, escaped, and why
    # Nothing was added.
    listing = request(sock, b"GET /v1/repositories HTTP/1.1\r\nHost: a\r\nConnection: "
                            b"close\r\n\r\n", [], Sent())
    assert listing.status == 200 and json.loads(listing.body) == []


@pytest.mark.parametrize("name", ["", " ", "a\nb", "\x1b[2J", "x" * 81, "nul\0"])
def test_a_bad_name_is_422_json(sock: Path, name: str) -> None:
    reply = post(sock, "/v1/repositories", {"name": name, "path": "/srv/vmkeep/main"})
    assert reply.status == 422, reply
    assert reply.error()["code"] == "bad_input"


@pytest.mark.parametrize("doc", [
    {"repository": "main", "keep_days": 1e9}, {"repository": "main", "keep_last": 10**12},
])
def test_numbers_out_of_range_are_422_json(sock: Path, doc: dict[str, object]) -> None:
    reply = post(sock, "/v1/prune", doc)
    assert reply.status == 422, reply
    assert reply.error()["code"] == "bad_input"
