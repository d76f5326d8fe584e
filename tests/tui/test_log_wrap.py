"""The session view's log wraps to the log's width, and again after a resize (issue 15: log
lines kept their old wrapping; at 120 columns they were wrapped at 80)."""

from __future__ import annotations

from tests.tui.fake import FakeClient
from tests.tui.helpers import screen_text, until
from tests.tui.test_screens import app_for

LONG = "point 20261202T064610Z-d5e78b5d (incremental), 262144 bytes read"


async def test_the_log_wraps_to_its_width_after_each_resize() -> None:
    app = app_for(FakeClient())
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3", "enter")
        await until(pilot, lambda: "session ended: success" in screen_text(app))
        assert LONG in screen_text(app)  # one line at 120 columns
        await pilot.resize_terminal(80, 24)
        await until(pilot, lambda: LONG not in screen_text(app)
                    and "session ended: success" in screen_text(app))
        assert all(len(line) <= 80 for line in screen_text(app).splitlines())
        await pilot.resize_terminal(120, 40)
        await until(pilot, lambda: LONG in screen_text(app))
        assert screen_text(app).count("session ended: success") == 1  # written once
