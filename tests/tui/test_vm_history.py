"""The VM view (issue 15): `h` on Inventory or Points opens one VM's history across jobs and
repositories — its RPO status and newest point, each job's last result for it with the
reasons, its points with job, repository, kind, size and verified state — and Esc goes back
to the screen it came from with the focus where it was."""

from __future__ import annotations

from datetime import timedelta

from textual.widgets import DataTable, OptionList, Tree

from appliance import api
from tests.tui.fake import NOW, FakeClient
from tests.tui.helpers import cells, until
from tests.tui.test_screens import SIZE, app_for, shows
from tui.screens.inventory import InventoryScreen
from tui.screens.points import PointsScreen
from tui.screens.vm_history import VmHistoryScreen

VM = "DC0_H0_VM0"


def _two_jobs_two_repositories(fake: FakeClient) -> None:
    """A second job "offsite" backs VM up into repository "far"; its last session failed for
    the VM with a reason, and it made the VM's newest point."""
    nightly = fake._jobs["nightly"]
    sid = "20261201T130000Z-offsite"
    fake._sessions[sid] = api.Session(
        id=sid, job="offsite", kind="backup", state="ended", result="failed", started=NOW,
        ended=NOW, tasks=[api.Task(name=VM, state="ended", result="failed", bytes_done=0,
                                   bytes_total=1, rate=0.0, eta_seconds=None, stage=None,
                                   point_id=None)],
        log=[api.LogLine(time=NOW, level="error", message=f"{VM}: snapshot failed: disk busy")])
    fake._jobs["offsite"] = nightly.model_copy(update={
        "spec": nightly.spec.model_copy(update={"name": "offsite", "repository": "far"}),
        "last_session": api.SessionSummary(id=sid, job="offsite", kind="backup",
                                           state="ended", result="failed", started=NOW,
                                           ended=NOW)})
    fake._points.append(fake._points[-1].model_copy(update={
        "id": "20261203T130000Z-far", "repository": "far", "job": "offsite",
        "created": fake._points[-1].created + timedelta(days=1)}))
    fake._inventory = [v.model_copy(update={"jobs": ["nightly", "offsite"],
                                            "rpo_status": "breached"})
                       if v.name == VM else v for v in fake._inventory]


async def test_h_on_points_opens_the_vms_history_and_esc_comes_back_with_focus() -> None:
    fake = FakeClient()
    _two_jobs_two_repositories(fake)
    app = app_for(fake)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        await until(pilot, lambda: shows(app, f"Restore points of {VM}", "offsite"))
        points = app.screen
        assert isinstance(points, PointsScreen)
        vms = points.query_one(OptionList)
        vms.focus()
        await pilot.pause()
        await pilot.press("h")
        await until(pilot, lambda: isinstance(app.screen, VmHistoryScreen)
                    and shows(app, "snapshot failed: disk busy", "20261203T130000Z-far"))
        assert shows(app, f"VM {VM}: history across jobs and repositories", "✗ RPO breached",
                     "jobs: nightly, offsite", "✓ success", "✗ failed", "→ far", "→ main")
        table = app.screen.query_one("#vm-points", DataTable)
        rows = cells(table)
        assert rows[0][3:5] == ["offsite", "far"]  # newest first
        assert {r[3] for r in rows} == {"nightly", "offsite"}
        assert {r[4] for r in rows} == {"main", "far"}
        assert [r[1] for r in rows] == ["incremental", "incremental", "full"]
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is points and points.focused is vms)


async def test_h_on_an_inventory_vm_opens_its_history() -> None:
    fake = FakeClient()
    app = app_for(fake)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await until(pilot, lambda: shows(app, VM))
        inventory = app.screen
        assert isinstance(inventory, InventoryScreen)
        tree = inventory.query_one(Tree)
        line = next(i for i in range(tree.last_line + 1)
                    if (n := tree.get_node_at_line(i)) is not None
                    and isinstance(n.data, api.InventoryVm) and n.data.name == VM)
        tree.move_cursor_to_line(line)
        tree.focus()
        await pilot.pause()
        await pilot.press("h")
        await until(pilot, lambda: isinstance(app.screen, VmHistoryScreen)
                    and shows(app, "jobs: nightly", "Restore points, newest first (2)"))
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is inventory and inventory.focused is tree)
        tree.move_cursor_to_line(0)  # the root, not a VM: nothing opens
        await pilot.press("h")
        await pilot.pause()
        assert app.screen is inventory


async def test_the_help_of_inventory_and_points_names_the_history_key() -> None:
    app = app_for(FakeClient())
    async with app.run_test(size=(100, 60)) as pilot:
        for key in ("4", "5"):
            await pilot.press(key)
            await pilot.pause()
            await pilot.press("question_mark")
            await until(pilot, lambda: shows(app, "History"))
            await pilot.press("escape")
            await pilot.pause()


async def test_a_job_that_backs_the_vm_up_by_a_container_is_listed_too() -> None:
    """A job whose VMs come from a folder (the inventory names it among the VM's jobs) and
    has not run yet: "never ran" in the VM view."""
    fake = FakeClient()
    nightly = fake._jobs["nightly"]
    fake._jobs["folders"] = nightly.model_copy(update={
        "spec": nightly.spec.model_copy(update={"name": "folders", "vms": []}),
        "last_session": None})
    fake._inventory = [v.model_copy(update={"jobs": ["nightly", "folders"]})
                       if v.name == VM else v for v in fake._inventory]
    app = app_for(fake)
    async with app.run_test(size=(120, 40)) as pilot:
        app.push_screen(VmHistoryScreen(VM))
        await until(pilot, lambda: shows(app, "jobs: nightly, folders", "never ran"))
