"""Coverage at a glance (issue 15): every job says when it runs next, the scheduler's own due
time; a VM that failed in its job's last session is an alert naming the VM, the job and the
reason, the same for the CLI and the TUI (one route)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from appliance import api
from appliance.jobs.schedule import next_run
from appliance.service.jobs import schedule_of
from tests.appliance.lab import VM, Lab
from tests.appliance.test_scheduling import OTHER, create, poll, set_disk_mode


def jobs_of(lab: Lab) -> dict[str, dict[str, Any]]:
    r = lab.vmkeep("job", "list", "--json")
    assert r.code == 0, r.err
    return {j["spec"]["name"]: j for j in json.loads(r.out)}


def test_job_list_gives_the_next_run_the_scheduler_keeps(lab: Lab) -> None:
    before = datetime.now(UTC)
    create(lab, "nightly", "--daily", "02:30", "--tz", "Europe/Berlin")
    create(lab, "hourly", "--every", "1h", vms=(OTHER,))
    create(lab, "manual", vms=(OTHER,))
    create(lab, "chained", "--after", "nightly", vms=(OTHER,))
    first = jobs_of(lab)
    after = datetime.now(UTC)

    daily = schedule_of(api.ScheduleSpec(kind="daily", at="02:30", tz="Europe/Berlin"))
    nightly = datetime.fromisoformat(first["nightly"]["next_run"])
    assert nightly in {next_run(daily, before), next_run(daily, after)}
    assert nightly.utcoffset() == timedelta(0)  # the API's times are UTC, with their zone
    hourly = datetime.fromisoformat(first["hourly"]["next_run"])
    assert before + timedelta(hours=1) <= hourly <= after + timedelta(hours=1)
    assert first["manual"]["next_run"] is None and first["chained"]["next_run"] is None

    time.sleep(1.5)  # the scheduler has ticked: it kept its due times, none recomputed
    assert {n: j["next_run"] for n, j in jobs_of(lab).items()} == {
        n: j["next_run"] for n, j in first.items()}

    table = lab.vmkeep("job", "list").out
    assert "NEXT RUN" in table.splitlines()[0]
    local = nightly.astimezone(ZoneInfo("Europe/Berlin"))
    assert f"{local:%Y-%m-%d} 02:30 {local.tzname()}" in table, table  # CET or CEST
    assert "manual" in table and "after nightly" in table

    assert lab.vmkeep("job", "disable", "hourly").code == 0
    assert jobs_of(lab)["hourly"]["next_run"] is None
    assert lab.vmkeep("job", "enable", "hourly").code == 0
    assert jobs_of(lab)["hourly"]["next_run"] == first["hourly"]["next_run"]


def test_a_job_due_outside_its_window_says_the_first_run_inside_it(lab: Lab) -> None:
    now = datetime.now(UTC)
    opens, closes = now + timedelta(hours=2), now + timedelta(hours=3)
    create(lab, "windowed", "--every", "30m", "--window", f"{opens:%H:%M}-{closes:%H:%M}")
    due = datetime.fromisoformat(jobs_of(lab)["windowed"]["next_run"])
    opening = opens.replace(second=0, microsecond=0)
    assert opening <= due < opening + timedelta(minutes=30), (due, opening)


def alerts_of(lab: Lab) -> list[dict[str, Any]]:
    r = lab.vmkeep("alerts", "--json")
    assert r.code == 0, r.err
    return list(json.loads(r.out))


def test_a_failed_vm_is_an_alert_with_vm_job_and_reason(lab: Lab) -> None:
    create(lab, "mixed", "--retries", "0", vms=(VM, OTHER))
    set_disk_mode(lab, OTHER, "independent_persistent")  # cannot be backed up: fails
    assert lab.vmkeep("job", "run", "mixed", "--wait").code != 0
    found = poll("the VM's alert", lambda: [a for a in alerts_of(lab) if a["kind"] == "vm"])
    assert len(found) == 1, found
    vm = found[0]
    assert vm["severity"] == "error" and vm["key"] == f"vm/mixed/{OTHER}"
    assert vm["message"].startswith(f"VM {OTHER} (job mixed): failed in the last session")
    assert "independent_persistent mode" in vm["message"], vm  # the reason logged for it
    job = next(a for a in alerts_of(lab) if a["kind"] == "session")
    assert job["message"].startswith("job mixed: last session failed"), job
    table = lab.vmkeep("alerts").out
    assert f"VM {OTHER} (job mixed): failed" in table and "independent" in table

    vms = {v["name"]: v for v in json.loads(lab.vmkeep("inventory", "--json").out)}
    assert (vms[OTHER]["last_result"], vms[OTHER]["last_job"]) == ("failed", "mixed")
    assert "independent_persistent mode" in vms[OTHER]["last_reason"]
    assert vms[OTHER]["last_point"] is None and vms[OTHER]["rpo_status"] == "none"
    assert (vms[VM]["last_result"], vms[VM]["last_reason"]) == ("success", "")
    assert vms[VM]["last_point"] is not None and vms[VM]["last_point_time"] is not None
    row = next(x for x in lab.vmkeep("inventory").out.splitlines() if OTHER in x)
    assert "failed (mixed)" in row and "independent_persistent mode" in row

    set_disk_mode(lab, OTHER, "persistent")  # fixed: the next session clears both
    assert lab.vmkeep("job", "run", "mixed", "--wait").code == 0
    poll("the alerts to clear", lambda: not [a for a in alerts_of(lab)
                                            if a["kind"] in ("vm", "session")])


def test_inventory_gives_each_vms_rpo_status(lab: Lab) -> None:
    create(lab, "strict", "--rpo", "0.003", vms=(VM,))  # 10.8 s
    create(lab, "loose", "--rpo", "24", vms=(OTHER,))

    def status() -> dict[str, str]:
        return {v["name"]: v["rpo_status"]
                for v in json.loads(lab.vmkeep("inventory", "--json").out)}

    assert status()[OTHER] == "ok"  # a new job has one RPO period first
    poll("the strict job's VM to be past its RPO", lambda: status()[VM] == "breached")
    others = [s for n, s in status().items() if n not in (VM, OTHER)]
    assert others and set(others) == {"none"}  # no job with an RPO protects them
    assert lab.vmkeep("job", "run", "strict", "--wait").code == 0
    assert status()[VM] == "ok"  # a point within it now
