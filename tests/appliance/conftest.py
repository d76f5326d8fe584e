"""Fixtures of the appliance tests."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.appliance.lab import Lab
from tests.vcsim import build_vcsim, start_vcsim


@pytest.fixture(scope="session")
def vcsim_binary() -> Path:
    return build_vcsim()


@pytest.fixture
def lab(vcsim_binary: Path, tmp_path: Path) -> Iterator[Lab]:
    proc, sim = start_vcsim(vcsim_binary)
    env = {**os.environ, "VMKEEP_HOME": str(tmp_path / "home"),
           "VMKEEP_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("VMKEEP_SOCKET", None)
    lab = Lab(tmp_path / "home", env, sim, tmp_path)
    try:
        assert lab.vmkeep("appliance", "start").code == 0
        r = lab.vmkeep("vcenter", "add", "vc", "--host", sim.host, "--port", str(sim.port),
                       "--user", sim.user, "--password-stdin", "--insecure",
                       stdin=sim.password)
        assert r.code == 0, r.err
        assert lab.vmkeep("repo", "add", "main", "--path", str(tmp_path / "repo")).code == 0
        lab.write(0, random.Random(4).randbytes(700 << 10))
        yield lab
    finally:
        lab.vmkeep("appliance", "stop")
        proc.terminate()
        proc.wait(timeout=30)
