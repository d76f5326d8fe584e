"""Fixtures of the appliance tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.vcsim import build_vcsim


@pytest.fixture(scope="session")
def vcsim_binary() -> Path:
    return build_vcsim()
