"""Fixtures of the TUI tests: the appliance lab (real appliance + vcsim) for the slow ones."""

from __future__ import annotations

from tests.appliance.conftest import lab, vcsim_binary

__all__ = ["lab", "vcsim_binary"]
