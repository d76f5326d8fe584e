"""Issue 13 §3: disks vmkeep cannot read by file — encrypted (``backing.keyId``, a VM's
``config.keyId``), on vSAN or vVols — fail their VM *before* any snapshot, the message naming
each disk and why; excluded by the job, the VM backs up; ``job check`` lists them before the
first run; the Snapshot Hunter finds nothing afterwards.

The simulator: three datastores, LocalDS_1 reported as vSAN and LocalDS_2 as vVols
(``VCSIM_DS_TYPES``), DC0_H0_VM1 encrypted (``VCSIM_ENCRYPTED_VMS``). DC0_H0_VM0 gets disk 1
on vSAN, disk 2 on vVols and disk 3 on LocalDS_0 with a key id of its own."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyVim.task import WaitForTask
from pyVmomi import vim

from appliance.client import ApplianceClient
from appliance.vsphere.inventory import find_vm, list_vms
from appliance.vsphere.session import connect, fetch_fingerprint
from tests.appliance.lab import Lab, started_lab
from tests.helpers import poll
from tests.sshd import Sshd

VM0, VM1 = "DC0_H0_VM0", "DC0_H0_VM1"
SIM_ENV = {"VCSIM_DS_TYPES": "LocalDS_1=vsan,LocalDS_2=VVOL", "VCSIM_ENCRYPTED_VMS": VM1}


def _vm(s: Any, name: str) -> Any:
    return s.content.searchIndex.FindByUuid(None, find_vm(s, name).instance_uuid, True, True)


def add_disk(lab: Lab, datastore: str, *, encrypted: bool = False, vm: str = VM0) -> None:
    """A new 1 MiB disk on ``datastore`` at the next unit of the VM's first controller."""
    sim = lab.sim
    with connect(sim.host, sim.port, sim.user, sim.password, fingerprint=None,
                 insecure=True) as s:
        obj = _vm(s, vm)
        disks = [d for d in obj.config.hardware.device
                 if isinstance(d, vim.vm.device.VirtualDisk)]
        key = vim.encryption.CryptoKeyId(  # type: ignore[no-untyped-call]
            keyId="disk-key", providerId=vim.encryption.KeyProviderId(  # type: ignore[no-untyped-call]
                id="kms")) if encrypted else None
        backing = vim.vm.device.VirtualDisk.FlatVer2BackingInfo(  # type: ignore[no-untyped-call]
            diskMode="persistent", fileName=f"[{datastore}]", keyId=key)
        disk = vim.vm.device.VirtualDisk(  # type: ignore[no-untyped-call]
            key=-1, controllerKey=disks[0].controllerKey,
            unitNumber=max(d.unitNumber or 0 for d in disks) + 1, capacityInKB=1024,
            backing=backing)
        WaitForTask(obj.ReconfigVM_Task(vim.vm.ConfigSpec(  # type: ignore[no-untyped-call]
            deviceChange=[vim.vm.device.VirtualDeviceSpec(  # type: ignore[no-untyped-call]
                operation="add", fileOperation="create", device=disk)])))


def snapshots(lab: Lab, vm: str) -> int:
    sim = lab.sim
    with connect(sim.host, sim.port, sim.user, sim.password, fingerprint=None,
                 insecure=True) as s:
        return len(find_vm(s, vm).snapshots)


@pytest.fixture
def lab(vcsim_binary: Path, tmp_path: Path) -> Iterator[Lab]:
    with started_lab(vcsim_binary, tmp_path, extra=("-ds", "3"), vcsim_env=SIM_ENV) as lab:
        lab.write(0, random.Random(4).randbytes(700 << 10))
        add_disk(lab, "LocalDS_1")  # disk 1: vSAN
        add_disk(lab, "LocalDS_2")  # disk 2: vVols
        add_disk(lab, "LocalDS_0", encrypted=True)  # disk 3: its own key
        yield lab


def test_refused_disks_fail_their_vm_before_any_snapshot(lab: Lab) -> None:
    assert lab.vmkeep("job", "create", "all", "--vcenter", "vc", "--vm", VM0, "--vm", VM1,
                      "--repo", "main", "--retries", "0").code == 0

    r = lab.vmkeep("job", "check", "all", "--json")
    assert r.code == 2, r.err
    check = json.loads(r.out)
    assert check["job"] == "all" and check["result"] == "refused"
    vm0, vm1 = check["vms"]
    assert (vm0["name"], vm0["status"], vm1["name"], vm1["status"]) == (
        VM0, "refused", VM1, "refused")
    disks = vm0["disks"]
    assert [d["status"] for d in disks] == ["readable", "refused", "refused", "refused"]
    assert [d["datastore"] for d in disks] == ["LocalDS_0", "LocalDS_1", "LocalDS_2",
                                               "LocalDS_0"]
    assert [d["datastore_type"] for d in disks] == ["OTHER", "vsan", "VVOL", "OTHER"]
    assert "vSAN" in disks[1]["reason"] and "not files" in disks[1]["reason"]
    assert "vVols" in disks[2]["reason"] and "not files" in disks[2]["reason"]
    assert "encrypted (backing.keyId)" in disks[3]["reason"]
    assert [d["status"] for d in vm1["disks"]] == ["refused"]
    assert "config.keyId" in vm1["disks"][0]["reason"]

    text = lab.vmkeep("job", "check", "all")
    assert text.code == 2
    assert "refused" in text.out and "LocalDS_1 (vsan)" in text.out
    assert "2 will fail" in text.err

    run = lab.vmkeep("job", "run", "all", "--wait")
    assert run.code == 2, run.err
    errors = [line for line in run.err.splitlines() if "cannot be backed up by file" in line]
    assert len(errors) == 2, run.err
    vm0_error = next(e for e in errors if VM0 in e)
    for named in ("disk 1 ([LocalDS_1]", "vSAN", "disk 2 ([LocalDS_2]", "vVols",
                  "disk 3 ([LocalDS_0]", "encrypted", f"--exclude-disk {VM0}:1"):
        assert named in vm0_error, named
    assert "disk 0" not in vm0_error
    vm1_error = next(e for e in errors if VM1 in e)
    assert "disk 0 ([LocalDS_0]" in vm1_error and "config.keyId" in vm1_error
    assert "no snapshot was taken" in vm0_error
    assert "snapshot vmkeep" not in run.err  # nothing was taken
    assert snapshots(lab, VM0) == snapshots(lab, VM1) == 0

    with ApplianceClient(lab.home / "appliance.sock") as client:
        reports = client.hunter(dry_run=True)
    assert [r.lines for r in reports] == [["Snapshot Hunter: nothing to fix (4 VMs checked)"]]
    assert json.loads(lab.vmkeep("points", "list", "--json").out) == []


def test_the_vm_backs_up_with_its_refused_disks_excluded(lab: Lab) -> None:
    assert lab.vmkeep("job", "create", "rest", "--vcenter", "vc", "--vm", VM0, "--repo",
                      "main", "--retries", "0", "--enable-cbt", "--exclude-disk", f"{VM0}:1",
                      "--exclude-disk", f"{VM0}:2", "--exclude-disk", f"{VM0}:3").code == 0
    r = lab.vmkeep("job", "check", "rest", "--json")
    assert r.code == 0, r.out
    (vm,) = json.loads(r.out)["vms"]
    assert vm["status"] == "ok"
    assert [d["status"] for d in vm["disks"]] == ["readable", "excluded", "excluded",
                                                  "excluded"]
    run = lab.vmkeep("job", "run", "rest", "--wait")
    assert run.code == 0, run.err
    (point,) = json.loads(lab.vmkeep("points", "list", "--vm", VM0, "--json").out)
    assert [d["index"] for d in point["disks"]] == [0]
    assert snapshots(lab, VM0) == 0
    with ApplianceClient(lab.home / "appliance.sock") as client:
        assert [r.lines for r in client.hunter(dry_run=True)] == [
            ["Snapshot Hunter: nothing to fix (4 VMs checked)"]]


def test_job_check_says_what_a_plain_job_will_do(lab: Lab) -> None:
    """A VM whose disks are all readable: exit 0; an unknown job: exit 3."""
    assert lab.vmkeep("job", "create", "plain", "--vcenter", "vc", "--vm", "DC0_C0_RP0_VM0",
                      "--repo", "main").code == 0
    r = lab.vmkeep("job", "check", "plain", "--json")
    assert r.code == 0, r.err
    (vm,) = json.loads(r.out)["vms"]
    assert (vm["status"], [d["status"] for d in vm["disks"]]) == ("ok", ["readable"])
    assert lab.vmkeep("job", "check", "no-such-job").code == 3


def encrypt_first_disk(lab: Lab, vm: str = VM0) -> None:
    """Give disk 0 of ``vm`` a key id (as vSphere shows a disk encrypted after the fact)."""
    sim = lab.sim
    with connect(sim.host, sim.port, sim.user, sim.password, fingerprint=None,
                 insecure=True) as s:
        obj = _vm(s, vm)
        disk: Any = next(d for d in obj.config.hardware.device
                         if isinstance(d, vim.vm.device.VirtualDisk))
        disk.backing.keyId = vim.encryption.CryptoKeyId(  # type: ignore[no-untyped-call]
            keyId="late-key", providerId=vim.encryption.KeyProviderId(  # type: ignore[no-untyped-call]
                id="kms"))
        WaitForTask(obj.ReconfigVM_Task(vim.vm.ConfigSpec(  # type: ignore[no-untyped-call]
            deviceChange=[vim.vm.device.VirtualDeviceSpec(  # type: ignore[no-untyped-call]
                operation="edit", device=disk)])))


def vm_state(lab: Lab) -> dict[str, tuple[str, int]]:
    """Each VM's power state and number of disks."""
    sim = lab.sim
    with connect(sim.host, sim.port, sim.user, sim.password, fingerprint=None,
                 insecure=True) as s:
        return {v.name: (v.power_state, len(v.disks)) for v in list_vms(s)}


def backed_up(lab: Lab) -> str:
    """A point of VM0 (its disk 0: the job leaves the others out)."""
    assert lab.vmkeep("job", "create", "rest", "--vcenter", "vc", "--vm", VM0, "--repo",
                      "main", "--retries", "0", "--exclude-disk", f"{VM0}:1",
                      "--exclude-disk", f"{VM0}:2", "--exclude-disk", f"{VM0}:3").code == 0
    assert lab.vmkeep("job", "run", "rest", "--wait").code in (0, 1)
    (point,) = json.loads(lab.vmkeep("points", "list", "--vm", VM0, "--json").out)
    return str(point["id"])


def test_a_new_vm_is_not_restored_onto_vsan_or_vvols(lab: Lab) -> None:
    point = backed_up(lab)
    before = vm_state(lab)
    for ds, named in (("LocalDS_1", "vSAN"), ("LocalDS_2", "vVols")):
        r = lab.vmkeep("restore", "vm", point, "--name", "copy", "--datastore", ds)
        assert r.code == 10, r.err
        assert "nothing was created" in r.err and f"datastore '{ds}' is a {named}" in r.err
    assert vm_state(lab) == before  # no VM "copy"


def test_an_encrypted_original_disk_is_not_overwritten(lab: Lab) -> None:
    point = backed_up(lab)
    encrypt_first_disk(lab)
    before = vm_state(lab)
    r = lab.vmkeep("restore", "vm", point, "--original", "--yes")
    assert r.code == 10, r.err
    assert "[LocalDS_0] DC0_H0_VM0" in r.err and "encrypted (backing.keyId)" in r.err
    assert vm_state(lab) == before  # still powered on, its disks as they were


def test_a_disk_is_not_restored_into_a_vm_on_vsan(lab: Lab) -> None:
    point = backed_up(lab)
    before = vm_state(lab)
    sim = lab.sim
    r = lab.vmkeep("vsphere", "restore-disk", "--host", sim.host, "--port", str(sim.port),
                   "--user", sim.user, "--fingerprint", fetch_fingerprint(sim.host, sim.port),
                   "--password-stdin", "--repo", str(lab.tmp / "repo"), "--disk", "0",
                   "--vm", "DC0_C0_RP0_VM0", "--datastore", "LocalDS_1", point,
                   stdin=sim.password)
    assert r.code == 10, r.err
    assert "nothing was changed" in r.err and "vSAN" in r.err
    assert vm_state(lab) == before


def test_a_refused_vm_is_not_retried(lab: Lab) -> None:
    """Retrying cannot make an encrypted disk readable: the VM fails once, the session ends
    at once instead of waiting to retry it (here: an hour), and the log says why."""
    assert lab.vmkeep("job", "create", "enc", "--vcenter", "vc", "--vm", VM1, "--repo", "main",
                      "--retries", "3", "--retry-wait", "1h").code == 0
    r = lab.vmkeep("job", "run", "enc")
    assert r.code == 0, r.err
    sid = r.out.strip()

    def ended() -> dict[str, Any] | None:
        s: dict[str, Any] = json.loads(lab.vmkeep("session", "show", sid, "--json").out)
        return s if s["state"] != "running" else None

    s = poll("the session to end without waiting to retry the refused VM", ended, 60)
    assert s["result"] == "failed", s
    log = [line["message"] for line in s["log"]]
    assert not any(m.startswith("retry ") for m in log), log
    assert any(VM1 in m and "not retried" in m for m in log), log
    assert snapshots(lab, VM1) == 0


def test_a_refused_vm_s_guest_is_not_touched(lab: Lab, sshd: Sshd) -> None:
    """The refusal comes before guest processing: no pre-freeze script runs in the guest of
    a VM that will not be backed up (a database is not frozen for nothing)."""
    marks = sshd.owned_folder(f"marks-{lab.tmp.name}")
    pre = lab.tmp / "pre-freeze.sh"
    pre.write_text(f"#!/bin/sh\ntouch {marks}/pre\n")
    r = lab.vmkeep("job", "create", "app", "--vcenter", "vc", "--vm", VM1, "--repo", "main",
                   "--guest-host", f"127.0.0.1:{sshd.port}", "--guest-user", sshd.user,
                   "--guest-key", str(sshd.key_file), "--guest-host-key-fingerprint",
                   sshd.fingerprint, "--pre-freeze", str(pre), "--retries", "0")
    assert r.code == 0, r.err
    run = lab.vmkeep("job", "run", "app", "--wait")
    assert run.code == 2 and "cannot be backed up by file" in run.err, run.err
    assert not (marks / "pre").exists()
