"""The scheduler with the real clock and seconds-long periods: a job runs by itself, a chained
job starts after its parent, failed VMs (only they) are retried after a wait, and nothing
scheduled starts outside the backup window."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pyVim.task import WaitForTask
from pyVmomi import vim

from appliance.vsphere.inventory import find_vm
from appliance.vsphere.session import connect
from tests import helpers
from tests.appliance.lab import VM, Lab
from tests.helpers import REPO_ROOT, T

OTHER = "DC0_H0_VM1"


def poll(what: str, check: Callable[[], T | None], timeout: float = 60.0) -> T:
    return helpers.poll(what, check, timeout, every=0.2)


def sessions_of(lab: Lab, job: str) -> list[dict[str, Any]]:
    return [s for s in json.loads(lab.vmkeep("session", "list", "--json").out)
            if s["job"] == job]


def create(lab: Lab, name: str, *extra: str, vms: tuple[str, ...] = (VM,)) -> None:
    args = ["job", "create", name, "--vcenter", "vc", "--repo", "main", "--enable-cbt"]
    for vm in vms:
        args += ["--vm", vm]
    r = lab.vmkeep(*args, *extra)
    assert r.code == 0, r.err


def test_a_periodic_job_runs_by_itself(lab: Lab) -> None:
    create(lab, "often", "--every", "2s")
    ended = poll("two scheduled sessions to end", lambda: [
        s for s in sessions_of(lab, "often") if s["state"] == "ended"][1:], timeout=90)
    assert ended[0]["result"] == "success"


def test_a_chained_job_starts_after_its_parent(lab: Lab) -> None:
    create(lab, "parent")
    create(lab, "child", "--after", "parent", vms=(OTHER,))
    assert sessions_of(lab, "child") == []
    assert lab.vmkeep("job", "run", "parent", "--wait").code == 0
    parent = sessions_of(lab, "parent")[0]
    child = poll("the chained job's session", lambda: sessions_of(lab, "child"))[0]
    assert child["started"] >= parent["ended"]
    poll("the chained session to end",
         lambda: sessions_of(lab, "child")[0]["state"] == "ended")


def set_disk_mode(lab: Lab, vm_name: str, mode: str) -> None:
    with connect(lab.sim.host, lab.sim.port, lab.sim.user, lab.sim.password,
                 fingerprint=None, insecure=True) as s:
        vm = s.content.searchIndex.FindByUuid(None, find_vm(s, vm_name).instance_uuid, True,
                                              True)
        disk: Any = next(d for d in vm.config.hardware.device
                         if isinstance(d, vim.vm.device.VirtualDisk))
        disk.backing.diskMode = mode
        WaitForTask(vm.ReconfigVM_Task(vim.vm.ConfigSpec(  # type: ignore[no-untyped-call]
            deviceChange=[vim.vm.device.VirtualDeviceSpec(  # type: ignore[no-untyped-call]
                operation="edit", device=disk)])))


def test_only_failed_vms_are_retried_after_the_wait(lab: Lab) -> None:
    create(lab, "two", "--retries", "2", "--retry-wait", "3s", vms=(VM, OTHER))
    set_disk_mode(lab, OTHER, "independent_persistent")  # cannot be backed up: fails
    run = subprocess.Popen([sys.executable, "-m", "appliance.cli", "job", "run", "two",
                            "--wait"], cwd=REPO_ROOT, env=lab.env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        sid = poll("the session", lambda: sessions_of(lab, "two"))[0]["id"]

        def retry_announced() -> bool:
            log = json.loads(lab.vmkeep("session", "show", sid, "--json").out)["log"]
            return any("retry 1 of 2" in x["message"] for x in log)

        poll("the retry to be announced", retry_announced)
        set_disk_mode(lab, OTHER, "persistent")  # fixed during the wait
        _out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    s = json.loads(lab.vmkeep("session", "show", sid, "--json").out)
    retry = next(x["message"] for x in s["log"] if "retry 1 of 2" in x["message"])
    assert retry.endswith(f"failed VMs only: {OTHER}")
    assert not any("retry 2" in x["message"] for x in s["log"])
    points = json.loads(lab.vmkeep("points", "list", "--json").out)
    assert sorted(p["vm"] for p in points) == [VM, OTHER]  # the good VM was not read twice
    assert s["result"] == "success"


def test_nothing_scheduled_starts_outside_the_backup_window(lab: Lab) -> None:
    now = datetime.now(UTC)
    opens, closes = now + timedelta(hours=2), now + timedelta(hours=3)
    create(lab, "windowed", "--every", "1s", "--window",
           f"{opens:%H:%M}-{closes:%H:%M}")
    create(lab, "open", "--every", "1s", vms=(OTHER,))
    # Both fall due every second; by the time the open one has run twice, the windowed one
    # has been due as often and skipped each time.
    poll("the unwindowed job to run twice", lambda: sessions_of(lab, "open")[1:], timeout=90)
    assert sessions_of(lab, "windowed") == []


def test_a_run_still_going_when_the_window_closes_stops_and_the_next_one_succeeds(
        lab: Lab) -> None:
    """The window closes 4 s from now while the scheduled run is held just after its
    snapshot: it stops cleanly at its next progress report ("stopped", the snapshot removed,
    no point), nothing else starts outside the window, and the next run succeeds."""
    release = lab.tmp / "release"
    assert lab.vmkeep("appliance", "stop").code == 0
    lab.env.update(VMKEEP_HOLD_AT=f"vm-snapshot-taken:{VM}", VMKEEP_HOLD_RELEASE=str(release))
    assert lab.vmkeep("appliance", "start").code == 0
    now = datetime.now(UTC)
    closes = now + timedelta(seconds=4)
    create(lab, "windowed", "--every", "1s", "--window",
           f"{now - timedelta(minutes=1):%H:%M:%S}-{closes:%H:%M:%S}")
    first = poll("the scheduled run", lambda: sessions_of(lab, "windowed"))[0]
    poll("the window to close", lambda: datetime.now(UTC) > closes + timedelta(seconds=0.5))
    release.touch()
    ended = poll("the run to stop", lambda: [s for s in sessions_of(lab, "windowed")
                                             if s["id"] == first["id"] and s["ended"]])[0]
    assert (ended["state"], ended["result"]) == ("stopped", "failed"), ended
    shown = json.loads(lab.vmkeep("session", "show", first["id"], "--json").out)
    messages = [x["message"] for x in shown["log"]]
    assert any("the backup window closed" in m for m in messages), messages
    assert json.loads(lab.vmkeep("points", "list", "--json").out) == []
    with connect(lab.sim.host, lab.sim.port, lab.sim.user, lab.sim.password,
                 fingerprint=None, insecure=True) as s:
        assert find_vm(s, VM).snapshots == ()  # removed on the way out
    assert [s["id"] for s in sessions_of(lab, "windowed")] == [first["id"]]
    r = lab.vmkeep("job", "run", "windowed", "--wait")  # by hand: the window is the schedule's
    assert r.code == 0, r.err
    assert [p["kind"] for p in json.loads(lab.vmkeep("points", "list", "--json").out)] == [
        "full"]
