"""Jobs through the appliance against vcsim, by the CLI contract: `job create`, `job run
--wait` (exit 0/1/2), `session list|show --json`, `points list --json`, `restore disk`; all
kept across a restart."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from appliance.vsphere.inventory import find_vm
from appliance.vsphere.session import connect
from appliance.vsphere.snapshot import create_snapshot, session_snapshot_name
from tests.appliance.lab import VM, Lab
from tests.helpers import poll

VM1 = "DC0_H0_VM1"


def test_job_run_sessions_points_and_a_disk_restore(lab: Lab) -> None:
    r = lab.vmkeep("job", "create", "nightly", "--vcenter", "vc", "--vm", VM, "--repo", "main",
                   "--enable-cbt", "--block-size", "256K")
    assert r.code == 0 and VM in r.out, r.err
    assert "exists already" in lab.vmkeep("job", "create", "nightly", "--vcenter", "vc",
                                          "--vm", VM, "--repo", "main").err
    assert lab.vmkeep("job", "create", "x", "--vcenter", "vc", "--vm", "no-such-vm",
                      "--repo", "main").code == 3

    first = lab.vmkeep("job", "run", "nightly", "--wait")
    assert first.code == 0, first.err
    want_full = lab.content()
    lab.write(300 << 10, b"changed between the runs")
    second = lab.vmkeep("job", "run", "nightly", "--wait")
    assert second.code == 0, second.err
    sid1, sid2 = first.out.strip(), second.out.strip()

    sessions = json.loads(lab.vmkeep("session", "list", "--json").out)
    assert [s["id"] for s in sessions] == [sid1, sid2]
    for s in sessions:
        assert {"id", "job", "state", "result", "started", "ended"} <= set(s)
        assert (s["job"], s["state"], s["result"]) == ("nightly", "ended", "success")
    shown = json.loads(lab.vmkeep("session", "show", sid2, "--json").out)
    assert shown["id"] == sid2 and shown["tasks"][0]["name"] == VM
    assert shown["tasks"][0]["point_id"]
    assert all(set(line) == {"time", "level", "message"} for line in shown["log"])
    assert any("CBT sanity check passed" in line["message"] for line in shown["log"])

    points = json.loads(lab.vmkeep("points", "list", "--vm", VM, "--json").out)
    assert [(p["vm"], p["kind"]) for p in points] == [(VM, "full"), (VM, "incremental")]
    assert points[1]["bytes_read"] <= 256 << 10
    assert {"id", "vm", "created", "kind", "bytes_read", "bytes_stored"} <= set(points[0])
    assert [p["job"] for p in points] == ["nightly", "nightly"]  # the job that made each

    # An active full reads everything again.
    r = lab.vmkeep("job", "run", "nightly", "--full", "--wait")
    assert r.code == 0, r.err
    points = json.loads(lab.vmkeep("points", "list", "--json").out)
    assert points[-1]["kind"] == "full"

    # Everything is still there after a restart; a disk restores byte for byte.
    assert lab.vmkeep("appliance", "stop").code == 0
    assert lab.vmkeep("appliance", "start").code == 0
    assert [s["id"] for s in json.loads(lab.vmkeep("session", "list", "--json").out)][:2] == \
        [sid1, sid2]
    assert json.loads(lab.vmkeep("job", "list", "--json").out)[0]["spec"]["name"] == "nightly"
    target = lab.tmp / "disk0.img"
    r = lab.vmkeep("restore", "disk", points[0]["id"], "--disk", "0", "--to", str(target))
    assert r.code == 0, r.err
    assert target.read_bytes() == want_full
    r = lab.vmkeep("restore", "disk", points[0]["id"], "--disk", "0", "--to", str(target))
    assert r.code == 2 and "already exists" in r.err  # usage, as `image restore`


def test_a_failing_vm_fails_the_session_with_exit_2(lab: Lab) -> None:
    r = lab.vmkeep("job", "create", "broken", "--vcenter", "vc", "--vm", VM, "--repo", "main")
    assert r.code == 0, r.err
    # The repository disappears under the job: the VM fails, the session says why.
    os.rename(lab.tmp / "repo", lab.tmp / "repo-moved")
    r = lab.vmkeep("job", "run", "broken", "--wait")
    assert r.code == 2, (r.out, r.err)
    s = json.loads(lab.vmkeep("session", "show", r.out.strip(), "--json").out)
    assert s["result"] == "failed"
    assert any(line["level"] == "error" for line in s["log"])


def _snapshots(lab: Lab, vm: str = VM) -> list[str]:
    with connect(lab.sim.host, lab.sim.port, lab.sim.user, lab.sim.password,
                 fingerprint=None, insecure=True) as session:
        return [s.name for s in find_vm(session, vm).snapshots]


def _snapshot(lab: Lab, name: str, vm: str = VM) -> None:
    with connect(lab.sim.host, lab.sim.port, lab.sim.user, lab.sim.password,
                 fingerprint=None, insecure=True) as session:
        create_snapshot(session, find_vm(session, vm).moref, name)


def _wait(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    poll(what, check, timeout, every=0.1)


def _appliance_id(lab: Lab) -> str:
    return (lab.home / "appliance.id").read_text().strip()


def test_a_killed_appliance_leaves_an_interrupted_session_the_next_start_cleans_up(
        lab: Lab) -> None:
    """SIGKILL of the appliance after a pack is written and before the point's manifest
    (vmkeep's crash point): the snapshot it left is named for this appliance and the session;
    the next start removes it and says so in the session and its log, keeps another
    appliance's and an offline backup's, and alerts at once on what it did not remove; the
    next run sweeps the orphan pack and succeeds."""
    assert lab.vmkeep("job", "create", "nightly", "--vcenter", "vc", "--vm", VM, "--repo",
                      "main", "--enable-cbt").code == 0
    assert lab.vmkeep("appliance", "stop").code == 0
    crashing = Lab(lab.home, {**lab.env, "VMKEEP_CRASH_AT": "backup-pack-written"}, lab.sim,
                   lab.tmp)
    assert crashing.vmkeep("appliance", "start").code == 0
    r = lab.vmkeep("job", "run", "nightly", "--wait")
    assert r.code == 13 and "no appliance answers" in r.err, (r.code, r.err)
    sid = r.out.strip()
    orphans = set((lab.tmp / "repo" / "packs").rglob("*.pack"))
    assert orphans  # written, never referenced
    ours = session_snapshot_name(_appliance_id(lab), sid)
    assert _snapshots(lab) == [ours]
    others = [session_snapshot_name("ba9876543210", "20260101T000000Z-cccccc"),
              "vmkeep-offline-20260101T000000Z"]
    for name in others:
        _snapshot(lab, name, VM1)

    assert lab.vmkeep("appliance", "start").code == 0
    _wait("the leftover snapshot to be removed", lambda: _snapshots(lab) == [])
    s = json.loads(lab.vmkeep("session", "show", sid, "--json").out)
    assert (s["state"], s["result"]) == ("interrupted", "failed")
    messages = [line["message"] for line in s["log"]]
    assert any("appliance stopped while this session ran" in m for m in messages)
    _wait("the session to say so", lambda: any(
        ours in line["message"] and "removed" in line["message"]
        for line in json.loads(lab.vmkeep("session", "show", sid, "--json").out)["log"]))
    assert ours in (lab.home / "appliance.log").read_text()
    assert _snapshots(lab, VM1) == others
    # Alerts list the leftovers it did not remove without waiting for the next look.
    _wait("the alerts", lambda: all(
        any(name in a["message"] for a in json.loads(lab.vmkeep("alerts", "--json").out))
        for name in others), timeout=60)
    assert not any(ours in a["message"]
                   for a in json.loads(lab.vmkeep("alerts", "--json").out))

    r = lab.vmkeep("job", "run", "nightly", "--wait")
    assert r.code == 0, r.err
    assert not orphans & set((lab.tmp / "repo" / "packs").rglob("*.pack"))
    points = json.loads(lab.vmkeep("points", "list", "--json").out)
    assert [p["kind"] for p in points] == ["full"]
    target = lab.tmp / "after-crash.img"
    assert lab.vmkeep("restore", "disk", points[0]["id"], "--to", str(target)).code == 0
    assert target.read_bytes() == lab.content()
    assert _snapshots(lab) == [] and _snapshots(lab, VM1) == others


def test_a_finished_sessions_snapshot_is_removed_before_the_vms_next_backup(lab: Lab) -> None:
    """A snapshot of one of this appliance's ended sessions (its removal failed, or the
    start-up could not reach vCenter) goes before the VM's next backup, and the session
    says so; the backup succeeds."""
    assert lab.vmkeep("job", "create", "nightly", "--vcenter", "vc", "--vm", VM, "--repo",
                      "main", "--enable-cbt").code == 0
    first = lab.vmkeep("job", "run", "nightly", "--wait")
    assert first.code == 0, first.err
    left = session_snapshot_name(_appliance_id(lab), first.out.strip())
    _snapshot(lab, left)
    second = lab.vmkeep("job", "run", "nightly", "--wait")
    assert second.code == 0, second.err
    assert _snapshots(lab) == []
    s = json.loads(lab.vmkeep("session", "show", second.out.strip(), "--json").out)
    said = [line for line in s["log"] if left in line["message"]]
    assert said and "removed" in said[0]["message"], s["log"]
    assert first.out.strip() in said[0]["message"]


def test_a_running_sessions_snapshot_is_kept_by_another_sessions_cleanup(lab: Lab) -> None:
    """Two jobs of one VM: the first holds with its snapshot taken; the second cleans up
    before its own snapshot and leaves the first's alone."""
    release = lab.tmp / "release"
    for job in ("first", "second"):
        assert lab.vmkeep("job", "create", job, "--vcenter", "vc", "--vm", VM, "--repo",
                          "main", "--enable-cbt").code == 0
    assert lab.vmkeep("appliance", "stop").code == 0
    lab.env.update(VMKEEP_HOLD_AT=f"vm-snapshot-taken:{VM}", VMKEEP_HOLD_RELEASE=str(release))
    assert lab.vmkeep("appliance", "start").code == 0
    sid1 = lab.vmkeep("job", "run", "first").out.strip()
    mine = session_snapshot_name(_appliance_id(lab), sid1)
    _wait("the first session's snapshot", lambda: _snapshots(lab) == [mine])
    sid2 = lab.vmkeep("job", "run", "second").out.strip()
    _wait("the second session's snapshot", lambda: len(_snapshots(lab)) == 2)
    assert _snapshots(lab)[0] == mine
    release.touch()
    def ended(sid: str) -> bool:
        return bool(json.loads(lab.vmkeep("session", "show", sid, "--json").out)["state"]
                    == "ended")

    _wait("both sessions to end", lambda: ended(sid1) and ended(sid2))
    s1 = json.loads(lab.vmkeep("session", "show", sid1, "--json").out)
    assert s1["result"] == "success", s1["log"]
    s2 = json.loads(lab.vmkeep("session", "show", sid2, "--json").out)
    assert not any(mine in line["message"] for line in s2["log"]), s2["log"]
    assert _snapshots(lab) == []


def test_the_jobs_retention_keeps_its_last_points_and_no_one_elses(lab: Lab) -> None:
    assert lab.vmkeep("job", "create", "kept", "--vcenter", "vc", "--vm", VM, "--repo",
                      "main", "--enable-cbt", "--keep-last", "2").code == 0
    other = lab.tmp / "other.img"
    other.write_bytes(b"another object" * 10_000)
    for _ in range(2):
        assert lab.vmkeep("image", "backup", "--repo", str(lab.tmp / "repo"), "--name",
                          "not-this-job", str(other)).code == 0
    assert lab.vmkeep("repo", "rescan", "main").code == 0
    sids = []
    for n in range(3):
        lab.write(n * 4096, f"run {n}".encode())
        r = lab.vmkeep("job", "run", "kept", "--wait")
        assert r.code == 0, r.err
        sids.append(r.out.strip())
    mine = json.loads(lab.vmkeep("points", "list", "--vm", VM, "--json").out)
    assert len(mine) == 2
    assert len(json.loads(lab.vmkeep("points", "list", "--vm", "not-this-job",
                                     "--json").out)) == 2
    log = json.loads(lab.vmkeep("session", "show", sids[-1], "--json").out)["log"]
    assert any("retention removed 1 restore point" in x["message"] for x in log)
    target = lab.tmp / "kept.img"
    assert lab.vmkeep("restore", "disk", mine[-1]["id"], "--to", str(target)).code == 0
    assert target.read_bytes() == lab.content()


def test_inventory_verify_prune_and_an_entire_vm_restore(lab: Lab) -> None:
    assert lab.vmkeep("job", "create", "nightly", "--vcenter", "vc", "--vm", VM, "--repo",
                      "main", "--enable-cbt").code == 0
    for n in range(2):
        lab.write(n * 8192, b"run %d" % n)
        assert lab.vmkeep("job", "run", "nightly", "--wait").code == 0
    want = lab.content()
    inv = {v["name"]: v for v in json.loads(lab.vmkeep("inventory", "--json").out)}
    assert inv[VM]["jobs"] == ["nightly"] and inv[VM]["cbt_enabled"]
    assert inv[VM]["last_point"] and inv["DC0_H0_VM1"]["jobs"] == []

    r = lab.vmkeep("verify", "--repo", "main")
    assert r.code == 0 and r.out.startswith("ok: checked 2 points"), r.out
    r = lab.vmkeep("prune", "--repo", "main", "--keep-last", "1", "--dry-run")
    assert r.code == 0 and "remove " in r.out and r.out.strip().endswith("nothing was changed")
    assert len(json.loads(lab.vmkeep("points", "list", "--json").out)) == 2
    assert lab.vmkeep("prune", "--repo", "main", "--keep-last", "1").code == 0
    points = json.loads(lab.vmkeep("points", "list", "--json").out)
    assert len(points) == 1

    r = lab.vmkeep("restore", "vm", points[0]["id"], "--name", "copy")
    assert r.code == 0 and "to VM 'copy'" in r.err, r.err
    inv = {v["name"]: v for v in json.loads(lab.vmkeep("inventory", "--json").out)}
    assert [d["capacity_bytes"] for d in inv["copy"]["disks"]] == \
        [d["capacity_bytes"] for d in inv[VM]["disks"]]
    r = lab.vmkeep("restore", "vm", points[0]["id"], "--original")
    assert r.code == 2 and "--yes" in r.err
    lab.write(0, b"damage" * 100)
    r = lab.vmkeep("restore", "vm", points[0]["id"], "--original", "--yes")
    assert r.code == 0, r.err
    assert lab.content() == want  # the newest point, the one prune kept


def test_job_edit_changes_what_is_given_and_keeps_the_rest(lab: Lab) -> None:
    assert lab.vmkeep("job", "create", "nightly", "--vcenter", "vc", "--vm", VM, "--repo",
                      "main", "--enable-cbt", "--keep-last", "7").code == 0
    assert lab.vmkeep("job", "disable", "nightly").code == 0
    r = lab.vmkeep("job", "edit", "nightly", "--daily", "23:30", "--days", "weekdays",
                   "--vm", "DC0_H0_VM1", "--vm", VM)
    assert r.code == 0, r.err
    job = json.loads(lab.vmkeep("job", "show", "nightly", "--json").out)
    spec = job["spec"]
    assert [v["name"] for v in spec["vms"]] == ["DC0_H0_VM1", VM]
    assert spec["schedule"]["kind"] == "daily" and spec["schedule"]["at"] == "23:30"
    assert spec["keep_last"] == 7 and spec["enable_cbt"] is True  # kept
    assert job["enabled"] is False  # kept
    assert lab.vmkeep("job", "edit", "nightly", "--vm", "no-such-vm").code == 3
    r = lab.vmkeep("job", "edit", "nightly")
    assert r.code == 2 and "nothing to change" in r.err


def test_an_excluded_disk_is_left_out_without_a_warning(lab: Lab) -> None:
    assert lab.vmkeep("job", "create", "nodisk", "--vcenter", "vc", "--vm", VM, "--repo",
                      "main", "--enable-cbt", "--exclude-disk", f"{VM}:0",
                      "--retries", "0").code == 0
    r = lab.vmkeep("job", "run", "nodisk", "--wait")
    # The VM's only disk is excluded: nothing to back up, so the VM fails, saying why.
    assert r.code == 2
    assert "is excluded by the job" in r.err
    assert "warning" not in [line.split()[1] for line in r.err.splitlines()
                             if "excluded" in line]
