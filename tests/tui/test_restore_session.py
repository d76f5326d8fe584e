"""A restore started from the Points screen is a session (issue 15: "a restore has no
progress and no session"): its session view opens at once and shows the disk's progress
rise, then what was restored; the Sessions screen lists it with its kind."""

from __future__ import annotations

from textual.widgets import DataTable

from tests.tui.fake import FakeClient
from tests.tui.helpers import cells, screen_text, until
from tests.tui.test_screens import SIZE, VM, app_for, shows
from tui.screens.dialogs import ConfirmScreen, FormScreen
from tui.screens.sessions import SessionScreen, SessionsScreen


async def test_a_disk_restore_opens_its_session_with_progress_and_its_outcome() -> None:
    fake = FakeClient()
    fake.steps = 8
    fake.delay = 0.05  # the appliance answers each long poll after a while
    app = app_for(fake)
    newest = fake.points()[-1]
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await until(pilot, lambda: shows(app, f"Restore points of {VM}"))
        await pilot.press("tab", "d")
        await until(pilot, lambda: isinstance(app.screen, FormScreen))
        await pilot.press("tab", *"/tmp/r.img", "enter")
        await until(pilot, lambda: isinstance(app.screen, SessionScreen), why="its session")
        screen = app.screen
        assert isinstance(screen, SessionScreen)
        await until(pilot, lambda: shows(app, "✓ success", "✓ restored disk 0 of "
                                         f"{newest.id} to /tmp/r.img (160.0 MiB)"),
                    why="the restore's outcome")
        seen = screen.seen_percentages
        rising = [p for p in seen if 0 < p < 100]
        assert len(rising) >= 3 and rising == sorted(rising), seen  # it rose on the way
        text = screen_text(app)
        assert f"restore {VM} disk 0 · restore" in text
        assert "└ disk 0" in text and "160.0 MiB" in text and "100%" in text
        await pilot.press("escape", "3")
        await until(pilot, lambda: isinstance(app.screen, SessionsScreen))
        table = app.screen.query_one(DataTable)
        await until(pilot, lambda: any(f"restore {VM} disk 0" in row and "restore" in row
                                       for row in cells(table)), why="listed with its kind")


async def test_a_vm_restore_opens_its_session() -> None:
    fake = FakeClient()
    app = app_for(fake)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await until(pilot, lambda: shows(app, f"Restore points of {VM}"))
        await pilot.press("tab", "v")
        await until(pilot, lambda: isinstance(app.screen, FormScreen))
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, SessionScreen)
                    and shows(app, f"restore {VM} · restore", "✓ success",
                              f"to VM '{VM}-restored'"), why="the VM restore's session")
        await pilot.press("s")  # a restore is not stopped
        await until(pilot, lambda: any("cannot be stopped" in n.message
                                       for n in app._notifications))
        assert not fake.called("stop_job")
