"""Guest processing over SSH: a real sshd plays the Linux guest (tests/sshd.py). Pre-freeze and
post-thaw run in order around the snapshot (their timestamps against the session's "snapshot
taken" line), their output is in the session log verbatim and kept with the point; a failing
or hanging pre-freeze fails the VM and leaves no process behind, post-thaw runs all the same
(also when the snapshot itself cannot be taken); an unreachable guest is a warning when the
job allows it."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from pyVim.task import WaitForTask
from pyVmomi import vim

from appliance.vsphere.inventory import find_vm
from appliance.vsphere.session import connect
from tests.appliance.lab import VM, Lab
from tests.sshd import Sshd


def _scripts(lab: Lab, sshd: Sshd, pre_body: str) -> tuple[Path, Path, Path]:
    marks = sshd.owned_folder(f"marks-{lab.tmp.name}")
    pre = lab.tmp / "pre-freeze.sh"
    pre.write_text(f"#!/bin/sh\ndate +%s.%N > {marks}/pre\n{pre_body}\n")
    post = lab.tmp / "post-thaw.sh"
    post.write_text(f"#!/bin/sh\ndate +%s.%N > {marks}/post\necho thawed the database\n")
    return marks, pre, post


def _job(lab: Lab, sshd: Sshd, name: str, pre: Path, post: Path, *extra: str) -> None:
    r = lab.vmkeep("job", "create", name, "--vcenter", "vc", "--vm", VM, "--repo", "main",
                   "--enable-cbt", "--guest-host", f"127.0.0.1:{sshd.port}", "--guest-user",
                   sshd.user, "--guest-key", str(sshd.key_file),
                   "--guest-host-key-fingerprint", sshd.fingerprint, "--pre-freeze", str(pre),
                   "--post-thaw", str(post), "--retries", "0", *extra)
    assert r.code == 0, r.err


def _log(lab: Lab, sid: str) -> list[dict[str, Any]]:
    log: list[dict[str, Any]] = json.loads(
        lab.vmkeep("session", "show", sid, "--json").out)["log"]
    return log


def test_scripts_run_around_the_snapshot_and_their_output_is_kept(lab: Lab,
                                                                   sshd: Sshd) -> None:
    marks, pre, post = _scripts(lab, sshd, "echo froze the database\necho careful >&2")
    _job(lab, sshd, "app", pre, post)
    r = lab.vmkeep("job", "run", "app", "--wait")
    assert r.code == 0, r.err
    log = _log(lab, r.out.strip())
    messages = [x["message"] for x in log]
    assert "froze the database" in messages and "thawed the database" in messages
    assert "careful" in messages  # stderr too, verbatim
    taken = next(datetime.fromisoformat(x["time"]) for x in log
                 if "snapshot" in x["message"] and "taken" in x["message"])
    frozen = float((marks / "pre").read_text())
    thawed = float((marks / "post").read_text())
    assert frozen < taken.timestamp() < thawed
    assert messages.index("froze the database") < messages.index("thawed the database")
    point = json.loads(lab.vmkeep("points", "list", "--json").out)[-1]
    scripts = point["guest_processing"]["scripts"]
    assert [s["name"] for s in scripts] == ["pre-freeze", "post-thaw"]
    assert scripts[0]["stdout"] == "froze the database\n" and scripts[0]["exit_code"] == 0


def test_a_failing_or_hanging_pre_freeze_fails_the_vm_and_thaws_anyway(lab: Lab,
                                                                       sshd: Sshd) -> None:
    marks, pre, post = _scripts(lab, sshd, "echo cannot freeze\nexit 3")
    _job(lab, sshd, "failing", pre, post)
    r = lab.vmkeep("job", "run", "failing", "--wait")
    assert r.code == 2, r
    messages = [x["message"] for x in _log(lab, r.out.strip())]
    assert "cannot freeze" in messages and "thawed the database" in messages
    assert any("pre-freeze script failed (exit 3)" in m for m in messages)
    assert (marks / "post").exists()
    assert json.loads(lab.vmkeep("points", "list", "--json").out) == []

    (marks / "post").unlink()
    hang = lab.tmp / "hang.sh"
    hang.write_text(f"#!/bin/sh\ndate +%s > {marks}/pre\nsleep 300 &\nsleep 300\n")
    _job(lab, sshd, "hanging", hang, post, "--script-timeout", "2s")
    r = lab.vmkeep("job", "run", "hanging", "--wait")
    assert r.code == 2, r
    messages = [x["message"] for x in _log(lab, r.out.strip())]
    assert any("ran out of its time" in m for m in messages), messages
    assert (marks / "post").exists()
    left = subprocess.run(["ps", "-u", sshd.user, "-o", "stat=,args="], capture_output=True,
                          text=True).stdout.splitlines()
    assert not [p for p in left if "sleep 300" in p and not p.startswith("Z")], left


def test_post_thaw_runs_when_the_snapshot_fails_and_an_unreachable_guest_warns(
        lab: Lab, sshd: Sshd) -> None:
    marks, pre, post = _scripts(lab, sshd, "echo frozen")
    # VMware Tools stop with the VM powered off: a quiesced snapshot is impossible.
    with connect(lab.sim.host, lab.sim.port, lab.sim.user, lab.sim.password,
                 fingerprint=None, insecure=True) as s:
        vm = s.content.searchIndex.FindByUuid(None, find_vm(s, VM).instance_uuid, True, True)
        WaitForTask(vm.PowerOffVM_Task())  # type: ignore[no-untyped-call]
    _job(lab, sshd, "quiesced", pre, post, "--quiesce", "--quiesce-fallback", "fail")
    r = lab.vmkeep("job", "run", "quiesced", "--wait")
    assert r.code == 2, r
    messages = [x["message"] for x in _log(lab, r.out.strip())]
    assert any("cannot be quiesced" in m for m in messages), messages
    assert "thawed the database" in messages and (marks / "post").exists()

    r = lab.vmkeep("job", "create", "away", "--vcenter", "vc", "--vm", VM, "--repo", "main",
                   "--guest-host", "127.0.0.1:1", "--guest-user", sshd.user, "--guest-key",
                   str(sshd.key_file), "--guest-host-key-fingerprint", sshd.fingerprint,
                   "--pre-freeze", str(pre), "--guest-unreachable", "warn", "--retries", "0")
    assert r.code == 0, r.err
    r = lab.vmkeep("job", "run", "away", "--wait")
    assert r.code == 1, r  # a warning: backed up crash-consistent
    messages = [x["message"] for x in _log(lab, r.out.strip())]
    assert any("cannot be reached" in m and "crash-consistent" in m for m in messages)


def test_the_guest_address_from_vmware_tools_and_a_quiesced_snapshot(lab: Lab,
                                                                       sshd: Sshd) -> None:
    """With VMware Tools running and reporting the guest's address (set through vcsim's
    SET.guest.* extra config), `--guest-host tools:PORT` reaches the guest there and
    `--quiesce` gets a quiesced snapshot, recorded with the point."""
    with connect(lab.sim.host, lab.sim.port, lab.sim.user, lab.sim.password,
                 fingerprint=None, insecure=True) as s:
        vm = s.content.searchIndex.FindByUuid(None, find_vm(s, VM).instance_uuid, True, True)
        opt: Any = vim.option.OptionValue
        WaitForTask(vm.ReconfigVM_Task(vim.vm.ConfigSpec(  # type: ignore[no-untyped-call]
            extraConfig=[opt(key="SET.guest.ipAddress", value="127.0.0.1"),
                         opt(key="SET.guest.toolsRunningStatus", value="guestToolsRunning")])))
    _marks, pre, _post = _scripts(lab, sshd, "echo frozen")
    r = lab.vmkeep("job", "create", "tools", "--vcenter", "vc", "--vm", VM, "--repo", "main",
                   "--enable-cbt", "--guest-host", f"tools:{sshd.port}", "--guest-user", sshd.user,
                   "--guest-key", str(sshd.key_file), "--guest-host-key-fingerprint",
                   sshd.fingerprint, "--pre-freeze", str(pre), "--quiesce",
                   "--quiesce-fallback", "fail", "--retries", "0")
    assert r.code == 0, r.err
    r = lab.vmkeep("job", "run", "tools", "--wait")
    assert r.code == 0, r.err
    messages = [x["message"] for x in _log(lab, r.out.strip())]
    assert "frozen" in messages and any("(quiesced)" in m for m in messages), messages
    point = json.loads(lab.vmkeep("points", "list", "--json").out)[-1]
    assert point["guest_processing"]["quiesced"] is True
    assert point["guest_processing"]["guest"] == f"{sshd.user}@tools:{sshd.port}"
