"""vcsim for the tests: build it (scripts/vcsim/build.sh, once per run under a lock, quick
when up to date) and start it on 127.0.0.1 on a free port. Fixtures are in the conftest.py
of the test folders that use it."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import REPO_ROOT

BUILD = REPO_ROOT / "scripts" / "vcsim" / "build.sh"


def with_host_endpoints(env: dict[str, str] | None = None) -> dict[str, str]:
    """The shared fixtures' environment: each simulated ESXi host serves /folder itself
    (VCSIM_HOST_ENDPOINTS=1), as vmkeep's default transport "host" reads from it; ``env``
    on top (it may set "0")."""
    return {"VCSIM_HOST_ENDPOINTS": "1", **(env or {})}


@dataclass(frozen=True)
class Vcsim:
    host: str
    port: int
    user: str
    password: str
    pid: int


def build_vcsim() -> Path:
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
