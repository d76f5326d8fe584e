"""Keys that do not surprise (issue 15, item 6 and 7): `?` lists the screen's keys, digits
never switch screens under a dialog or a wizard, j/k/Home/End move the cursor of any list,
the focused widget has focus again when its screen comes back, the command palette holds
vmkeep's actions of every screen and none of Textual's generic entries; in the wizard, Esc
asks before it throws away what was changed, Space and Enter tick VMs (a host: all its VMs)
and a checkbox reads [x] or [ ] without colour. (`/`: tests/tui/test_filter.py.)"""

from __future__ import annotations

from typing import Any

from textual.widgets import DataTable, Input, Tree

from tests.tui.fake import FakeClient
from tests.tui.helpers import until
from tests.tui.test_screens import SIZE, app_for, shows
from tui.screens.dashboard import DashboardScreen
from tui.screens.dialogs import ConfirmScreen, FormScreen
from tui.screens.help import HelpScreen
from tui.screens.jobs import JobsScreen
from tui.screens.sessions import SessionScreen
from tui.screens.wizard import JobWizard


def _more_jobs(fake: FakeClient) -> None:
    first = fake._jobs["nightly"]
    for name in ("alpha", "weekly", "zeta"):
        fake._jobs[name] = first.model_copy(update={
            "spec": first.spec.model_copy(update={"name": name})})


async def test_question_mark_lists_every_key_of_the_screen_and_esc_closes_it() -> None:
    app = app_for(FakeClient())
    async with app.run_test(size=(100, 60)) as pilot:  # the whole list without scrolling
        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, JobsScreen) and shows(app, "nightly"))
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen)
        listed = dict((what, key) for key, what in help_screen.keys)
        for key, what in (("n", "New"), ("e", "Edit"), ("r", "Run"), ("j", "Down"),
                          ("home", "First row"), ("1", "go to Dashboard")):
            assert listed.get(what) == key, (what, help_screen.keys)
        order = [w for _, w in help_screen.keys]
        assert order.index("New") < order.index("Cursor up")  # the screen's own keys first
        assert shows(app, "Keys of jobs", "New", "Edit")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, JobsScreen))


async def test_digits_do_not_leave_a_dialog_or_a_wizard() -> None:
    app = app_for(FakeClient())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await until(pilot, lambda: shows(app, "Restore points of"))
        await pilot.press("tab", "d")
        await until(pilot, lambda: isinstance(app.screen, FormScreen))
        await pilot.press("3")  # into the text field, not to Sessions
        assert isinstance(app.screen, FormScreen)
        assert app.screen.query_one(Input).value.endswith("3")
        await pilot.press("escape", "2")
        await until(pilot, lambda: isinstance(app.screen, JobsScreen))
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, JobWizard))
        app.screen.set_focus(None)  # no text field has focus: a digit still does nothing
        await pilot.press("3", "q")
        await pilot.pause()
        assert isinstance(app.screen, JobWizard) and app.is_running


async def test_j_k_home_and_end_move_the_cursor_of_the_jobs_table() -> None:
    fake = FakeClient()
    _more_jobs(fake)
    app = app_for(fake)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, JobsScreen) and shows(app, "zeta"))
        table = app.screen.query_one(DataTable)
        table.focus()
        await pilot.press("end")
        assert table.cursor_row == table.row_count - 1 == 3
        await pilot.press("k")
        assert table.cursor_row == 2
        await pilot.press("home")
        assert table.cursor_row == 0
        await pilot.press("j", "j")
        assert table.cursor_row == 2


async def test_focus_comes_back_to_the_widget_that_had_it() -> None:
    """After a session opened from the dashboard is closed with Esc, the dashboard's table
    has focus again (before, nothing had, and `o` then opened another job's session)."""
    fake = FakeClient()
    app = app_for(fake)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen)
                    and shows(app, "nightly"))
        dashboard = app.screen
        target = dashboard.query_one(DataTable)
        target.focus()
        await pilot.pause()
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, SessionScreen))
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is dashboard)
        await until(pilot, lambda: dashboard.focused is target)
        await pilot.press("3", "1")  # a switch of screens keeps it too
        await until(pilot, lambda: app.screen is dashboard and dashboard.focused is target)


async def test_the_palette_holds_every_screens_actions_and_no_generic_entries() -> None:
    app = app_for(FakeClient())
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Jobs: Run" in titles and "Points: Restore VM" in titles
        assert "Go to Sessions" in titles and "Help" in titles and "Quit" in titles
        generic = ("theme", "screenshot", "Keys", "Maximize", "Minimize")
        assert not [t for t in titles if any(g.lower() in t.lower() for g in generic)], titles


def _wizard(app: Any) -> JobWizard:
    assert isinstance(app.screen, JobWizard)
    return app.screen


async def test_esc_in_a_changed_wizard_asks_and_in_an_unchanged_one_closes() -> None:
    fake = FakeClient()
    app = app_for(fake)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, JobsScreen) and shows(app, "nightly"))
        app.screen.query_one(DataTable).focus()
        await pilot.press("e")  # the job as stored: nothing changed, Esc just closes
        await until(pilot, lambda: bool(_wizard(app).inventory) and shows(app, "Edit job"))
        await pilot.pause(0.2)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, JobsScreen))
        await pilot.press("e", "ctrl+n")  # a VM ticked, then unticked: unchanged again
        await until(pilot, lambda: shows(app, "[x] DC0_H0_VM0"))
        wizard = _wizard(app)
        await pilot.press(*["down"] * 8, "space")
        await until(pilot, lambda: shows(app, "[x] DC0_H0_VM1"))
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert shows(app, "Discard changes?")
        await pilot.press("n")  # back to the wizard, the tick still there
        await until(pilot, lambda: app.screen is wizard and "DC0_H0_VM1" in wizard.chosen)
        await pilot.press("space", "escape")
        await until(pilot, lambda: isinstance(app.screen, JobsScreen))
        await pilot.press("n")
        await until(pilot, lambda: bool(_wizard(app).inventory))
        wizard = _wizard(app)
        await pilot.press(*"weekly", "escape")  # Esc in a text field asks too
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("escape")  # Esc on the question is "no"
        await until(pilot, lambda: app.screen is wizard)
        assert wizard.query_one("#job-name", Input).value == "weekly"
        await pilot.press("escape", "y")
        await until(pilot, lambda: isinstance(app.screen, JobsScreen))
    assert not fake.called("create_job") and not fake.called("edit_job")


async def test_space_ticks_a_vm_and_enter_on_a_host_ticks_all_its_vms() -> None:
    """The tree: inventory, DC0, DC0_C0_H0 (DC0_C0_RP0_VM1), DC0_C0_H1 (DC0_C0_RP0_VM0),
    DC0_H0 (DC0_H0_VM0, DC0_H0_VM1), the cursor on the first line."""
    app = app_for(FakeClient())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2", "n")
        await until(pilot, lambda: bool(_wizard(app).inventory))
        wizard = _wizard(app)
        await pilot.press(*"weekly", "ctrl+n")
        await until(pilot, lambda: shows(app, "[ ] DC0_H0_VM1"))
        tree = wizard.query_one(Tree)
        both = {"DC0_H0_VM0", "DC0_H0_VM1"}
        await pilot.press(*["down"] * 6, "enter")  # the host DC0_H0: both its VMs
        await until(pilot, lambda: shows(app, "[x] DC0_H0_VM0", "[x] DC0_H0_VM1"))
        assert wizard.chosen == both and tree.cursor_node and tree.cursor_node.is_expanded
        await pilot.press("enter")  # all of them ticked: enter unticks them
        await until(pilot, lambda: shows(app, "[ ] DC0_H0_VM0", "[ ] DC0_H0_VM1"))
        assert wizard.chosen == set()
        await pilot.press("down", "space")  # the VM under the cursor
        await until(pilot, lambda: wizard.chosen == {"DC0_H0_VM0"})
        await pilot.press("space")
        await until(pilot, lambda: wizard.chosen == set())
        await pilot.press("space", "up", "enter")  # one of two ticked: enter ticks both
        await until(pilot, lambda: wizard.chosen == both)
        await pilot.press("slash", *"vm1", "enter", "home", "enter")  # what the filter shows
        await until(pilot, lambda: wizard.chosen == both | {"DC0_C0_RP0_VM1"})
        await pilot.press("slash", "escape")  # Esc in the filter empties it: no question
        await until(pilot, lambda: shows(app, "[ ] DC0_C0_RP0_VM0") and wizard.focused is tree)
        assert app.screen is wizard
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        assert isinstance(app.screen, HelpScreen)
        keys = dict(app.screen.keys)
        assert "untick them" in keys["⏎"] and "Tick" in keys["space"]
        assert keys["/"] == "Filter"
        await pilot.press("escape", "ctrl+n", "ctrl+n")  # the processing step's checkboxes
        await until(pilot, lambda: shows(app, "[x] Consent to turn", "[ ] Quiesce the guest"))
