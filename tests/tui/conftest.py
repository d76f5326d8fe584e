"""Fixtures of the TUI tests: async tests run in their own asyncio loop; the appliance lab
(real appliance + vcsim) for the slow ones."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from tests.appliance.conftest import lab, vcsim_binary

__all__ = ["lab", "vcsim_binary"]


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests (Textual's pilot) with asyncio.run."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    asyncio.run(pyfuncitem.obj(**{n: pyfuncitem.funcargs[n] for n in names}))
    return True
