"""Fixtures of the TUI tests: async tests run on asyncio through anyio's pytest plugin; the
appliance lab (real appliance + vcsim) for the slow ones."""

from __future__ import annotations

import inspect

import pytest

from tests.appliance.conftest import lab, vcsim_binary

__all__ = ["lab", "vcsim_binary"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fn = getattr(item, "function", None)
        if fn is not None and inspect.iscoroutinefunction(fn) and "tests/tui" in str(
                item.path):
            item.add_marker(pytest.mark.anyio)
