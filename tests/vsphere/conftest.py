"""vcsim, govmomi's vSphere API simulator, built here from Debian packages by
scripts/vcsim/build.sh and started on 127.0.0.1 on a free port for each test that needs it.
It is stopped by PID (and exits by itself when the test process's pipe closes)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

BUILD = REPO_ROOT / "scripts" / "vcsim" / "build.sh"


@dataclass(frozen=True)
class Vcsim:
    host: str
    port: int
    user: str
    password: str
    pid: int


@pytest.fixture(scope="session")
def vcsim_binary() -> Path:
    """Build (once per run, under a lock; quick when up to date) and return the binary."""
    proc = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"building vcsim failed:\n{proc.stderr[-4000:]}"
    return Path(proc.stdout.strip().splitlines()[-1])


def start_vcsim(binary: Path, *, env: dict[str, str] | None = None,
                user: str = "vmkeep", password: str = "vmkeep-secret",
                extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen[str], Vcsim]:
    proc = subprocess.Popen(
        [str(binary), "-l", "127.0.0.1:0", "-username", user, "-password", password,
         "-stdinexit", *extra],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})})
    assert proc.stdout is not None
    line = proc.stdout.readline()  # vcsim prints this line once it listens
    if not line.startswith("VCSIM_URL="):
        proc.kill()
        raise AssertionError(f"vcsim did not start: {line!r}")
    info = dict(kv.split("=", 1) for kv in line.split())
    return proc, Vcsim(info["VCSIM_HOST"], int(info["VCSIM_PORT"]), user, password,
                       int(info["VCSIM_PID"]))


@pytest.fixture
def vcsim(vcsim_binary: Path) -> Iterator[Vcsim]:
    proc, sim = start_vcsim(vcsim_binary)
    try:
        yield sim
    finally:
        os.kill(sim.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
