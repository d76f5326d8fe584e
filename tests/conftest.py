"""Fixtures shared by the whole suite."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appliance.repository.repo import Repository
from catalog.store import Catalog
from tests.helpers import skip_unless_ci
from tests.sshd import Sshd, start_sshd, stop_sshd


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """A private catalog cache folder for CLI runs (VMKEEP_CACHE_DIR): 0700, as vmkeep makes
    it (an open one is made private, with a warning, by the first command)."""
    p = tmp_path / "cache"
    p.mkdir(mode=0o700)
    return p


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository.open_local(tmp_path / "repo", create=True)


@pytest.fixture
def cat() -> Iterator[Catalog]:
    c = Catalog.open(None)
    yield c
    c.close()


@pytest.fixture(scope="session")
def sshd() -> Iterator[Sshd]:
    """A real OpenSSH server on 127.0.0.1 with a non-root account (tests/sshd.py)."""
    server = start_sshd()
    yield server
    stop_sshd(server)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount small tmpfs file systems (root); unmounted at teardown. Fails in CI rather than
    skip: CI runs as root and must run these cases."""
    mounts: list[Path] = []

    def mount(size: str) -> Path:
        where = tmp_path / f"fs{len(mounts)}"
        where.mkdir()
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                           capture_output=True, text=True)
        if p.returncode != 0:
            skip_unless_ci(f"cannot mount a {size} tmpfs ({p.stderr.strip()}): needs root")
        mounts.append(where)
        return where

    yield mount
    for where in reversed(mounts):
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)
