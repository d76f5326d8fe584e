"""Pilot tests of every screen against the fake client: what the user sees, and which calls
reach the appliance."""

from __future__ import annotations

from typing import Any

import pytest
from textual.widgets import DataTable, Input, TextArea, Tree

from appliance import api
from tests.tui.fake import NOW, FakeClient
from tests.tui.helpers import cells, screen_text, until
from tui.app import VmkeepApp, create_app
from tui.screens.catalog import CatalogScreen
from tui.screens.dashboard import DashboardScreen
from tui.screens.dialogs import ConfirmScreen, FormScreen, TypeToConfirmScreen
from tui.screens.jobs import JobsScreen
from tui.screens.sessions import SessionScreen
from tui.screens.wizard import JobWizard

VM = "DC0_H0_VM0"
SIZE = (80, 24)


def app_for(fake: FakeClient) -> VmkeepApp:
    return create_app(fake, clock=lambda: NOW, reconnect_every=0.05)


def shows(app: VmkeepApp, *texts: str) -> bool:
    screen = screen_text(app)
    return all(t in screen for t in texts)


async def test_the_dashboard_shows_jobs_repositories_and_alerts() -> None:
    fake = FakeClient()
    app = app_for(fake)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: shows(app, "nightly", "✓ success", "main", "Dedup"))
        text = screen_text(app)
        assert "Jobs" in text and "Repositories" in text and "no session running" in text
        assert "1.07×" in text  # the repository's dedup ratio
        assert "nothing needs action" in text
        assert {"jobs", "sessions", "repositories", "alerts"} <= {n for n, _ in fake.calls}


async def test_the_dashboard_shows_a_running_backup_per_vm_and_alerts() -> None:
    fake = FakeClient()
    fake.steps = 1000  # the backup stays running while the dashboard looks
    fake.start_backup("nightly")
    fake._jobs["nightly"] = fake._jobs["nightly"].model_copy(update={
        "last_session": api.SessionSummary(id="x", job="nightly", kind="backup",
                                           state="ended", result="failed",
                                           started=NOW, ended=NOW)})
    fake.add_recorded_alerts()
    app = app_for(fake)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: shows(app, "▶ nightly", VM, "%", "ETA", "source read"))
        text = screen_text(app)
        assert "▶ running" in text  # the job's status
        assert "✗ job nightly: last session failed" in text
        assert "⚠ repository main:" in text and "free" in text  # the appliance's alert


async def test_the_wizard_creates_a_job_in_veeams_order() -> None:
    fake = FakeClient()
    app = app_for(fake)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, JobsScreen) and shows(app, "nightly"))
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, JobWizard) and shows(app, "1/6 Name"))
        wizard = app.screen
        await until(pilot, lambda: fake.called("inventory"))
        await pilot.press(*"weekly")
        await pilot.press("ctrl+n")
        assert shows(app, "2/6 Virtual machines")
        await pilot.press("ctrl+n")  # no VM chosen yet: refused inline
        assert shows(app, "✗ choose at least one VM")
        tree = wizard.query_one(Tree)
        await until(pilot, lambda: any(VM in str(n.label) for n in _leaves(tree)))
        while VM not in str(tree.cursor_node.label if tree.cursor_node else ""):
            await pilot.press("down")
        await pilot.press("enter")
        assert shows(app, f"[x] {VM}")
        await pilot.press("ctrl+n")
        assert shows(app, "3/6 Repository and retention")
        await pilot.press("tab", *"7")  # keep the last 7 points
        await pilot.press("ctrl+n")
        assert shows(app, "4/6 Processing")
        await pilot.press("ctrl+n")
        assert shows(app, "5/6 Schedule")
        await pilot.press("ctrl+n")
        assert shows(app, "6/6 Summary", "Job          weekly", f"VMs          {VM}",
                     "last 7 points", "block 1M")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, JobsScreen) and shows(app, "weekly"))
    spec = fake.called("create_job")[0]["spec"]
    assert (spec.name, spec.vms, spec.repository, spec.keep_last) == ("weekly", [VM], "main", 7)
    assert spec.vcenter == "vc" and spec.enable_cbt is True


def _leaves(tree: Tree[Any]) -> list[Any]:
    out, todo = [], [tree.root]
    while todo:
        node = todo.pop()
        out.append(node)
        todo.extend(node.children)
    return out


async def test_the_wizard_edits_a_job_keeping_its_name() -> None:
    fake = FakeClient()
    app = app_for(fake)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: shows(app, "nightly"))
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, JobWizard) and fake.called("inventory"))
        assert app.screen.query_one("#job-name", Input).disabled
        for _ in range(4):
            await pilot.press("ctrl+n")
        assert shows(app, "5/6 Schedule")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: fake.called("edit_job"))
    call = fake.called("edit_job")[0]
    assert call["name"] == "nightly" and call["changes"].vms == [VM]
    assert call["changes"].keep_last == 7


async def test_running_a_job_opens_its_session_which_follows_to_the_end() -> None:
    fake = FakeClient()
    fake.delay = 0.05  # the appliance answers each long poll after a while
    app = app_for(fake)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: shows(app, "nightly"))
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, SessionScreen))
        screen = app.screen
        assert isinstance(screen, SessionScreen)
        await until(pilot, lambda: shows(app, "✓ success", "100%", "session ended: success"))
        rising = [p for p in screen.seen_percentages if 0 < p < 100]
        assert len(rising) >= 3 and rising == sorted(rising), screen.seen_percentages
        assert "⚠" in screen_text(app)  # the warning stands out
        assert fake.called("run_job") == [{"name": "nightly", "full": False}]
        assert fake.called("events") == [{"session_id": screen.session_id}]  # the stream
        await pilot.press("escape")
        await pilot.press("f")  # active full
        await until(pilot, lambda: fake.called("run_job")[-1:] == [{"name": "nightly",
                                                                    "full": True}])


async def test_without_the_event_stream_a_session_is_followed_by_long_polls() -> None:
    fake = FakeClient()
    fake.delay = 0.05
    fake.no_events = True
    fake.steps = 10  # the dashboard may look (and so advance the fake) before the view opens
    sid = fake.start_backup("nightly").id
    app = app_for(fake)
    async with app.run_test(size=SIZE) as pilot:
        app.action_open_session(sid)
        await until(pilot, lambda: shows(app, "✓ success", "100%", "session ended: success"))
        screen = app.screen
        assert isinstance(screen, SessionScreen)
        rising = [p for p in screen.seen_percentages if 0 < p < 100]
        assert len(rising) >= 3 and rising == sorted(rising), screen.seen_percentages
        waits = [c["wait"] for c in fake.called("session") if c["session_id"] == sid]
        assert sum(w > 0 for w in waits) >= 3  # followed by long polls


async def test_jobs_stop_disable_and_delete_after_a_confirmation() -> None:
    fake = FakeClient()
    app = app_for(fake)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: shows(app, "nightly"))
        await pilot.press("s")
        await until(pilot, lambda: fake.called("stop_job"))
        await pilot.press("t")
        await until(pilot, lambda: cells(app.screen.query_one(DataTable))[0][1] == "no")
        assert fake.called("set_job_enabled") == [{"name": "nightly", "enabled": False}]
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert shows(app, "Delete job nightly?", "stay in repository main")
        await pilot.press("n")
        assert not fake.called("delete_job")
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: fake.called("delete_job") and not shows(app, "nightly"))


async def test_the_session_history_opens_a_finished_session() -> None:
    fake = FakeClient()
    app = app_for(fake)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await until(pilot, lambda: shows(app, "Sessions (newest first)", "nightly"))
        await pilot.press("enter")
        await until(pilot, lambda: shows(app, "session ended: success", "CBT sanity check"))
        assert isinstance(app.screen, SessionScreen)
        assert shows(app, "✓ success", VM, "100%")


async def test_the_inventory_tree_shows_each_vms_protection() -> None:
    fake = FakeClient()
    app = app_for(fake)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await until(pilot, lambda: shows(app, "◆ vc", "▣ DC0", f"{VM} · on · CBT on · jobs: "
                                                               "nightly"))
        assert shows(app, "DC0_H0_VM1 · on · CBT off · unprotected")


async def test_restore_points_verify_and_restore_a_disk_and_a_vm() -> None:
    fake = FakeClient()
    app = app_for(fake)
    newest = fake.points()[-1]
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await until(pilot, lambda: shows(app, f"Restore points of {VM}", "incremental", "full"))
        await pilot.press("tab")  # to the timeline
        await pilot.press("c")
        await until(pilot, lambda: shows(app, "✓ ok"))
        assert fake.called("verify") == [{"repository": "main", "point": newest.id}]
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, FormScreen))
        assert shows(app, "Disks: 0")
        await pilot.press("tab", *"/tmp/x.img", "enter")
        await until(pilot, lambda: fake.called("restore_disk"))
        assert fake.called("restore_disk") == [{"point": newest.id, "disk": 0,
                                                "to": "/tmp/x.img"}]
        # the restore's session opens; back to the points
        await until(pilot, lambda: isinstance(app.screen, SessionScreen)
                    and shows(app, f"restore {VM} disk 0 · restore"))
        await pilot.press("escape")
        await until(pilot, lambda: shows(app, f"Restore points of {VM}"))
        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, FormScreen))
        app.screen.query_one(Input).value = ""  # no new name: over the original
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, TypeToConfirmScreen))
        assert shows(app, f"Overwrite VM {VM}?", "OVERWRITES its disks",
                     "disk 0: overwrite")
        assert not fake.called("restore_vm")  # only planned so far
        await pilot.press("y", "enter")  # `y` is not enough: the VM's name is
        await until(pilot, lambda: shows(app, "nothing was changed"))
        assert not fake.called("restore_vm")
        app.screen.query_one(Input).value = VM
        await pilot.press("enter")
        await until(pilot, lambda: fake.called("restore_vm"))
        assert fake.called("restore_vm")[-1]["request"].confirm is True


async def test_a_vm_restore_goes_where_the_original_was_and_shows_its_plan_first() -> None:
    """The restore dialog is filled with where the original VM runs (as the appliance
    resolves it); a name left as it is stays unset in the request (the appliance takes the
    original's), one changed is sent — the networks too; the plan is shown before anything
    is done."""
    fake = FakeClient()
    app = app_for(fake)
    point = fake.points()[-1]
    host = next(v.host for v in fake.inventory() if v.name == VM)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await until(pilot, lambda: shows(app, f"Restore points of {VM}"))
        await pilot.press("tab", "v")
        await until(pilot, lambda: isinstance(app.screen, FormScreen))
        fields = {i.id: i.value for i in app.screen.query(Input)}
        assert fields["field-host"] == host and fields["field-datastore"] == "LocalDS_0"
        assert fields["field-name"] == f"{VM}-restored"
        assert shows(app, "where the original was")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert shows(app, f"Restore {VM} as a new VM {VM}-restored?", f"host {host!r}")
        asked = fake.called("plan_restore_vm")[-1]["request"]
        assert (asked.name, asked.host, asked.datastore, asked.networks) == \
            (f"{VM}-restored", None, None, {})
        assert not fake.called("restore_vm")
        await pilot.press("y")
        await until(pilot, lambda: fake.called("restore_vm"))
        assert fake.called("restore_vm")[-1]["request"] == asked
        await until(pilot, lambda: isinstance(app.screen, SessionScreen))
        await pilot.press("escape")
        await until(pilot, lambda: shows(app, f"Restore points of {VM}"))
        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, FormScreen))
        assert app.screen.query_one("#field-net0", Input).value == "VM Network"
        assert shows(app, "Network for the NICs on 'VM Network'")
        app.screen.query_one("#field-host", Input).value = "DC0_C0_H0"
        app.screen.query_one("#field-net0", Input).value = "isolated"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert fake.called("plan_restore_vm")[-1]["request"].host == "DC0_C0_H0"
        assert fake.called("plan_restore_vm")[-1]["request"].networks == {
            "VM Network": "isolated"}
        assert point.id == fake.called("plan_restore_vm")[-1]["request"].point


async def test_the_catalog_console_runs_ready_queries_and_shows_errors_inline() -> None:
    fake = FakeClient()
    app = app_for(fake)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6")
        await until(pilot, lambda: isinstance(app.screen, CatalogScreen))
        await pilot.press("enter")  # the first ready-made query into the editor
        await pilot.press("ctrl+r")
        await until(pilot, lambda: shows(app, "✓ 1 row(s)", "full_points"))
        assert cells(app.screen.query_one("#results", DataTable))[0][0] == VM
        editor = app.screen.query_one(TextArea)
        editor.text = ""
        await pilot.press("ctrl+e", *"DROP TABLE points", "ctrl+r")
        await until(pilot, lambda: shows(app, "✗ query refused"))
        assert fake.called("query")[-1] == {"sql": "DROP TABLE points"}
        assert shows(app, "↺ DROP TABLE points")  # in the history


async def test_repositories_and_vcenters_add_with_fingerprint_test_and_rescan() -> None:
    fake = FakeClient()
    app = app_for(fake)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("7")
        await until(pilot, lambda: shows(app, "Repositories", "main", "vCenters", "vc"))
        await pilot.press("r")
        await until(pilot, lambda: fake.called("rescan_repository") == [{"name": "main"}])
        await pilot.press("t")
        await until(pilot, lambda: fake.called("test_vcenter") == [{"name": "vc"}])
        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, FormScreen))
        for text in ("vc2", "vc2.example", "443", "admin", "secret"):
            app.screen.focused.value = text  # type: ignore[union-attr]
            await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert shows(app, "Trust the certificate", "44:8F:62")
        await pilot.press("y")
        await until(pilot, lambda: len(fake.called("add_vcenter")) == 2)
        pinned = fake.called("add_vcenter")[1]["spec"]
        assert pinned.fingerprint.startswith("44:8F:62") and pinned.password == "secret"
        await until(pilot, lambda: shows(app, "vc2.example"))
        assert "secret" not in screen_text(app)
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, FormScreen))
        await pilot.press(*"second", "enter", *"/tmp/second", "enter")
        await until(pilot, lambda: fake.called("add_repository"))
        assert fake.called("add_repository") == [{"name": "second", "path": "/tmp/second"}]


async def test_the_app_says_when_the_appliance_goes_and_reconnects() -> None:
    fake = FakeClient()
    app = app_for(fake)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: shows(app, "nightly"))
        fake.down = True
        await pilot.press("f5")
        await until(pilot, lambda: shows(app, "appliance not answering — reconnecting"))
        fake.down = False
        await until(pilot, lambda: not shows(app, "appliance not answering"))
        assert any("reconnected to the appliance" in n.message for n in app._notifications)


async def test_every_action_is_in_the_command_palette() -> None:
    fake = FakeClient()
    app = app_for(fake)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: shows(app, "nightly"))
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for want in ("New", "Edit", "Run", "Active full", "Stop", "On/off", "Delete",
                     "Go to Dashboard", "Go to Repos"):
            assert want in titles
        await pilot.press("ctrl+p")
        await pilot.press(*"On/off")
        await until(pilot, lambda: shows(app, "key t"))
        await pilot.press("enter")
        await until(pilot, lambda: fake.called("set_job_enabled") == [
            {"name": "nightly", "enabled": False}])
        await pilot.press("ctrl+p")
        await pilot.press(*"Go to Inventory")
        await until(pilot, lambda: shows(app, "Go to Inventory"))
        await pilot.press("enter")
        await until(pilot, lambda: shows(app, "◆ vc"))


async def test_ctrl_q_quits() -> None:
    app = app_for(FakeClient())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+q")
    assert app.return_code == 0


async def test_the_ui_answers_keys_while_a_backup_runs_and_the_appliance_is_slow() -> None:
    """Each call takes 0.5 s (a busy appliance) while a backup runs: screens still switch at
    once, because every call runs in a worker thread."""
    fake = FakeClient()
    fake.steps = 1000
    fake.start_backup("nightly")
    fake.delay = 0.5
    app = app_for(fake)
    async with app.run_test(size=SIZE) as pilot:
        for key, title in (("2", "Jobs"), ("7", "Repositories"), ("1", "Running"),
                           ("3", "Sessions (newest first)")):
            await pilot.press(key)
            await until(pilot, lambda t=title: shows(app, t), timeout=0.3,  # type: ignore[misc]
                        why=f"the {title} screen answered at once")
        await until(pilot, lambda: shows(app, "nightly"), timeout=10)


async def test_no_color_keeps_every_state_readable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = app_for(FakeClient())
    assert app.no_color
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: shows(app, "✓ success", "enabled", "nothing needs action"))
        assert isinstance(app.screen, DashboardScreen)


async def test_ssh_hardened_repositories_and_copy_jobs_say_what_they_are() -> None:
    """Issue 6 in the TUI: a repository's type (SSH), encryption and immutable-until date on
    the Repositories screen; a copy job and a log job say what they work on."""
    from datetime import datetime

    fake = FakeClient()
    remote = fake._repositories[0].model_copy(update={
        "name": "offsite", "kind": "sftp", "location": "sftp://vmkeep@backup01/srv/vmkeep",
        "encrypted": True, "immutable_days": 14,
        "immutable_until": datetime(2027, 1, 20, tzinfo=NOW.tzinfo)})
    fake._repositories.append(remote)
    nightly = fake._jobs["nightly"]
    fake._jobs["offsite"] = nightly.model_copy(update={"spec": nightly.spec.model_copy(update={
        "name": "offsite", "vms": [], "repository": "offsite", "copy_of": ["nightly"]})})
    app = app_for(fake)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("7")
        await until(pilot, lambda: shows(app, "offsite"))
        text = screen_text(app)
        assert "SSH" in text and "encrypted" in text and "locked until 2027-01-20" in text
        await pilot.press("2")
        await until(pilot, lambda: shows(app, "copy of nightly"))


async def test_restore_points_say_what_guest_processing_did() -> None:
    """Issue 7 in the TUI: a point backed up with scripts and a PostgreSQL base backup says
    so in its timeline; a failed script shows ✗."""
    fake = FakeClient()
    newest, older = fake._points[-1], fake._points[-2]

    def script(exit_code: int) -> api.ScriptRecord:
        return api.ScriptRecord(name="pre-freeze", exit_code=exit_code, timed_out=False,
                                started="2026-01-01T00:00:00+00:00",
                                ended="2026-01-01T00:00:01+00:00", stdout="", stderr="")

    fake._points[-1] = newest.model_copy(update={"guest_processing": api.GuestProcessing(
        quiesced=False, scripts=[script(0)],
        postgres=api.PostgresRecord(backup_label="START WAL LOCATION: 0/2000028"))})
    fake._points[-2] = older.model_copy(update={"guest_processing": api.GuestProcessing(
        scripts=[script(3)])})
    app = app_for(fake)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("5")
        await until(pilot, lambda: shows(app, "scripts ✓, pg ✓", "scripts ✗"))


async def test_names_with_a_newline_or_escape_codes_are_shown_escaped() -> None:
    """A VM named with a newline and a terminal escape code (vCenter allows it): the restore
    points and the inventory show it on one line, escaped; no escape code reaches the
    terminal."""
    fake = FakeClient()
    evil = "db\n\x1b[31mX"
    fake._points = [p.model_copy(update={"vm": evil}) for p in fake._points]
    fake._inventory = [fake._inventory[0].model_copy(update={"name": evil}),
                       *fake._inventory[1:]]
    app = app_for(fake)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await until(pilot, lambda: shows(app, "Restore points of db\\n\\x1b[31mX"))
        assert "\x1b" not in screen_text(app)
        await pilot.press("4")
        await until(pilot, lambda: shows(app, "db\\n\\x1b[31mX · on"))
        assert "\x1b" not in screen_text(app)
        await pilot.press("2", "n")  # the new job wizard's tree of VMs
        await until(pilot, lambda: isinstance(app.screen, JobWizard))
        await pilot.press(*"weekly", "ctrl+n")
        await until(pilot, lambda: shows(app, "[ ] db\\n\\x1b[31mX"))
        assert "\x1b" not in screen_text(app)


async def test_pinning_and_confirming_read_the_errors_detail_not_its_message() -> None:
    # Every refusal the TUI acts on comes with a random message: the certificate to trust
    # and the plan to confirm are shown from the error's detail, and acted on.
    fake = FakeClient()
    fake.scramble = True
    fingerprint = fake.recorded["errors"]["add_vcenter_unpinned"]["detail"]["fingerprint"]
    app = app_for(fake)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("7")
        await until(pilot, lambda: shows(app, "Repositories", "vCenters", "vc"))
        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, FormScreen))
        for text in ("vc2", "vc2.example", "443", "admin", "secret"):
            app.screen.focused.value = text  # type: ignore[union-attr]
            await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert shows(app, "Trust the certificate of vc2.example:443?")
        unwrapped = "".join(c for c in screen_text(app) if c not in " ┃\n")
        assert fingerprint in unwrapped  # whole, though the dialog wraps it
        await pilot.press("y")
        await until(pilot, lambda: len(fake.called("add_vcenter")) == 2)
        assert fake.called("add_vcenter")[1]["spec"].fingerprint == fingerprint

        await pilot.press("5")
        await until(pilot, lambda: shows(app, f"Restore points of {VM}"))
        await pilot.press("tab", "v")
        await until(pilot, lambda: isinstance(app.screen, FormScreen))
        app.screen.query_one(Input).value = ""  # no new name: over the original
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, TypeToConfirmScreen))
        assert shows(app, f"Overwrite VM {VM}?", "THIS OVERWRITES its disks",
                     "the VM is powered on", "disk 0: overwrite [LocalDS_0]")
        app.screen.query_one(Input).value = VM
        await pilot.press("enter")
        await until(pilot, lambda: fake.called("restore_vm")[-1]["request"].confirm)


async def test_a_damaged_verify_names_the_vm_the_cause_and_the_next_step() -> None:
    fake = FakeClient()
    app = app_for(fake)
    newest = fake.points()[-1]
    damaged = api.VerifyAnswer(
        ok=False, summary="checked 1 points, 2 packs, 9 blocks (1.0 MiB)",
        damage=[f"packs/ab/[x].pack: checksum mismatch; affects {newest.id}"],
        points=[api.DamagedPoint(point=newest.id, vm=VM, jobs=["nightly"],
                                 causes=["packs/ab/[x].pack: checksum mismatch"])],
        next_step="run job nightly (`vmkeep job run NAME`): the next backup stores the "
                  "damaged blocks anew")
    fake.verify = lambda repository, point=None: damaged  # type: ignore[method-assign]
    async with app.run_test(size=(180, 40)) as pilot:  # the report's lines unwrapped
        await pilot.press("5")
        await until(pilot, lambda: shows(app, f"Restore points of {VM}"))
        await pilot.press("tab", "c")
        await until(pilot, lambda: shows(app, "✗ damaged:", f"VM {VM} (job nightly)",
                                         "packs/ab/[x].pack: checksum mismatch",
                                         "Next: run job nightly"))
