"""`vmkeep appliance start|stop|status` and the socket's protection, with real processes:
the appliance is started detached by the CLI, as an admin would, and stopped in teardown."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.client import ApplianceClient
from appliance.errors import ApplianceNotRunningError
from appliance.process import process_alive
from tests.appliance.lab import run_vmkeep
from tests.helpers import REPO_ROOT, CliResult, poll, skip_unless_ci

VMKEEP = [sys.executable, "-m", "appliance.cli"]
NOBODY = 65534
PROBE = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print("connect:", type(exc).__name__); sys.exit(0)
try:
    s.sendall(b"GET /v1/handshake HTTP/1.1\\r\\nHost: appliance\\r\\nConnection: close\\r\\n\\r\\n")
except OSError as exc:  # the appliance may close the connection before the request is sent
    print("send:", type(exc).__name__); sys.exit(0)
s.settimeout(20)
data = b""
try:
    while chunk := s.recv(65536):
        data += chunk
except OSError as exc:
    print("recv:", type(exc).__name__)
print("reply:", repr(data[:40]))
"""


@dataclass
class Appliance:
    home: Path
    env: dict[str, str]

    @property
    def socket(self) -> Path:
        return Path(self.env.get("VMKEEP_SOCKET") or self.home / "appliance.sock")

    def cli(self, *args: str) -> CliResult:
        return run_vmkeep(self.env, "appliance", *args)

    def pid(self) -> int:
        with ApplianceClient(self.socket) as client:
            return client.handshake().pid


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder every user can traverse (not under pytest's 0700 tmp root)."""
    d = Path(tempfile.mkdtemp(prefix="vmkeep-appl-", dir="/tmp"))
    os.chmod(d, 0o711)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def appliance(shared_dir: Path) -> Iterator[Appliance]:
    home = shared_dir / "home"
    env = {**os.environ, "VMKEEP_HOME": str(home)}
    env.pop("VMKEEP_SOCKET", None)
    a = Appliance(home, env)
    try:
        yield a
    finally:
        a.cli("stop")


def test_start_status_stop(appliance: Appliance) -> None:
    a = appliance
    r = a.cli("status")
    assert r.code == 3 and r.out.startswith("not running")
    r = a.cli("start")
    assert r.code == 0, r.err
    assert "started the appliance" in r.err
    pid = a.pid()  # it answers as soon as start returned
    assert stat.S_IMODE(a.home.stat().st_mode) == 0o700
    assert stat.S_IMODE(a.socket.stat().st_mode) == 0o600
    r = a.cli("start")
    assert r.code == 0 and f"already runs for {a.home} (pid {pid})" in r.err
    r = a.cli("status", "--json")
    assert r.code == 0 and f'"pid": {pid}' in r.out and '"running": true' in r.out
    r = a.cli("stop")
    assert r.code == 0 and f"stopped the appliance (pid {pid})" in r.err
    assert not a.socket.exists()
    assert not process_alive(pid)
    r = a.cli("status")
    assert r.code == 3
    assert a.cli("stop").code == 0  # stopping a stopped appliance is fine


def test_the_socket_is_0600_from_the_moment_it_exists(appliance: Appliance) -> None:
    a = appliance
    modes: list[int] = []
    done = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + 60
        while not done.is_set() and time.monotonic() < deadline:
            try:
                modes.append(stat.S_IMODE(os.lstat(a.socket).st_mode))
                return
            except FileNotFoundError:
                continue

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert a.cli("start").code == 0
    finally:
        done.set()
        watcher.join()
    assert modes == [0o600]


def nobody(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY),
                           "--clear-groups", "/usr/bin/python3", *args], capture_output=True,
                          text=True, timeout=60)


def test_another_user_cannot_use_the_appliance(appliance: Appliance,
                                               shared_dir: Path) -> None:
    if os.getuid() != 0 or not shutil.which("setpriv"):
        skip_unless_ci("needs root and setpriv to act as another user")
    a = appliance
    sock = shared_dir / "appliance.sock"  # in a folder the other user can traverse
    a.env["VMKEEP_SOCKET"] = str(sock)
    assert a.cli("start").code == 0
    probe = nobody("-c", PROBE, str(sock))
    assert probe.stdout.strip() == "connect: PermissionError", probe.stdout + probe.stderr
    # Even with the socket opened up by mistake, the appliance closes the connection of
    # another uid before it reads a request (SO_PEERCRED).
    os.chmod(sock, 0o666)
    probe = nobody("-c", PROBE, str(sock))
    # Depending on timing the probe sees the close while sending or receiving; never a reply.
    last = probe.stdout.strip().splitlines()[-1]
    assert last in ("reply: b''", "send: BrokenPipeError", "send: ConnectionResetError"), \
        probe.stdout + probe.stderr
    assert a.pid() > 0  # its own user still gets in
    log = (a.home / "appliance.log").read_text()
    assert f"refused a connection from uid {NOBODY}" in log


def test_a_killed_appliance_is_replaced_by_the_next_start(appliance: Appliance) -> None:
    a = appliance
    assert a.cli("start").code == 0
    pid = a.pid()
    os.kill(pid, signal.SIGKILL)

    def gone() -> bool:
        try:
            a.pid()
        except ApplianceNotRunningError:
            return True
        return False

    poll("the killed appliance to stop answering", gone, 30)
    assert a.socket.exists()  # left behind by the kill
    r = a.cli("start")
    assert r.code == 0 and "started the appliance" in r.err, r.err
    assert a.pid() != pid


def test_two_starts_at_once_make_one_appliance(appliance: Appliance) -> None:
    a = appliance
    procs = [subprocess.Popen([*VMKEEP, "appliance", "start"], cwd=REPO_ROOT, env=a.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    pids = {a.pid()}
    assert len(pids) == 1
    # The start that lost the race may leave its appliance process still exiting (it found
    # the home locked): within a few seconds exactly one is left.

    def running() -> list[int]:
        out = subprocess.run(["pgrep", "-f", f"appliance.daemon --home {a.home}"],
                             capture_output=True, text=True)
        return [int(p) for p in out.stdout.split() if process_alive(int(p))]

    poll(f"only the appliance {pids} to be left", lambda: running() == list(pids), 30)


def test_a_client_without_an_appliance_gets_one_clear_error(tmp_path: Path) -> None:
    with (pytest.raises(ApplianceNotRunningError, match="vmkeep appliance start"),
          ApplianceClient(tmp_path / "none.sock") as client):
        client.handshake()
