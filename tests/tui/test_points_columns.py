"""The Points timeline names each point's job and repository (issue 15); at 80 columns the
least important columns go first and the point's time, kind and verified state stay."""

from __future__ import annotations

from textual.widgets import DataTable

from tests.tui.fake import FakeClient
from tests.tui.helpers import until
from tests.tui.test_screens import app_for, shows


async def test_the_timeline_shows_job_and_repository_and_fits_80_columns() -> None:
    app = app_for(FakeClient())
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        await until(pilot, lambda: shows(app, "incremental", "nightly"))
        table = app.screen.query_one("#points", DataTable)
        assert [str(c.label) for c in table.columns.values()] == [  # the id left out first
            "Created (UTC)", "Kind", "Verified", "Job", "Repository", "Stored", "Read"]
        assert [str(c) for c in table.get_row_at(0)][3:5] == ["nightly", "main"]
        await pilot.resize_terminal(80, 24)
        await until(pilot, lambda: "Read" not in [str(c.label) for c in table.columns.values()])
        labels = [str(c.label) for c in table.columns.values()]
        assert labels[:3] == ["Created (UTC)", "Kind", "Verified"], labels
        assert sum(c.get_render_width(table) for c in table.columns.values()) <= \
            table.size.width, labels
