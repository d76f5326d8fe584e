"""Restores are sessions (issue 15: "a restore has no progress and no session"): `vmkeep
restore disk|vm` starts a restore session of the appliance and follows it; while it runs it
shows each disk's bytes (seen here held mid-way at the hold point ``restore-progress``);
`session list --kind restore` lists it with its result, also after a restart; a failure
while restoring exits with the error's own code, as when the appliance answered only once
the restore was done; the restored disk is byte-identical."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

from tests.appliance.lab import VM, Lab
from tests.helpers import poll


def _json(lab: Lab, *args: str) -> Any:
    r = lab.vmkeep(*args, "--json")
    assert r.code == 0, r.err
    return json.loads(r.out)


def _point(lab: Lab) -> str:
    assert lab.vmkeep("job", "create", "nightly", "--vcenter", "vc", "--vm", VM, "--repo",
                      "main", "--enable-cbt", "--block-size", "256K").code == 0
    r = lab.vmkeep("job", "run", "nightly", "--wait")
    assert r.code == 0, r.err
    return str(_json(lab, "points", "list", "--vm", VM)[-1]["id"])


def _held(lab: Lab, point: str, target: Path) -> tuple[str, dict[str, Any]]:
    """A disk restore started with --no-wait and held mid-way (``restore-progress``, until
    ``tmp/release`` exists): its id and the session as seen then."""
    assert lab.vmkeep("appliance", "stop").code == 0
    lab.env.update(VMKEEP_HOLD_AT=f"restore-progress:{VM} · disk 0",
                   VMKEEP_HOLD_RELEASE=str(lab.tmp / "release"))
    assert lab.vmkeep("appliance", "start").code == 0
    started = lab.vmkeep("restore", "disk", point, "--to", str(target), "--no-wait")
    assert started.code == 0, started.err
    sid = started.out.strip()

    def held() -> dict[str, Any] | None:
        s: dict[str, Any] = _json(lab, "session", "show", sid)
        disk = next(t for t in s["tasks"] if t["disk"] == 0)
        return s if 0 < disk["bytes_done"] < disk["bytes_total"] else None

    return sid, poll("the restore held mid-way", held, timeout=60, every=0.1)


def test_a_disk_restore_is_a_session_with_progress_and_history(lab: Lab) -> None:
    point = _point(lab)
    want = lab.content()
    release = lab.tmp / "release"
    target = lab.tmp / "disk0.img"
    sid, s = _held(lab, point, target)
    assert (s["kind"], s["state"], s["result"], s["job"]) == \
        ("restore", "running", None, f"restore {VM} disk 0")
    vm_task, disk_task = s["tasks"]
    assert (vm_task["name"], vm_task["disk"], disk_task["name"]) == (VM, None, f"{VM} · disk 0")
    assert disk_task["state"] == "running" and disk_task["bytes_total"] == 1 << 20
    assert 0 < vm_task["bytes_done"] < vm_task["bytes_total"] == 1 << 20
    assert s["outcome"] is None
    assert not target.exists()  # written under a temporary name until it is whole
    running = _json(lab, "session", "list", "--kind", "restore")
    assert [(x["id"], x["state"]) for x in running] == [(sid, "running")]
    assert all(x["kind"] != "restore" for x in _json(lab, "session", "list", "--kind",
                                                      "backup"))
    release.touch()
    followed = lab.vmkeep("session", "follow", sid)
    assert followed.code == 0, followed.err
    assert target.read_bytes() == want

    s = _json(lab, "session", "show", sid)
    assert (s["state"], s["result"]) == ("ended", "success")
    assert all((t["state"], t["result"], t["bytes_done"]) == ("ended", "success", 1 << 20)
               for t in s["tasks"]), s["tasks"]
    assert s["outcome"]["error"] is None
    assert s["outcome"]["message"].startswith(f"restored disk 0 of {point} to {target} "
                                              "(1.0 MiB)")
    log = [line["message"] for line in s["log"]]
    assert any("restore disk 0 (1.0 MiB) of point" in m for m in log), log
    assert "disk 0: 1.0 MiB restored" in log, log
    assert not any("bytes" in m for m in log), log  # sizes for people

    # The same through the command that follows it; a failure exits with its own code.
    r = lab.vmkeep("restore", "disk", point, "--to", str(lab.tmp / "again.img"), "--json")
    assert r.code == 0, r.err
    again = json.loads(r.out)
    assert again["result"] == "success" and "(1.0 MiB)" in again["message"]
    assert (lab.tmp / "again.img").read_bytes() == want
    os.rename(lab.tmp / "repo", lab.tmp / "repo-moved")
    failed = lab.vmkeep("restore", "disk", point, "--to", str(lab.tmp / "never.img"))
    os.rename(lab.tmp / "repo-moved", lab.tmp / "repo")
    last = _json(lab, "session", "list", "--kind", "restore")[-1]
    s = _json(lab, "session", "show", last["id"])
    error = s["outcome"]["error"]
    assert (s["result"], failed.code) == ("failed", error["exit_code"]), failed
    assert failed.code not in (0, 2) and error["message"] in failed.err, failed.err
    assert any(line["level"] == "error" and error["message"] in line["message"]
               for line in s["log"]), s["log"]
    assert not (lab.tmp / "never.img").exists()

    # History: listed after a restart with their results.
    assert lab.vmkeep("appliance", "stop").code == 0
    assert lab.vmkeep("appliance", "start").code == 0
    listed = _json(lab, "session", "list", "--kind", "restore")
    assert [(x["id"], x["result"]) for x in listed] == \
        [(sid, "success"), (again["session"], "success"), (last["id"], "failed")]
    text = lab.vmkeep("session", "list", "--kind", "restore").out
    assert f"restore {VM} disk 0" in text and "restore" in text.split("\n")[1]
    assert _json(lab, "job", "show", "nightly")["last_session"]["kind"] == "backup"


def test_a_vm_restore_is_a_session_and_an_existing_target_is_refused_at_once(lab: Lab) -> None:
    point = _point(lab)
    r = lab.vmkeep("restore", "vm", point, "--name", "copy")
    assert r.code == 0, r.err
    assert "to VM 'copy'" in r.err and "restore session" in r.err, r.err
    s = _json(lab, "session", "list", "--kind", "restore")[-1]
    assert (s["job"], s["kind"], s["result"]) == (f"restore {VM}", "restore", "success")
    shown = _json(lab, "session", "show", s["id"])
    assert [(t["name"], t["result"]) for t in shown["tasks"]] == \
        [(VM, "success"), (f"{VM} · disk 0", "success")]
    assert all(t["bytes_done"] == t["bytes_total"] == 1 << 20 for t in shown["tasks"])
    log = [line["message"] for line in shown["log"]]
    assert any("to a new VM 'copy'" in m for m in log), log  # the plan comes first
    assert any("disk 0: 1.0 MiB written to" in m for m in log), log
    # Refused before any session starts, with the same codes as before.
    before = len(_json(lab, "session", "list", "--kind", "restore"))
    assert lab.vmkeep("restore", "vm", point, "--original").code == 2  # needs --yes
    existing = lab.tmp / "exists.img"
    existing.write_bytes(b"keep")
    r = lab.vmkeep("restore", "disk", point, "--to", str(existing))
    assert r.code == 2 and "already exists" in r.err
    assert lab.vmkeep("restore", "disk", "no-such-point", "--to",
                      str(lab.tmp / "x.img")).code == 3
    assert len(_json(lab, "session", "list", "--kind", "restore")) == before
    assert existing.read_bytes() == b"keep"


def test_a_restore_cut_short_by_a_crash_is_history_as_interrupted(lab: Lab) -> None:
    point = _point(lab)
    target = lab.tmp / "cut.img"
    sid, _s = _held(lab, point, target)
    pid = _json(lab, "appliance", "status")["pid"]
    os.kill(pid, signal.SIGKILL)
    poll("the killed appliance to stop answering",
         lambda: lab.vmkeep("appliance", "status").code != 0, timeout=60, every=0.1)
    del lab.env["VMKEEP_HOLD_AT"]
    assert lab.vmkeep("appliance", "start").code == 0
    s = _json(lab, "session", "show", sid)
    assert (s["kind"], s["state"], s["result"]) == ("restore", "interrupted", "failed")
    assert "what it wrote is incomplete; restore again" in s["log"][-1]["message"], s["log"]
    assert [(x["id"], x["state"]) for x in _json(lab, "session", "list", "--kind",
                                                  "restore")] == [(sid, "interrupted")]
    assert not target.exists()
    again = lab.vmkeep("restore", "disk", point, "--to", str(target))
    assert again.code == 0, again.err
    assert target.read_bytes() == lab.content()
    assert not [p for p in lab.tmp.iterdir() if "vmkeep-partial" in p.name]  # swept
