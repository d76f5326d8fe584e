"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.repository.repo import Repository
from catalog.store import Catalog
from tests.sshd import Sshd, start_sshd, stop_sshd


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """A private catalog cache folder for CLI runs (VMKEEP_CACHE_DIR)."""
    p = tmp_path / "cache"
    p.mkdir()
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
