"""Against a real appliance and vCenter (vcsim): a VM restored from the TUI's Points screen
with the dialog's defaults lands where the original VM is — host, resource pool, datastore,
folder and network, read back through the vCenter's API; the plan is shown before anything
is created, and the restore is a session whose view opens and follows it to its end (issue
15)."""

from __future__ import annotations

import json

from appliance.client import ApplianceClient
from tests.appliance.lab import VM, Lab
from tests.appliance.placement import placements
from tests.tui.helpers import screen_text, until
from tui.app import create_app
from tui.screens.dialogs import ConfirmScreen, FormScreen
from tui.screens.points import PointsScreen
from tui.screens.sessions import SessionScreen


async def test_a_vm_restored_from_the_tui_with_defaults_lands_where_the_original_is(
        lab: Lab) -> None:
    assert lab.vmkeep("job", "create", "nightly", "--vcenter", "vc", "--vm", VM, "--repo",
                      "main", "--enable-cbt").code == 0
    assert lab.vmkeep("job", "run", "nightly", "--wait").code == 0
    assert json.loads(lab.vmkeep("points", "list", "--vm", VM, "--json").out)
    client = ApplianceClient(lab.home / "appliance.sock")
    app = create_app(client)
    with placements(lab) as (where, vm_names):
        original = where(VM)
        try:
            async with app.run_test(size=(80, 24)) as pilot:
                def shows(*texts: str) -> bool:
                    return all(t in screen_text(app) for t in texts)

                await until(pilot, lambda: shows("main"), timeout=30, why="the dashboard")
                await pilot.press("5")
                await until(pilot, lambda: isinstance(app.screen, PointsScreen)
                            and shows(f"Restore points of {VM}"), timeout=30)
                await pilot.press("tab", "v")
                await until(pilot, lambda: isinstance(app.screen, FormScreen), timeout=60,
                            why="the restore dialog")
                await pilot.press("ctrl+s")  # the defaults
                await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), timeout=60,
                            why="the plan")
                assert shows(f"Restore {VM} as a new VM {VM}-restored?",
                             f"host {original[0]!r}")
                assert f"{VM}-restored" not in vm_names()  # plan only
                await pilot.press("y")
                await until(pilot, lambda: isinstance(app.screen, SessionScreen), timeout=60,
                            why="the restore's session view")
                view = app.screen
                assert isinstance(view, SessionScreen)
                await until(pilot, lambda: view.session is not None
                            and view.session.state == "ended", timeout=120,
                            why="the restore session ended")
                session = view.session
                assert session is not None and session.kind == "restore", session
                assert session.result == "success", session.outcome
                assert shows("restore", "✓ success", f"{VM}-restored")
                assert [t.bytes_done == t.bytes_total > 0 for t in session.tasks] == \
                    [True] * len(session.tasks)
        finally:
            client.close()
        assert where(f"{VM}-restored") == original
