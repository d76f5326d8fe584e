"""Fixtures of the appliance tests."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.appliance.lab import Lab, started_lab
from tests.vcsim import build_vcsim


@pytest.fixture(scope="session")
def vcsim_binary() -> Path:
    return build_vcsim()


@pytest.fixture
def lab(vcsim_binary: Path, tmp_path: Path) -> Iterator[Lab]:
    with started_lab(vcsim_binary, tmp_path) as lab:
        lab.write(0, random.Random(4).randbytes(700 << 10))
        yield lab
