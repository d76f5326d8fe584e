"""Coverage at a glance in the TUI (issue 15): the dashboard and the Jobs screen show each
job's next run as the appliance gives it; the dashboard's alerts are the appliance's own
(``vmkeep alerts`` lists the same), a failed VM's naming the VM, the job and the reason."""

from __future__ import annotations

from datetime import timedelta

from textual.widgets import DataTable

from appliance import api
from appliance.jobs.schedule import next_run
from appliance.service.jobs import schedule_of
from tests.tui.fake import NOW, FakeClient
from tests.tui.helpers import cells, screen_text, until
from tui.app import VmkeepApp, create_app
from tui.screens.jobs import JobsScreen

WIDE = (200, 40)  # an alert's whole message on one line
FAILED = "DC0_H0_VM1"


def app_for(fake: FakeClient) -> VmkeepApp:
    return create_app(fake, clock=lambda: NOW, reconnect_every=0.05)


def scheduled(fake: FakeClient, schedule: api.ScheduleSpec) -> None:
    job = fake._jobs["nightly"]
    fake._jobs["nightly"] = job.model_copy(update={
        "spec": job.spec.model_copy(update={"schedule": schedule})})


async def test_the_dashboard_and_jobs_show_the_next_run_with_its_zone() -> None:
    fake = FakeClient()
    spec = api.ScheduleSpec(kind="daily", at="02:30", tz="Europe/Berlin")
    scheduled(fake, spec)
    due = next_run(schedule_of(spec), NOW)
    assert due is not None and fake.job("nightly").next_run == due
    text = "2026-12-02 02:30 CET"  # 01:30 UTC, the first 02:30 in Berlin after NOW
    assert due == NOW.replace(day=2, hour=1, minute=30) and api.next_run_text(
        fake.job("nightly")) == text
    app = app_for(fake)
    async with app.run_test(size=WIDE) as pilot:
        await until(pilot, lambda: text in screen_text(app))
        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, JobsScreen)
                    and bool(cells(app.screen.query_one(DataTable))))
        table = app.screen.query_one(DataTable)
        header = [str(c.label) for c in table.columns.values()]
        row = dict(zip(header, cells(table)[0], strict=True))
        assert row["Next run"] == text and row["Schedule"] == "daily 02:30"
        fake.set_job_enabled("nightly", False)
        await until(pilot, lambda: cells(table)[0][header.index("Next run")] == "—",
                    timeout=10)


async def test_a_failed_vm_shows_on_the_dashboard_as_vmkeep_alerts_lists_it() -> None:
    fake = FakeClient()
    started = NOW - timedelta(hours=1)
    reason = "disk 0 is in independent_persistent mode: snapshots do not freeze it"
    results: list[tuple[str, api.Result]] = [("DC0_H0_VM0", "success"), (FAILED, "failed")]
    session = api.Session(
        id="s-mixed", job="nightly", kind="backup", state="ended", result="failed",
        started=started, ended=NOW,
        tasks=[api.Task(name=name, vm=name, state="ended", result=result, bytes_done=0,
                        bytes_total=0, rate=0.0, eta_seconds=None, stage=None, point_id=None)
               for name, result in results],
        log=[api.LogLine(time=NOW, level="warning", message=f"{FAILED}: {reason}"),
             api.LogLine(time=NOW, level="info", message="session ended: failed")])
    fake._sessions[session.id] = session
    fake._jobs["nightly"] = fake._jobs["nightly"].model_copy(update={
        "last_session": api.SessionSummary(id=session.id, job="nightly", kind="backup",
                                           state="ended", result="failed", started=started,
                                           ended=NOW)})
    listed = fake.alerts()  # what `vmkeep alerts` prints, from the same route
    vm = next(a for a in listed if a.kind == "vm")
    assert vm.severity == "error" and vm.message == (
        f"VM {FAILED} (job nightly): failed in the last session (2026-12-01 11:00 UTC): "
        f"{reason}")
    app = app_for(fake)
    async with app.run_test(size=WIDE) as pilot:
        await until(pilot, lambda: "Alerts" in screen_text(app)
                    and "loading" not in screen_text(app))
        shown = screen_text(app)
        for a in listed:
            assert f"{'✗' if a.severity == 'error' else '⚠'} {a.message}" in shown, shown
        assert "✗ job nightly: last session failed (2026-12-01 11:00 UTC" in shown
