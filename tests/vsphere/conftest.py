"""vcsim, govmomi's vSphere API simulator, built here from Debian packages by
scripts/vcsim/build.sh and started on 127.0.0.1 on a free port for each test that needs it.
It is stopped by PID (and exits by itself when the test process's pipe closes)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyVim.task import WaitForTask
from pyVmomi import vim

from appliance.repository.repo import Repository
from appliance.vsphere import inventory
from appliance.vsphere.session import connect
from catalog.store import Catalog
from tests.helpers import REPO_ROOT
from tests.vsphere.vmenv import DISK1_KB, VM, Env, _add_disk, write

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
def vcsim(vcsim_binary: Path, request: pytest.FixtureRequest) -> Iterator[Vcsim]:
    """A simulator for this test. Its environment can be set with
    ``@pytest.mark.parametrize("vcsim", [{"VCSIM_…": "…"}], indirect=True)``."""
    proc, sim = start_vcsim(vcsim_binary, env=getattr(request, "param", None))
    try:
        yield sim
    finally:
        os.kill(sim.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def env(vcsim: Vcsim, tmp_path: Path) -> Iterator[Env]:
    """DC0_H0_VM0 with a second 8 MiB disk, content in both, a repository and a catalog."""
    with connect(vcsim.host, vcsim.port, vcsim.user, vcsim.password, fingerprint=None,
                 insecure=True) as session:
        info = inventory.find_vm(session, VM)
        vm = session.content.searchIndex.FindByUuid(None, info.instance_uuid, True, True)
        WaitForTask(vm.ReconfigVM_Task(vim.vm.ConfigSpec(  # type: ignore[no-untyped-call]
            deviceChange=[_add_disk(1, DISK1_KB)])))
        repo = Repository.open_local(tmp_path / "repo", create=True)
        cat = Catalog.open(None)
        e = Env(session, repo, cat, vm, {ds.name: ds.info.url for ds in vm.datastore}, [],
                tmp_path)
        rnd = random.Random(11)
        write(e.live(0), 0, rnd.randbytes(600 << 10))  # disk 0: 1 MiB, 600 KiB written
        for off in range(0, 6 << 20, 1 << 20):  # disk 1: 8 MiB, 6 × 512 KiB written
            write(e.live(1), off + 4096, rnd.randbytes(512 << 10))
        try:
            yield e
        finally:
            cat.close()
