"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.repository.repo import Repository
from catalog.store import Catalog


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
