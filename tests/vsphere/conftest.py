"""vcsim, govmomi's vSphere API simulator, built here from Debian packages by
scripts/vcsim/build.sh and started on 127.0.0.1 on a free port for each test that needs it.
It is stopped by PID (and exits by itself when the test process's pipe closes)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyVim.task import WaitForTask
from pyVmomi import vim

from appliance.repository.repo import Repository
from appliance.vsphere import inventory
from appliance.vsphere.session import connect
from catalog.store import Catalog
from tests.vcsim import Vcsim, build_vcsim, start_vcsim, with_host_endpoints
from tests.vsphere.vmenv import DISK1_KB, VM, Env, _add_disk, write


@pytest.fixture(scope="session")
def vcsim_binary() -> Path:
    """Build (once per run, under a lock; quick when up to date) and return the binary."""
    return build_vcsim()


@pytest.fixture
def vcsim(vcsim_binary: Path, request: pytest.FixtureRequest) -> Iterator[Vcsim]:
    """A simulator for this test. Its environment can be set with
    ``@pytest.mark.parametrize("vcsim", [{"VCSIM_…": "…"}], indirect=True)``, and flags
    besides with a pair ``({"VCSIM_…": "…"}, ("-folder", "1"))``."""
    param = getattr(request, "param", None)
    env, extra = param if isinstance(param, tuple) else (param, ())
    proc, sim = start_vcsim(vcsim_binary, env=with_host_endpoints(env), extra=extra)
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
