"""Pictures of every screen at 80×24 and 120×40 (pytest-textual-snapshot; goldens in
__snapshots__/, refreshed with ``pytest tests/tui --snapshot-update``). Each docstring says
what the picture must show at each size — the key columns and the footer's keys; a reviewer
checks a changed golden against it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.tui.fake import NOW, FakeClient
from tests.tui.helpers import screen_text, until
from tui.app import VmkeepApp, create_app

SMALL, LARGE = (80, 24), (120, 40)
#: Both sizes, named as the goldens are (``test_x[80x24]``, ``test_x[120x40]``).
SIZES = pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "120x40"])
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


@SIZES
def test_dashboard_during_a_backup(snap_compare: Compare, size: tuple[int, int]) -> None:
    """The dashboard while job "nightly" backs up DC0_H0_VM0, at both sizes: the jobs panel
    with the job "▶ running" (last result ✓ success) and its Next run "manual"; the Running
    panel "▶ nightly (backup) 40% since …" (the mean of its VMs') with the VM's bar at 40 %,
    bytes 64.0/160.0 MiB, a rate, an ETA and the bottleneck "source read"; repository "main"
    with its used space and dedup ratio; alerts "✓ nothing needs action"; the footer's Open
    session and Refresh."""
    fake = FakeClient()
    fake.running_backup(at=2)
    assert snap_compare(app_for(fake), terminal_size=size, run_before=seeing(
        "40%", "source read", "Dedup", "nothing needs action"))


@SIZES
def test_dashboard_of_a_fresh_appliance(snap_compare: Compare, size: tuple[int, int]
                                        ) -> None:
    """The dashboard of an appliance with nothing yet, at both sizes: the jobs table "no job
    yet — press 2, then n", the repositories table "no repository yet — press 7, then a",
    "no session running", "✓ nothing needs action"; the footer's Open session and Refresh."""
    assert snap_compare(app_for(FakeClient.empty()), terminal_size=size, run_before=seeing(
        "no job yet", "no repository yet", "no session running", "nothing needs action"))


@SIZES
def test_jobs_list(snap_compare: Compare, size: tuple[int, int]) -> None:
    """The Jobs screen: job "nightly", ✓ success, next run "manual" (issue 15), its last run
    whole. At 80×24 the columns Job, On, VMs, Schedule, Next run, Last result and Last run
    show and Repository is left out to fit (issue 15: the least important column first); at
    120×40 every column shows, Repository "main" too. The footer, whole at both sizes (it
    is compact and has no palette entry): New, Edit, Run, Active full, Stop, On/off
    (enable/disable), Delete, Filter, Quit."""
    assert snap_compare(app_for(FakeClient()), terminal_size=size,
                        run_before=seeing("✓ success", "manual", keys=("2",)))


@SIZES
def test_sessions_list(snap_compare: Compare, size: tuple[int, int]) -> None:
    """The Sessions screen, newest first: each session of "nightly" with its start, kind
    backup, "✓ success" and its end (columns Started, Job, Kind, Result, Ended at both
    sizes); the footer's Open session and Filter."""
    assert snap_compare(app_for(FakeClient()), terminal_size=size,
                        run_before=seeing("✓ success", "Ended", keys=("3",)))


@SIZES
def test_session_view_of_a_finished_backup(snap_compare: Compare, size: tuple[int, int]
                                           ) -> None:
    """A finished session from the history, at both sizes: the head "nightly · backup ·
    ✓ success · 100%" with its span in UTC, the session's summary (took, rate, processed,
    read, transferred, dedup and compression, the bottleneck with each stage's share), the
    VM's full bar with its "└ disk 0" row below and its Result
    "✓ success", and the log with "session ended: success", its lines wrapped at the log's
    width (at 120×40 the point's line whole up to "bytes read, status"); the footer's Back and
    Stop job."""
    assert snap_compare(app_for(FakeClient()), terminal_size=size,
                        run_before=seeing("session ended: success", keys=("3", "enter")))


@SIZES
def test_inventory_tree(snap_compare: Compare, size: tuple[int, int]) -> None:
    """The Inventory screen, at both sizes: vCenter vc → DC0 → its hosts, each VM with its
    power state and CBT, DC0_H0_VM0 "jobs: nightly" (highlighted), the others
    "unprotected"; below, all four lines of DC0_H0_VM0's details (its uuid and host; power,
    CBT, snapshots; disks, jobs, last point; "last result success (job nightly) · RPO
    none"); the title names `h`
    for the VM's history; the footer's History, Refresh and Filter."""
    async def highlight(pilot: Pilot[Any]) -> None:
        await seeing("jobs: nightly", "unprotected", keys=("4",))(pilot)
        await pilot.press(*["down"] * 8)
        await seeing("RPO none")(pilot)

    assert snap_compare(app_for(FakeClient()), terminal_size=size, run_before=highlight)


@SIZES
def test_restore_points_timeline(snap_compare: Compare, size: tuple[int, int]) -> None:
    """The Points screen: VM DC0_H0_VM0 (2) on the left, its timeline on the right newest
    first (incremental, then full), each point's job "nightly". At 80×24 the columns
    Created, Kind, Verified and Job show (Repository, sizes and id left out to fit); at
    120×40 Repository "main", Stored and Read too (the id left out). The footer, whole at
    both sizes: Restore VM, Restore disk, Verify now, History, Refresh, Filter, Quit."""
    assert snap_compare(app_for(FakeClient()), terminal_size=size,
                        run_before=seeing("incremental", "full", "nightly", keys=("5",)))


@SIZES
def test_vm_view(snap_compare: Compare, size: tuple[int, int]) -> None:
    """The VM view of DC0_H0_VM0 (h on Points), at both sizes: its title, "no RPO set",
    its newest point (incremental, nightly → main), "jobs: nightly" and where it runs; "Last
    result per job" with nightly "✓ success" → main; its two points newest first with Created,
    Kind, Verified, Job "nightly", Repository "main" and Stored (at 120×40 Read and the id
    too); the footer's Back, Refresh and Filter."""
    assert snap_compare(app_for(FakeClient()), terminal_size=size, run_before=seeing(
        "Last result per job", "Restore points, newest first (2)",
        keys=("5", "h")))


@pytest.mark.parametrize(("key", "text"), [
    ("2", "vmkeep job create"), ("3", "No session yet"), ("4", "vmkeep vcenter add`"),
    ("5", "vmkeep job run")], ids=["jobs", "sessions", "inventory", "points"])
def test_empty_screens_say_what_to_do(snap_compare: Compare, key: str, text: str) -> None:
    """A fresh appliance at 80×24, each screen saying there is nothing and what to do, whole
    (a panel title wraps): Jobs "No job yet — press n to create one, or `vmkeep job create
    NAME --vm VM --repo REPO`" above the empty table, footer New … Delete, Filter; Sessions "No
    session yet — run a job on the Jobs screen (2, then r) or with `vmkeep job run NAME`",
    footer Open session, Filter; Inventory the tree's one line "No vCenter yet — add one: Repos
    screen (7, then v) or `vmkeep vcenter add`", footer History, Refresh, Filter; Points "No restore
    point yet — run a job on the Jobs screen (2, then r) or with `vmkeep job run NAME`"
    beside the empty VM list, footer Restore VM … Refresh, Filter."""
    assert snap_compare(app_for(FakeClient.empty()), terminal_size=SMALL,
                        run_before=seeing(text, keys=(key,)))


@SIZES
def test_wizard_vm_step(snap_compare: Compare, size: tuple[int, int]) -> None:
    """Step 2/6 of the new-job wizard, at both sizes: the inventory tree vc's datacenter DC0
    with its hosts and four VMs, DC0_H0_VM0 ticked "[x]", the others "[ ]"; the footer's Next,
    Back, Save job, Cancel, Filter."""
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

    assert snap_compare(app_for(FakeClient()), terminal_size=size, run_before=steps)


@SIZES
def test_catalog_console_with_results(snap_compare: Compare, size: tuple[int, int]) -> None:
    """The catalog console after running the ready-made "points per VM", at both sizes: the
    SQL in the editor, the query in the history (↺) above the ready-made list, "✓ 1 row(s)"
    and the results table with DC0_H0_VM0, main, 2 points, 1 full; the footer's Run."""
    async def run(pilot: Pilot[Any]) -> None:
        await seeing("✓ 1 row(s)", keys=("6", "enter", "ctrl+r"))(pilot)

    assert snap_compare(app_for(FakeClient()), terminal_size=size, run_before=run)


@SIZES
def test_repositories_and_vcenters(snap_compare: Compare, size: tuple[int, int]) -> None:
    """The Repos screen, at both sizes: repository main at /srv/vmkeep/main with 2 points
    and its free space with the share free; vCenter vc on 127.0.0.1 marked "⚠ not checked
    (insecure)"; footer keys Add repository, Rescan, Add vCenter, Test vCenter, Filter."""
    assert snap_compare(app_for(FakeClient()), terminal_size=size,
                        run_before=seeing("/srv/vmkeep/main", "insecure", keys=("7",)))


def test_the_readme_picture_is_the_dashboard_snapshot() -> None:
    """docs/tui-dashboard.svg (shown in the README) is the golden picture of the dashboard
    during a backup; after `--snapshot-update`, copy it there."""
    root = Path(__file__).resolve().parents[2]
    golden = Path(__file__).with_name("__snapshots__") / "test_snapshots" / \
        "test_dashboard_during_a_backup[80x24].svg"
    assert (root / "docs" / "tui-dashboard.svg").read_bytes() == golden.read_bytes()
    assert "docs/tui-dashboard.svg" in (root / "README.md").read_text()
