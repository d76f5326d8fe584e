"""Helpers of the pilot tests: wait for what the user would see, with a deadline."""

from __future__ import annotations

import io
import time
from collections.abc import Callable

from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from tui.app import VmkeepApp


async def until(pilot: Pilot[int], what: Callable[[], object], timeout: float = 10.0,
                why: str = "") -> None:
    """Let the app run until ``what()`` holds (workers post their messages meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if what():
                return
        except Exception:  # a widget not mounted yet
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {timeout} s: {why or what}")
        await pilot.pause(0.02)


def screen_text(app: VmkeepApp) -> str:
    """Everything the screen shows, as plain text (the exported picture's characters)."""
    console = Console(width=app.size.width, height=app.size.height, record=True,
                      color_system=None, file=io.StringIO())
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text()


def cells(table: DataTable[object]) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def static(app: VmkeepApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())
