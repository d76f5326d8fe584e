"""Pictures of the screens at 80×24 (pytest-textual-snapshot; goldens in __snapshots__/,
refreshed with ``pytest tests/tui --snapshot-update``). Each docstring says what the picture
must show; a reviewer checks a changed golden against it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from tests.tui.fake import NOW, FakeClient
from tests.tui.helpers import screen_text, until
from tui.app import VmkeepApp, create_app

SIZE = (80, 24)
Compare = Callable[..., bool]


def app_for(fake: FakeClient) -> VmkeepApp:
    return create_app(fake, clock=lambda: NOW, reconnect_every=0.05)


def seeing(*texts: str, keys: tuple[str, ...] = ()
           ) -> Callable[[Pilot[Any]], Awaitable[None]]:
    """Press ``keys``, then wait until the screen shows ``texts``."""
    async def wait(pilot: Pilot[Any]) -> None:
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
        app = pilot.app
        assert isinstance(app, VmkeepApp)
        await until(pilot, lambda: all(t in screen_text(app) for t in texts))
        await pilot.pause()

    return wait


def test_dashboard_during_a_backup(snap_compare: Compare) -> None:
    """The dashboard while job "nightly" backs up DC0_H0_VM0: the jobs panel with the job
    "▶ running" (last result ✓ success), the Running panel with the VM's bar at 40 %, bytes
    64.0/160.0 MiB, a rate, an ETA and the bottleneck "source read"; repository "main" with its
    used space and dedup ratio; alerts "✓ nothing needs action"; the footer's keys."""
    fake = FakeClient()
    fake.running_backup(at=2)
    assert snap_compare(app_for(fake), terminal_size=SIZE,
                        run_before=seeing("40%", "source read", "Dedup", "nothing needs action"))


def test_jobs_list(snap_compare: Compare) -> None:
    """The Jobs screen at 80×24: job "nightly", enabled, 1 VM, manual schedule, next run
    "manual" (issue 15), ✓ success, its last run whole — the Repository column is left out
    to fit (issue 15: the least important column first); the footer lists New, Edit, Run,
    Active full, Stop, Enable/disable, Delete."""
    assert snap_compare(app_for(FakeClient()), terminal_size=SIZE,
                        run_before=seeing("✓ success", "manual", keys=("2",)))


def test_session_view_of_a_finished_backup(snap_compare: Compare) -> None:
    """A finished session from the history: the head "nightly · backup · ✓ success · 100%",
    the VM's full bar with its "└ disk 0" row below, and the log with the snapshot, the CBT
    sanity check and "session ended: success"."""
    assert snap_compare(app_for(FakeClient()), terminal_size=SIZE,
                        run_before=seeing("session ended: success", keys=("3", "enter")))


def test_wizard_vm_step(snap_compare: Compare) -> None:
    """Step 2/6 of the new-job wizard: the inventory tree vc's datacenter DC0 with its hosts
    and four VMs, DC0_H0_VM0 ticked "[x]"; the footer's Next, Back, Save job, Cancel."""
    async def pick(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, VmkeepApp)
        await until(pilot, lambda: "DC0_H0_VM1" in screen_text(app))
        await pilot.press("down", "down", "down", "down", "down", "down", "down", "enter")
        await until(pilot, lambda: "[x]" in screen_text(app))

    async def steps(pilot: Pilot[Any]) -> None:
        await seeing("1/6 Name", keys=("2", "n"))(pilot)
        await pilot.press(*"weekly", "ctrl+n")
        await pick(pilot)

    assert snap_compare(app_for(FakeClient()), terminal_size=SIZE, run_before=steps)


def test_restore_points_timeline(snap_compare: Compare) -> None:
    """The Points screen: VM DC0_H0_VM0 (2) on the left, its timeline on the right newest
    first (incremental, then full) with sizes; the footer's Restore VM, Restore disk,
    Verify now."""
    assert snap_compare(app_for(FakeClient()), terminal_size=SIZE,
                        run_before=seeing("incremental", "full", keys=("5",)))


def test_catalog_console_with_results(snap_compare: Compare) -> None:
    """The catalog console after running the ready-made "points per VM": the SQL in the
    editor, the query in the history (↺) above the ready-made list, "✓ 1 row(s)" and the
    results table with DC0_H0_VM0, main, 2 points, 1 full."""
    async def run(pilot: Pilot[Any]) -> None:
        await seeing("✓ 1 row(s)", keys=("6", "enter", "ctrl+r"))(pilot)

    assert snap_compare(app_for(FakeClient()), terminal_size=SIZE, run_before=run)


def test_repositories_and_vcenters(snap_compare: Compare) -> None:
    """The Repos screen: repository main at /srv/vmkeep/main with 2 points and its free space
    with the share free; vCenter vc on
    127.0.0.1 marked "⚠ not checked (insecure)"; footer keys Add repository, Rescan, Add
    vCenter, Test vCenter."""
    assert snap_compare(app_for(FakeClient()), terminal_size=SIZE,
                        run_before=seeing("/srv/vmkeep/main", "insecure", keys=("7",)))


def test_the_readme_picture_is_the_dashboard_snapshot() -> None:
    """docs/tui-dashboard.svg (shown in the README) is the golden picture of the dashboard
    during a backup; after `--snapshot-update`, copy it there."""
    root = Path(__file__).resolve().parents[2]
    golden = Path(__file__).with_name("__snapshots__") / "test_snapshots" / \
        "test_dashboard_during_a_backup.svg"
    assert (root / "docs" / "tui-dashboard.svg").read_bytes() == golden.read_bytes()
    assert "docs/tui-dashboard.svg" in (root / "README.md").read_text()
