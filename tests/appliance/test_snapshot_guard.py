"""A running backup's snapshot and VM, guarded against the rest of the appliance: the Snapshot
Hunter leaves the snapshot of a running session alone; the VM's relocation is disabled while
it is backed up and enabled after, also by the Hunter after the appliance was killed."""

from __future__ import annotations

import json
import os
import random
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appliance.vsphere.inventory import find_vm
from appliance.vsphere.session import connect
from appliance.vsphere.snapshot import create_snapshot, session_snapshot_name
from tests.appliance.lab import VM, Lab, started_lab
from tests.helpers import poll

VM1 = "DC0_H0_VM1"


def _wait(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    poll(what, check, timeout, every=0.1)


def _snapshots(lab: Lab, vm: str = VM) -> list[str]:
    with connect(lab.sim.host, lab.sim.port, lab.sim.user, lab.sim.password,
                 fingerprint=None, insecure=True) as session:
        return [s.name for s in find_vm(session, vm).snapshots]


def _snapshot(lab: Lab, name: str, vm: str) -> None:
    with connect(lab.sim.host, lab.sim.port, lab.sim.user, lab.sim.password,
                 fingerprint=None, insecure=True) as session:
        create_snapshot(session, find_vm(session, vm).moref, name)


def _appliance_id(lab: Lab) -> str:
    return (lab.home / "appliance.id").read_text().strip()


def _ended(lab: Lab, sid: str) -> bool:
    return bool(json.loads(lab.vmkeep("session", "show", sid, "--json").out)["state"]
                == "ended")


def _held(lab: Lab) -> str:
    """A job of VM run by an appliance that holds it once its snapshot is taken; its
    session id (the file ``lab.tmp / "release"`` lets it go on)."""
    assert lab.vmkeep("job", "create", "nightly", "--vcenter", "vc", "--vm", VM, "--repo",
                      "main", "--enable-cbt").code == 0
    assert lab.vmkeep("appliance", "stop").code == 0
    lab.env.update(VMKEEP_HOLD_AT=f"vm-snapshot-taken:{VM}",
                   VMKEEP_HOLD_RELEASE=str(lab.tmp / "release"))
    assert lab.vmkeep("appliance", "start").code == 0
    sid = lab.vmkeep("job", "run", "nightly").out.strip()
    mine = session_snapshot_name(_appliance_id(lab), sid)
    _wait("the session's snapshot", lambda: _snapshots(lab) == [mine])
    return sid


def test_the_hunter_leaves_a_running_backups_snapshot_alone(lab: Lab) -> None:
    sid = _held(lab)
    mine = session_snapshot_name(_appliance_id(lab), sid)
    left = session_snapshot_name(_appliance_id(lab), "20260101T000000Z-aaaaaa")
    _snapshot(lab, left, VM1)  # a finished session's leftover: the Hunter removes it

    dry = lab.vmkeep("hunter", "--dry-run")
    assert dry.code == 0, dry.err
    assert f"{mine!r}" in dry.out and f"in use by running session {sid}" in dry.out, dry.out
    assert "leave it alone" in dry.out
    r = lab.vmkeep("hunter")
    assert r.code == 0, r.err
    assert f"in use by running session {sid}" in r.out, r.out
    assert _snapshots(lab) == [mine]
    assert _snapshots(lab, VM1) == []

    (lab.tmp / "release").touch()
    _wait("the session to end", lambda: _ended(lab, sid))
    s = json.loads(lab.vmkeep("session", "show", sid, "--json").out)
    assert s["result"] == "success", s["log"]
    assert _snapshots(lab) == []


@pytest.fixture
def disabling_lab(vcsim_binary: Path, tmp_path: Path) -> Iterator[Lab]:
    """The lab on a simulator with DisableMethods/EnableMethods."""
    with started_lab(vcsim_binary, tmp_path,
                     vcsim_env={"VCSIM_METHOD_DISABLING": "1"}) as lab:
        lab.write(0, random.Random(4).randbytes(300 << 10))
        yield lab


def _disabled(lab: Lab, vm: str = VM) -> list[str]:
    with connect(lab.sim.host, lab.sim.port, lab.sim.user, lab.sim.password,
                 fingerprint=None, insecure=True) as session:
        found = session.content.searchIndex.FindByUuid(
            None, find_vm(session, vm).instance_uuid, True, True)
        return sorted(str(m) for m in found.disabledMethod)


def test_relocation_is_disabled_during_the_backup_and_enabled_after(
        disabling_lab: Lab) -> None:
    lab = disabling_lab
    sid = _held(lab)
    assert _disabled(lab) == ["RelocateVM_Task"]
    dry = lab.vmkeep("hunter", "--dry-run")  # the running backup's, not left over
    assert dry.code == 0 and "relocation" not in dry.out, dry.out
    (lab.tmp / "release").touch()
    _wait("the session to end", lambda: _ended(lab, sid))
    s = json.loads(lab.vmkeep("session", "show", sid, "--json").out)
    assert s["result"] == "success", s["log"]
    assert _disabled(lab) == []
    said = [line["message"] for line in s["log"]]
    assert any("relocation of VM" in m and "disabled for the backup" in m for m in said), said
    assert any("enabled again" in m for m in said), said


def test_after_a_kill_the_hunter_enables_relocation_again(disabling_lab: Lab) -> None:
    lab = disabling_lab
    _held(lab)
    assert _disabled(lab) == ["RelocateVM_Task"]
    pid = json.loads(lab.vmkeep("appliance", "status", "--json").out)["pid"]
    os.kill(pid, signal.SIGKILL)
    _wait("the killed appliance to stop answering",
          lambda: lab.vmkeep("appliance", "status").code != 0)
    assert _disabled(lab) == ["RelocateVM_Task"]
    del lab.env["VMKEEP_HOLD_AT"]
    assert lab.vmkeep("appliance", "start").code == 0
    dry = lab.vmkeep("hunter", "--dry-run")
    assert "relocation (RelocateVM_Task) is disabled and no backup is running" in dry.out, \
        dry.out
    assert _disabled(lab) == ["RelocateVM_Task"]
    r = lab.vmkeep("hunter")
    assert r.code == 0 and "enabled relocation" in r.out, (r.out, r.err)
    assert _disabled(lab) == []
    assert "relocation" not in lab.vmkeep("hunter", "--dry-run").out
