"""End to end against a real appliance and vcsim, by key presses only: create a job in the
wizard, run it, watch the session rise through intermediate percentages to success, find
the new point on the Points screen and restore its disk to a file whose bytes match, its
restore session's view following it to its end."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from textual.widgets import Tree

from appliance.client import ApplianceClient
from tests.appliance.lab import VM, Lab
from tests.appliance.test_follow import SIZE, grow_and_fill
from tests.tui.helpers import screen_text, until
from tui.app import create_app
from tui.screens.dialogs import FormScreen
from tui.screens.jobs import JobsScreen
from tui.screens.points import PointsScreen
from tui.screens.sessions import SessionScreen
from tui.screens.wizard import JobWizard

pytestmark = pytest.mark.slow

HEAD = re.compile(r"· (\d+)% ·")


async def test_wizard_run_follow_and_restore_a_disk_by_keys(lab: Lab, tmp_path: Path) -> None:
    grow_and_fill(lab)
    target = tmp_path / "restored-disk0.img"
    client = ApplianceClient(lab.home / "appliance.sock")
    app = create_app(client)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            def shows(*texts: str) -> bool:
                screen = screen_text(app)
                return all(t in screen for t in texts)

            await until(pilot, lambda: shows("main"), timeout=30, why="the dashboard")
            await pilot.press("2")
            await until(pilot, lambda: isinstance(app.screen, JobsScreen))
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, JobWizard))
            tree = app.screen.query_one(Tree)
            await pilot.press(*"e2e", "ctrl+n")
            await until(pilot, lambda: shows(f"[ ] {VM}"), timeout=60, why="the inventory")
            while VM not in str(tree.cursor_node.label if tree.cursor_node else ""):
                await pilot.press("down")
            await pilot.press("enter", "ctrl+n", "ctrl+n")  # VM picked; repository main
            await until(pilot, lambda: shows("4/6 Processing"))
            await pilot.press("backspace", "backspace", *"256K", "ctrl+n", "ctrl+n")
            await until(pilot, lambda: shows("6/6 Summary", "block 256K", f"VMs          {VM}"))
            await pilot.press("ctrl+s")
            await until(pilot, lambda: isinstance(app.screen, JobsScreen) and shows("e2e"),
                        timeout=60, why="the job saved")

            await pilot.press("r")
            await until(pilot, lambda: isinstance(app.screen, SessionScreen), timeout=30)
            seen: list[int] = []
            while not shows("✓ success"):
                m = HEAD.search(screen_text(app))
                if m and (not seen or int(m.group(1)) != seen[-1]):
                    seen.append(int(m.group(1)))
                assert not shows("✗ failed"), screen_text(app)
                await pilot.pause(0.01)
                assert len(seen) < 10_000
            intermediate = [p for p in seen if 0 < p < 100]
            assert len(set(intermediate)) >= 3, seen
            assert intermediate == sorted(intermediate)
            # the head may say success a refresh before the log's last line is drawn
            await until(pilot, lambda: shows("session ended: success"), timeout=10,
                        why="the log's last line")

            await pilot.press("escape", "5")
            await until(pilot, lambda: isinstance(app.screen, PointsScreen)
                        and shows(f"Restore points of {VM}", "full"), timeout=30)
            await pilot.press("tab", "d")  # the timeline; its newest point; restore a disk
            await until(pilot, lambda: isinstance(app.screen, FormScreen))
            await pilot.press("enter", *str(target), "enter")
            # the restore is a session: its view opens and follows it to what was restored
            await until(pilot, lambda: isinstance(app.screen, SessionScreen)
                        and shows(f"restore {VM} disk 0", "✓ success",
                                  "✓ restored disk 0 of"), timeout=120,
                        why="the restore done")
    finally:
        client.close()
    want = lab.flat().read_bytes()[:SIZE]
    want += bytes(SIZE - len(want))
    assert target.read_bytes() == want


async def test_keys_are_answered_while_a_backup_runs_at_full_speed(lab: Lab) -> None:
    """A real backup runs; each screen switch shows the new screen within 0.3 s."""
    grow_and_fill(lab)
    assert lab.vmkeep("job", "create", "busy", "--vcenter", "vc", "--vm", VM, "--repo",
                      "main", "--enable-cbt", "--block-size", "256K").code == 0
    client = ApplianceClient(lab.home / "appliance.sock")
    app = create_app(client)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: "busy" in screen_text(app), timeout=30)
            sid = lab.vmkeep("job", "run", "busy").out.strip()
            answered = 0
            for key, title in (("2", "Last result"), ("7", "vCenters"), ("3", "newest first"),
                               ("1", "Running")) * 3:
                await pilot.press(key)
                await until(pilot, lambda t=title: t in screen_text(app),  # type: ignore[misc]
                            timeout=0.3, why=f"{title} at once")
                answered += client.session(sid).state == "running"
            assert answered >= 3, f"the backup ended before the keys were tried ({answered})"
    finally:
        client.close()
