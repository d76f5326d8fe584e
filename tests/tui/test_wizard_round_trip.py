"""Editing a job in the wizard and saving it unchanged changes nothing: a round trip over
every field of the job spec (``api.JobSpec.model_fields``) and of its schedule
(``api.ScheduleSpec.model_fields``). A field added to the spec without a value here fails
the test, so a new field needs wizard support (or a deliberate carry-through) and a value."""

from __future__ import annotations

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, TextArea

from appliance import api
from tests.tui.fake import FakeClient
from tests.tui.helpers import screen_text, until
from tests.tui.test_screens import SIZE, VM, app_for
from tui.app import VmkeepApp
from tui.screens.jobs import JobsScreen
from tui.screens.wizard import JobWizard

UUID = "b4689bed-97f0-5bcd-8a4c-07477cc8f06f"  # DC0_H0_VM0's, as the fake's inventory has it

SCHEDULES = {  # each with a time zone and what a kind can carry besides
    "monthly-nth": api.ScheduleSpec(kind="monthly", at="01:30", nth=-1, weekday="sun",
                                    tz="Europe/Berlin", window=["22:00-06:00"]),
    "monthly-day": api.ScheduleSpec(kind="monthly", at="03:15", day_of_month=-1,
                                    tz="America/New_York"),
    "daily": api.ScheduleSpec(kind="daily", at="21:45", days="mon,wed,fri",
                              tz="Asia/Tokyo", window=["20:00-23:00", "01:00-05:00"]),
    "periodic": api.ScheduleSpec(kind="periodic", every="90m", tz="Europe/Paris",
                                 window=["08:00-18:00"]),
    "after": api.ScheduleSpec(kind="after", after="other", tz="Australia/Sydney"),
}


def every_field(schedule: api.ScheduleSpec, *, vms: bool = True) -> dict[str, object]:
    """A value other than the default (and other than the wizard's defaults) for every field
    of ``api.JobSpec``; ``vms`` False: a job of a container only."""
    return {
        "name": "nightly",
        "vcenter": "vc",
        "vms": [api.JobVm(name=VM, instance_uuid=UUID)] if vms else [],
        "containers": ["/DC0/host/DC0_C0"],
        "repository": "main",
        "block_size": "4M",
        "compression": "zstd-9",
        "enable_cbt": False,
        "quiesce": True,
        "sample_blocks": 9,
        "keep_last": 11,
        "keep_days": 45.5,
        "schedule": schedule,
        "retries": 5,
        "retry_wait_seconds": 120.0,
        "notify_to": ["ops@example.com", "dba@example.com"],
        "exclude_disks": ["1", f"{VM}:2"],
        "active_full": "sat",
        "rpo_hours": 26.0,
        "parallel_vms": 4,
        "copy_of": ["other"],
        "guest": api.GuestSpec(host="10.0.0.5:2222", user="backup",
                               host_key_fingerprint="SHA256:abcdefghijklmnop",
                               pre_freeze="#!/bin/sh\nsync\n", post_thaw="#!/bin/sh\ntrue\n",
                               script_timeout_seconds=120.0, on_script_failure="warn",
                               unreachable="warn", postgres="localhost:5432:postgres"),
        "quiesce_fallback": "fail",
        "logs": api.LogBackupSpec(vm=VM, folder="/var/lib/pg/archive", pattern="*.wal",
                                  command="true", settle_seconds=5.0),
        "transport": "direct",
        "datastore_paths": {"LocalDS_0": "/mnt/ds0"},
    }


def test_every_job_spec_field_has_a_value_here() -> None:
    """A field added to the job spec (or its schedule) fails here until it has a value that
    is not its default; then the round trip shows whether the wizard keeps it."""
    values = every_field(SCHEDULES["monthly-nth"])
    assert set(values) == set(api.JobSpec.model_fields)
    for name, info in api.JobSpec.model_fields.items():
        if not info.is_required():
            assert values[name] != info.get_default(), f"{name}: give a non-default value"
    set_in_some = {name for s in SCHEDULES.values() for name, info in
                   api.ScheduleSpec.model_fields.items() if getattr(s, name) !=
                   info.get_default()}
    assert set_in_some == set(api.ScheduleSpec.model_fields)


def shows(app: VmkeepApp, text: str) -> bool:
    return text in screen_text(app)


@pytest.mark.parametrize("which", [*sorted(SCHEDULES), "containers-only", "copy"])
async def test_saving_an_unchanged_job_in_the_wizard_changes_nothing(which: str) -> None:
    fake = FakeClient()
    job = fake._jobs["nightly"]
    original = api.JobSpec.model_validate(
        every_field(SCHEDULES.get(which, SCHEDULES["monthly-nth"]),
                    vms=which not in ("containers-only", "copy")))
    if which == "copy":  # a copy job: no vCenter, no VMs, no containers
        original = original.model_copy(update={"vcenter": "", "containers": [], "logs": None,
                                               "guest": None})
    fake._jobs["nightly"] = job.model_copy(update={"spec": original})
    app = app_for(fake)
    async with app.run_test(size=SIZE) as pilot:
        await open_wizard(pilot, app, fake, "e")
        await pilot.pause(0.1)  # the vCenters and repositories fill their lists
        await pilot.press("ctrl+s")
        await until(pilot, lambda: fake.called("edit_job"), why="the job saved")
        await until(pilot, lambda: isinstance(app.screen, JobsScreen), why="the wizard closed")
    saved = fake._jobs["nightly"].spec
    for name in api.JobSpec.model_fields:
        assert getattr(saved, name) == getattr(original, name), name
    assert saved == original


async def open_wizard(pilot: Pilot[int], app: VmkeepApp, fake: FakeClient, key: str) -> None:
    """From the Jobs screen, ``e`` (edit "nightly") or ``n`` (new): until the wizard has
    the inventory."""
    await pilot.press("2")
    await until(pilot, lambda: isinstance(app.screen, JobsScreen) and shows(app, "nightly"))
    await pilot.press(key)
    await until(pilot, lambda: isinstance(app.screen, JobWizard) and fake.called("inventory"))


async def test_the_wizard_changes_the_time_zone_nth_weekday_rpo_and_guest_scripts() -> None:
    fake = FakeClient()
    job = fake._jobs["nightly"]
    original = api.JobSpec.model_validate(every_field(SCHEDULES["daily"]))
    fake._jobs["nightly"] = job.model_copy(update={"spec": original})
    app = app_for(fake)
    async with app.run_test(size=SIZE) as pilot:
        await open_wizard(pilot, app, fake, "e")
        wizard = app.screen
        for wid, value in (("kind", "monthly"), ("tz", "Europe/Berlin"), ("at", "01:30"),
                           ("nth", "last"), ("weekday", "sun"), ("rpo", "12"),
                           ("pre-freeze", "#!/bin/sh\necho frozen\n"), ("notify", "")):
            widget = wizard.query_one(f"#{wid}")
            if isinstance(widget, TextArea):
                widget.text = value
            else:
                widget.value = value  # type: ignore[attr-defined]
        for _ in range(5):
            await pilot.press("ctrl+n")
        await until(pilot, lambda: shows(app, "6/6 Summary"))
        assert shows(app, "monthly last sun 01:30 Europe/Berlin")
        await until(pilot, lambda: shows(app, "Pre-flight   ✓ 1 VM(s): 1 will back up"),
                    why="job check's answer in the summary")
        assert fake.called("check_job") == [{"name": "nightly"}]
        await pilot.press("ctrl+s")
        await until(pilot, lambda: fake.called("edit_job"), why="the job saved")
    changes = fake.called("edit_job")[0]["changes"]
    assert changes.guest is not None and changes.guest.password is None  # the login stays
    saved = fake._jobs["nightly"].spec
    assert saved.schedule == api.ScheduleSpec(
        kind="monthly", at="01:30", nth=-1, weekday="sun", tz="Europe/Berlin",
        days="mon,wed,fri", window=["20:00-23:00", "01:00-05:00"])  # days kept, not read
    assert saved.rpo_hours == 12.0 and saved.notify_to == []
    assert saved.guest == original.guest.model_copy(  # type: ignore[union-attr]
        update={"pre_freeze": "#!/bin/sh\necho frozen\n"})
    assert (saved.block_size, saved.containers, saved.transport) == (
        original.block_size, original.containers, original.transport)


async def test_a_new_job_of_a_container_only_saves() -> None:
    fake = FakeClient()
    app = app_for(fake)
    async with app.run_test(size=SIZE) as pilot:
        await open_wizard(pilot, app, fake, "n")
        await pilot.press(*"bycontainer")
        app.screen.query_one("#containers", Input).value = "/DC0/host/DC0_C0"
        await pilot.pause(0.1)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: fake.called("create_job"), why="the job saved")
    spec = fake.called("create_job")[0]["spec"]
    assert (spec.vms, spec.containers, spec.guest) == ([], ["/DC0/host/DC0_C0"], None)
