"""`/` filters any list or tree (issue 15, "keys that don't surprise"): the rows whose visible
text holds what is typed (any case) stay; Enter keeps the filter and gives the list the focus
back, Esc empties it; a refresh keeps the filter and the cursor on its row; an empty result
says "no match for '…'"; digits and letters type into the filter; `/` is in the footer and
in `?` help of every screen where it works."""

from __future__ import annotations

from typing import Any

import pytest
from textual.widgets import DataTable, OptionList, Tree

from tests.tui.fake import FakeClient
from tests.tui.helpers import until
from tests.tui.test_keys import _more_jobs
from tests.tui.test_screens import app_for, shows
from tui.base import VmkeepScreen
from tui.filter import FilterBar, FilterInput, Mark, narrow
from tui.screens.help import HelpScreen
from tui.screens.jobs import JobsScreen
from tui.screens.points import PointsScreen
from tui.screens.vm_history import VmHistoryScreen


def jobs_screen(screen: object) -> JobsScreen:
    assert isinstance(screen, JobsScreen)
    return screen


def _names(table: DataTable[Any]) -> list[str]:
    return [str(r.key.value) for r in table.ordered_rows]


def _vm_leaves(tree: Tree[Any]) -> list[str]:
    out, todo = [], list(tree.root.children)
    while todo:
        node = todo.pop(0)
        if node.data is not None:
            out.append(node.data.name)
        todo.extend(node.children)
    return out


async def test_slash_filters_the_jobs_keeps_it_through_refreshes_and_esc_clears_it() -> None:
    fake = FakeClient()
    _more_jobs(fake)  # nightly, alpha, weekly, zeta
    app = app_for(fake)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, JobsScreen) and shows(app, "zeta"))
        screen = jobs_screen(app.screen)
        table = screen.query_one(DataTable)
        table.focus()
        await pilot.press("slash")
        await until(pilot, lambda: isinstance(screen.focused, FilterInput))
        await pilot.press(*"LY", "3")  # a digit types into the filter: no screen switch
        await until(pilot, lambda: shows(app, "no match for 'LY3'"))
        assert app.screen is screen and _names(table) == []
        await pilot.press("backspace")
        await until(pilot, lambda: sorted(_names(table)) == ["nightly", "weekly"])  # any case
        assert shows(app, "2 of 4", "/ LY")
        await pilot.press("enter")  # keeps the filter; the table has the focus again
        await until(pilot, lambda: screen.focused is table)
        await pilot.press("j")
        second = _names(table)[1]
        assert table.cursor_row == 1 and (job := screen.selected()) and job.spec.name == second
        loads = len(fake.called("jobs"))
        screen.reload()  # a periodic refresh: the filter holds, the cursor stays on its job
        await until(pilot, lambda: len(fake.called("jobs")) > loads)
        await pilot.pause(0.1)
        assert sorted(_names(table)) == ["nightly", "weekly"] and table.cursor_row == 1
        await pilot.press("slash")
        await until(pilot, lambda: isinstance(screen.focused, FilterInput))
        await pilot.press("escape")  # every job again, the line hidden, the cursor stays
        await until(pilot, lambda: screen.focused is table and len(_names(table)) == 4)
        assert not screen.query_one(FilterBar).display
        assert _names(table)[table.cursor_row] == second
        assert app.screen is screen


async def test_slash_filters_the_inventory_tree_of_200_vms() -> None:
    app = app_for(FakeClient.big(vms=200, points=400))
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("4")
        await until(pilot, lambda: shows(app, "vm000"))
        tree = app.screen.query_one(Tree)
        assert len(_vm_leaves(tree)) == 200
        await pilot.press("slash", *"VM12")
        await until(pilot, lambda: len(_vm_leaves(tree)) == 10)
        assert sorted(_vm_leaves(tree)) == [f"vm12{i}" for i in range(10)]
        assert shows(app, "10 of 200")
        await pilot.press("enter")
        await until(pilot, lambda: app.screen.focused is tree)


async def test_slash_filters_the_points_vm_list_and_the_timeline_follows() -> None:
    app = app_for(FakeClient.big(vms=30, points=90))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("5")
        await until(pilot, lambda: shows(app, "Restore points of vm000"))
        screen = app.screen
        assert isinstance(screen, PointsScreen)
        vms = screen.query_one("#vms", OptionList)
        vms.focus()
        await pilot.press("slash", *"vm02")
        await until(pilot, lambda: vms.option_count == 10)
        await pilot.press("enter", "down", "down")
        await until(pilot, lambda: shows(app, "Restore points of vm022"))
        timeline = screen.query_one("#points", DataTable)
        timeline.focus()  # the timeline's own filter: the VM list shows every VM again
        await pilot.press("slash", *"incremental")
        await until(pilot, lambda: vms.option_count == 30 and timeline.row_count == 2)
        point = screen.selected()
        assert point is not None and point.vm == "vm022" and point.kind == "incremental"


@pytest.mark.parametrize(("key", "list_id", "needle", "left"), [
    ("2", "jobs", "night", 1), ("3", "sessions", "backup", 2), ("4", "inventory", "H0_VM1", 1),
    ("5", "vms", "VM0", 1), ("7", "repos", "main", 1), ("7", "vcenters", "127.0", 1)])
async def test_slash_is_in_the_footer_and_help_of_every_screen_with_a_list(
        key: str, list_id: str, needle: str, left: int) -> None:
    app = app_for(FakeClient())
    async with app.run_test(size=(160, 60)) as pilot:
        await pilot.press(key)
        await until(pilot, lambda: app.screen.query_one(f"#{list_id}").is_mounted)
        screen = app.screen
        assert isinstance(screen, VmkeepScreen)
        await until(pilot, lambda: shows(app, "/ Filter"))  # the footer
        widget = screen.query_one(f"#{list_id}")
        await pilot.pause(0.3)  # loaded
        widget.focus()
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        assert isinstance(app.screen, HelpScreen)
        assert ("/", "Filter") in app.screen.keys
        await pilot.press("escape", "slash", *needle)
        bar = screen.query_one(FilterBar)
        await until(pilot, lambda: bar.target == list_id and f"{left} of" in str(
            bar.query_one("#filter-count").render()))
        await pilot.press(*"zz")
        await until(pilot, lambda: shows(app, f"no match for '{needle}zz'"))


async def test_screens_without_a_list_have_no_slash() -> None:
    app = app_for(FakeClient())
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.press("6")
        await until(pilot, lambda: shows(app, "Run query"))
        assert "slash" not in app.screen.active_bindings
        assert not app.screen.query(FilterBar)


def test_narrow_needs_a_list() -> None:
    with pytest.raises(TypeError):
        narrow(FilterBar({}), Mark(None, 0))


async def test_slash_filters_the_points_of_the_vm_view() -> None:
    app = app_for(FakeClient())
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        await until(pilot, lambda: shows(app, "Restore points of DC0_H0_VM0"))
        await pilot.press("h")
        await until(pilot, lambda: isinstance(app.screen, VmHistoryScreen)
                    and app.screen.query_one("#vm-points", DataTable).row_count == 2)
        table = app.screen.query_one("#vm-points", DataTable)
        await pilot.press("slash", *"incremental")
        await until(pilot, lambda: table.row_count == 1 and shows(app, "1 of 2"))
        await pilot.press("escape")
        await until(pilot, lambda: table.row_count == 2)
        assert isinstance(app.screen, VmHistoryScreen)  # Esc cleared the filter, no more
