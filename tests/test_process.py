"""One answer to "is this process alive", used by the appliance's pid file, repository locks
and restores' partial files: a zombie is not alive, nor a pid reused by another process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from appliance.process import process_alive, process_start
from tests.helpers import poll


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE)
    yield proc
    proc.kill()
    proc.wait(timeout=30)


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rsplit(b")", 1)[1].split()[0].decode()


def test_a_running_child_is_alive_and_an_ended_unreaped_one_a_zombie_is_not(
        child: subprocess.Popen[bytes]) -> None:
    assert process_alive(child.pid)
    assert process_alive(child.pid, process_start(child.pid))
    assert child.stdin is not None
    child.stdin.close()  # the child reads to the end and exits; nobody reaps it yet
    poll("the child to become a zombie", lambda: _state(child.pid) == "Z")
    assert not process_alive(child.pid)
    assert not process_alive(child.pid, process_start(child.pid))
    child.wait(timeout=30)
    assert not process_alive(child.pid)


def test_a_pid_that_started_at_another_time_is_another_process(
        child: subprocess.Popen[bytes]) -> None:
    start = process_start(child.pid)
    assert start is not None
    assert not process_alive(child.pid, start + 1)
    assert process_alive(child.pid, None) and process_alive(child.pid, 0)  # unknown start


def test_no_such_pid_is_not_alive() -> None:
    assert not process_alive(0) and not process_alive(-1)
    assert not process_alive(2**22 + 1)  # above Linux's pid_max
