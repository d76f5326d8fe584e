"""The CLI trusts the appliance's socket only when it is provably its own user's: an impostor
listening there first (another local user, here `nobody`) gets no request and no secret, and
`vmkeep appliance start` does not take it for the appliance.

The impostor is a small HTTP server that answers like an appliance (a valid handshake, `[]` to
everything else) and records every byte each connection brought, one JSON line per
connection when it closes. After a command, the test itself connects once and sends a sentinel
(``SENTINEL-n``, new each time): the server takes connections one by one, so once that line is
recorded, every earlier connection is too (no sleeping)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.client import ApplianceClient
from appliance.errors import SocketTrustError
from tests.appliance.lab import run_vmkeep
from tests.helpers import CliResult, poll, skip_unless_ci

NOBODY = 65534
NOGROUP = 65534
SECRET = "s3cret-Passw0rd-of-the-vcenter"
ENC_SECRET = "s3cret-encryption-passphrase"
SENTINEL = "SENTINEL"
OWNER = pwd.getpwuid(os.getuid()).pw_name

SERVER = r"""
import json, os, socket, sys
path, record = sys.argv[1], sys.argv[2]
hs = json.dumps({"api_version": 1, "supported_api_versions": [1], "appliance_version": "9",
                 "pid": os.getpid(), "home": "/nowhere",
                 "started": "2026-01-01T00:00:00Z"}).encode()
srv = socket.socket(socket.AF_UNIX)
srv.bind(path)
srv.listen(16)
open(record, "a").close()
open(record + ".ready", "w").close()
while True:
    conn, _ = srv.accept()
    got = buf = b""
    with conn:
        while chunk := conn.recv(65536):
            got += chunk
            buf += chunk
            while b"\r\n\r\n" in buf:
                head, rest = buf.split(b"\r\n\r\n", 1)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if len(rest) < length:
                    break
                buf = rest[length:]
                body = hs if b"/handshake" in head.split(b"\r\n")[0] else b"[]"
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(body) + body)
    with open(record, "a") as f:
        f.write(json.dumps(got.decode("latin-1")) + "\n")
"""


def need_root() -> None:
    if os.getuid() != 0 or not shutil.which("setpriv"):
        skip_unless_ci("needs root and setpriv to act as another user")


@dataclass
class Impostor:
    """A fake appliance listening on ``socket``; its connections' bytes in ``record``."""

    base: Path
    socket: Path
    record: Path
    proc: subprocess.Popen[bytes]
    seen: int = 0  # lines of the record already looked at

    @property
    def folder(self) -> Path:
        return self.socket.parent

    def connections(self) -> list[str]:
        """What each connection before the test's sentinel sent (in order)."""
        sentinel = f"{SENTINEL}-{self.seen}"
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(os.fspath(self.socket))
            s.sendall(sentinel.encode())
            s.shutdown(socket.SHUT_WR)
            s.settimeout(30)
            s.recv(1)  # the server closes the connection when it has read it

        def recorded() -> list[str] | None:
            lines = [json.loads(x) for x in self.record.read_text().splitlines()]
            return lines if lines and lines[-1] == sentinel else None

        lines = poll("the impostor to record the sentinel", recorded)
        new, self.seen = lines[self.seen:-1], len(lines)
        return new

    def env(self, home: Path) -> dict[str, str]:
        return {**os.environ, "VMKEEP_HOME": str(home), "VMKEEP_SOCKET": str(self.socket)}


@pytest.fixture
def base() -> Iterator[Path]:
    """A folder under /tmp that `nobody` can enter (pytest's tmp root is 0700)."""
    d = Path(tempfile.mkdtemp(prefix="vmkeep-trust-", dir="/tmp"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def start_impostor(base: Path, folder_mode: int, *, as_nobody: bool) -> Impostor:
    """The fake appliance in ``base/sock`` (mode ``folder_mode``), run as `nobody` (who then
    owns that folder) or as us."""
    folder, records = base / "sock", base / "records"
    folder.mkdir()
    records.mkdir()
    os.chmod(folder, folder_mode)
    prefix: list[str] = []
    if as_nobody:
        for d in (folder, records):
            os.chown(d, NOBODY, NOGROUP)
        prefix = ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOGROUP),
                  "--clear-groups"]
    record = records / "record"
    proc = subprocess.Popen([*prefix, "/usr/bin/python3", "-c", SERVER,
                             str(folder / "appliance.sock"), str(record)],
                            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ready = record.with_name("record.ready")

    def up() -> bool | None:
        if proc.poll() is not None:
            pytest.fail(f"the impostor exited: {proc.stderr.read() if proc.stderr else ''!r}")
        return True if ready.exists() else None

    poll("the impostor to listen", up)
    return Impostor(base, folder / "appliance.sock", record, proc)


@pytest.fixture
def impostors(base: Path) -> Iterator[list[Impostor]]:
    started: list[Impostor] = []
    yield started
    for imp in started:
        imp.proc.kill()
        imp.proc.wait(timeout=30)
        if imp.proc.stderr:
            imp.proc.stderr.close()


def commands(base: Path) -> dict[str, tuple[list[str], str]]:
    """Commands an administrator runs, two of them with a secret: args and standard input."""
    pw_file = base / "enc-password"
    pw_file.write_text(ENC_SECRET + "\n")
    os.chmod(pw_file, 0o600)
    return {
        "repo list": (["repo", "list"], ""),
        "vcenter add": (["vcenter", "add", "vc01", "--host", "127.0.0.1", "--user", "admin",
                         "--password-stdin", "--insecure"], SECRET + "\n"),
        "repo add": (["repo", "add", "main", "--path", str(base / "repo"),
                      "--encryption-password-file", str(pw_file)], ""),
    }


def assert_refused(r: CliResult, *words: str) -> None:
    assert r.code == 13, (r.code, r.out, r.err)
    assert r.out == ""
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmkeep: error: "), r.err
    for word in words:
        assert word in r.err, r.err


def test_another_users_server_in_a_folder_of_theirs_gets_nothing(
        base: Path, impostors: list[Impostor]) -> None:
    need_root()
    imp = start_impostor(base, 0o755, as_nobody=True)
    impostors.append(imp)
    home = base / "home"
    for name, (args, stdin) in commands(base).items():
        r = run_vmkeep(imp.env(home), *args, stdin=stdin)
        assert_refused(r, f"folder {imp.folder} belongs to user nobody (uid {NOBODY})",
                       "VMKEEP_SOCKET", "run vmkeep as nobody")
        assert imp.connections() == [], name  # not even a connect

    r = run_vmkeep(imp.env(home), "appliance", "start")
    assert_refused(r, "user nobody (uid 65534)")
    assert "already runs" not in r.err
    assert not home.exists()  # no appliance was started either
    assert imp.connections() == []


def test_another_users_server_behind_a_socket_that_looks_ours_gets_nothing(
        base: Path, impostors: list[Impostor]) -> None:
    """The socket and its folder pass for ours (root made them so), but the process that
    listens is `nobody`'s: the connection's peer credentials give it away before a byte is
    sent over it."""
    need_root()
    imp = start_impostor(base, 0o755, as_nobody=True)
    impostors.append(imp)
    os.chown(imp.folder, 0, 0)
    os.chown(imp.socket, 0, 0)
    home = base / "home"
    for name, (args, stdin) in commands(base).items():
        r = run_vmkeep(imp.env(home), *args, stdin=stdin)
        assert_refused(r, f"the process serving the appliance socket {imp.socket} (pid "
                       f"{imp.proc.pid}) belongs to user nobody (uid {NOBODY})",
                       "run vmkeep as nobody")
        seen = imp.connections()
        assert seen and set(seen) == {""}, (name, seen)  # connected, then sent nothing

    r = run_vmkeep(imp.env(home), "appliance", "start")
    assert_refused(r, "user nobody (uid 65534)")
    assert "already runs" not in r.err
    assert not home.exists()
    assert set(imp.connections()) <= {""}


@pytest.mark.parametrize("mode", [0o1777, 0o775, 0o757], ids=["sticky-world", "group",
                                                              "other"])
def test_a_folder_others_may_write_is_refused_even_with_our_own_server(
        base: Path, impostors: list[Impostor], mode: int) -> None:
    """Our own server, our own socket, but in a folder where anyone else could have put one
    first: refused before connecting."""
    imp = start_impostor(base, mode, as_nobody=False)
    impostors.append(imp)
    for name, (args, stdin) in commands(base).items():
        r = run_vmkeep(imp.env(base / "home"), *args, stdin=stdin)
        assert_refused(r, f"folder {imp.folder} (owner {OWNER}, uid {os.getuid()}, mode "
                       f"{mode:04o}) may be written by other users", "VMKEEP_SOCKET")
        # chmod is the way out of a folder shared by mistake, not of a sticky /tmp-like one
        assert ("chmod go-w" in r.err) == (not mode & stat.S_ISVTX), r.err
        assert imp.connections() == [], name

    try:
        r = run_vmkeep(imp.env(base / "home"), "appliance", "start")
    finally:  # an appliance wrongly started would outlive the test
        run_vmkeep(imp.env(base / "home"), "appliance", "stop")
    assert_refused(r, "may be written by other users")
    assert not (base / "home").exists()


def test_our_own_server_in_our_own_folder_is_talked_to(
        base: Path, impostors: list[Impostor]) -> None:
    """The control: the same fake server, ours, in a folder only we can write, gets the
    requests (so the refusals above are the checks', not a fake that cannot answer)."""
    imp = start_impostor(base, 0o700, as_nobody=False)
    impostors.append(imp)
    r = run_vmkeep(imp.env(base / "home"), "repo", "list")
    assert r.code == 0, r.err
    assert "no repositories" in r.out
    sent = "".join(imp.connections())
    assert "GET /v1/handshake" in sent and "GET /v1/repositories" in sent


def test_the_client_raises_socket_trust_with_its_code(
        base: Path, impostors: list[Impostor]) -> None:
    need_root()
    imp = start_impostor(base, 0o755, as_nobody=True)
    impostors.append(imp)
    os.chown(imp.folder, 0, 0)
    os.chown(imp.socket, 0, 0)
    with (ApplianceClient(imp.socket, timeout=10) as client,
          pytest.raises(SocketTrustError) as caught):
        client.handshake()
    assert (caught.value.code, caught.value.exit_code) == ("socket_trust", 13)
    assert imp.connections() == [""]


def test_the_appliance_does_not_serve_in_a_folder_others_may_write(base: Path) -> None:
    """Run in the foreground (as systemd does) with its socket in a shared folder, the
    appliance refuses to start rather than serve where no client will trust it."""
    shared = base / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    env = {**os.environ, "VMKEEP_HOME": str(base / "home"),
           "VMKEEP_SOCKET": str(shared / "appliance.sock")}
    proc = subprocess.run([sys.executable, "-m", "appliance.daemon"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 13, proc.stderr
    assert f"folder {shared}" in proc.stderr and "may be written by other users" in proc.stderr
    assert not (shared / "appliance.sock").exists()


def test_start_refuses_a_home_whose_lock_file_is_another_users(base: Path) -> None:
    """A home whose lock file (the running appliance's pid) is `nobody`'s is that user's:
    `appliance start` neither reports its appliance nor starts one of ours over it."""
    need_root()
    home, own = base / "home", base / "own"
    home.mkdir(mode=0o700)
    own.mkdir(mode=0o700)
    lock = home / "appliance.lock"
    lock.write_text("4242\n")
    os.chown(lock, NOBODY, NOGROUP)
    env = {**os.environ, "VMKEEP_HOME": str(home), "VMKEEP_SOCKET": str(own / "a.sock")}
    try:
        r = run_vmkeep(env, "appliance", "start")
    finally:  # an appliance wrongly started would outlive the test
        run_vmkeep(env, "appliance", "stop")
    assert_refused(r, f"the appliance home {home} (its lock file {lock}) belongs to user "
                   f"nobody (uid {NOBODY})", "run vmkeep as nobody")
    assert sorted(p.name for p in home.iterdir()) == ["appliance.lock"]  # nothing started
    assert not (own / "a.sock").exists()
