"""backup_vm against the simulator: CBT incrementals, point in time, CBT invalid, CBT sanity
sampling, refused disks and snapshot cleanup on failure."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from pyVim.task import WaitForTask
from pyVmomi import vim

from appliance.jobs import vm_backup
from tests.vsphere.vmenv import BS, VM, Env, warnings_of, write


def test_full_then_incremental_reads_only_changes(env: Env) -> None:
    e = env
    r1 = e.backup()
    assert r1.status == "success" and r1.point_id and e.snapshots() == 0
    assert [d.read_kind for d in r1.disks] == ["full", "full"]
    want1 = [e.content(0), e.content(1)]
    assert r1.backup is not None and r1.backup.bytes_read >= (600 << 10) + (3 << 20)
    # ~1 % of disk 1 and one small write on disk 0
    write(e.live(1), 2 * BS + 100, b"x" * 1000)
    write(e.live(1), 7 * (1 << 20), b"y" * 50_000)  # past the old end of data
    write(e.live(0), 10, b"hello")
    r2 = e.backup(sample_blocks=4)
    assert r2.status == "success", e.logs
    assert [d.read_kind for d in r2.disks] == ["incremental", "incremental"]
    # changed blocks (3) plus the 4 sampled blocks per disk
    assert r2.disks[0].bytes_read <= (1 + 4) * BS
    assert r2.disks[1].bytes_read <= (2 + 4) * BS
    assert r2.backup is not None and r2.backup.bytes_read <= 3 * BS
    assert r1.point_id and r2.point_id
    for i in (0, 1):
        assert e.restored(r1.point_id, i) == want1[i]
        assert e.restored(r2.point_id, i) == e.content(i)
    row = e.cat.disks(r2.point_id)
    assert all(d.change_id for d in row)
    m = e.repo.read_manifest(r2.point_id)
    assert m.object_kind == "vm" and m.object_uuid == r2.instance_uuid
    assert m.config["name"] == VM and m.config["memory_mb"] > 0
    assert [d["unit"] for d in m.config["disks"]] == [0, 1]
    assert m.config["num_cpu"] >= 1 and len(m.config["disks"]) == 2
    assert m.config["nics"] and m.config["nics"][0]["mac"] and m.config["nics"][0]["network"]
    # the snapshot's whole VirtualMachineConfigInfo, as pyVmomi's VmomiJSONEncoder wrote it
    vim_config = m.config["vim_config"]
    assert vim_config["_vimtype"] == "vim.vm.ConfigInfo" and vim_config["name"] == VM
    assert len([d for d in vim_config["hardware"]["device"]
                if d["_vimtype"] == "vim.vm.device.VirtualDisk"]) == 2


def test_writes_after_the_snapshot_are_not_in_the_point(env: Env) -> None:
    e = env
    before = [e.content(0), e.content(1)]

    def guest_writes() -> None:
        write(e.live(0), 0, b"AFTER" * 100)
        write(e.live(1), BS, b"AFTER" * 1000)

    r = e.backup(before_read=guest_writes)
    assert r.point_id and e.snapshots() == 0
    assert e.restored(r.point_id, 0) == before[0]
    assert e.restored(r.point_id, 1) == before[1]


def test_invalid_change_id_gives_full_read_with_warning(env: Env) -> None:
    e = env
    r1 = e.backup()
    assert r1.point_id
    e.cat._con.execute(  # tamper: a changeId the server never issued
        "UPDATE point_disks SET change_id = ? WHERE point_id = ? AND disk_index = 1",
        ["52 00 00 00 00 00 00 00-00 00 00 00 00 00 00 00/1", r1.point_id])
    write(e.live(1), 3 * BS, b"z" * 100)
    r2 = e.backup()
    assert r2.status == "warning" and r2.point_id
    assert [d.read_kind for d in r2.disks] == ["incremental", "full"]
    assert any("CBT changeId invalid" in w and "disk 1" in w for w in warnings_of(e))
    assert r2.disks[1].warnings
    assert r2.backup is not None and r2.backup.blocks_new <= 2  # dedup
    assert e.restored(r2.point_id, 1) == e.content(1)


@pytest.mark.parametrize("vcsim", [{"VCSIM_CBT_HIDE_EVERY": "1"}], indirect=True)
def test_change_hidden_from_cbt_is_caught_by_sampling(env: Env) -> None:
    """The simulator's CBT leaves out every changed area (a CBT bug): the sanity sample of
    blocks CBT calls unchanged finds the difference and forces a full read."""
    e = env
    r1 = e.backup()
    assert r1.point_id
    write(e.live(1), 4 * BS + 17, b"hidden change")
    r2 = e.backup(sample_blocks=10_000)
    assert r2.status == "warning" and r2.point_id
    assert [d.read_kind for d in r2.disks] == ["incremental", "full"]
    assert any("CBT sanity check failed" in w and "disk 1" in w and "block 4" in w
               for w in warnings_of(e))
    assert e.restored(r2.point_id, 1) == e.content(1)
    assert e.restored(r2.point_id, 0) == e.content(0)


def test_unsupported_disk_is_skipped_and_others_backed_up(env: Env) -> None:
    e = env
    disk = e.disks()[1]
    disk.backing.diskMode = "independent_persistent"  # snapshots do not freeze it
    WaitForTask(e.vm.ReconfigVM_Task(vim.vm.ConfigSpec(  # type: ignore[no-untyped-call]
        deviceChange=[vim.vm.device.VirtualDeviceSpec(  # type: ignore[no-untyped-call]
            operation="edit", device=disk)])))
    r = e.backup()
    assert r.status == "warning" and r.point_id and e.snapshots() == 0
    assert r.disks[1].read_kind == "skipped"
    assert "disk 1" in r.disks[1].skipped_reason
    assert "independent_persistent" in r.disks[1].skipped_reason
    assert any("skipping disk 1" in w for w in warnings_of(e))
    assert [d.disk_index for d in e.cat.disks(r.point_id)] == [0]
    assert e.restored(r.point_id, 0) == e.content(0)


def test_delta_base_is_refused() -> None:
    from appliance.vsphere.cbt import SnapshotDisk
    from appliance.vsphere.inventory import DiskInfo

    info = DiskInfo(0, 2000, "Hard disk 1", 0, 0, 1 << 20, "[ds] vm/vm-000001.vmdk",
                    "SeSparse", "ds", None, "persistent", 202, "[ds] vm/vm.vmdk")
    sd = SnapshotDisk(2000, "[ds] vm/vm-000001.vmdk", 1 << 20, None,
                      "VirtualDiskSeSparseBackingInfo", 0, 0)
    why = vm_backup.refusal(info, sd)
    assert "disk 0" in why and "delta" in why and "VDDK" in why
    rdm = replace(info, backing_type="RawDiskMappingVer1", parent_file_name=None)
    assert "raw device mapping" in vm_backup.refusal(rdm, sd)


def test_failure_after_snapshot_leaves_no_snapshot(env: Env,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    e = env

    def boom(*a: Any, **k: Any) -> Any:
        assert e.snapshots() == 1
        raise RuntimeError("injected failure")

    monkeypatch.setattr(vm_backup, "run_backup", boom)
    with pytest.raises(RuntimeError, match="injected"):
        e.backup()
    assert e.snapshots() == 0


def test_a_disk_grown_since_the_last_point_is_read_in_full(env: Env) -> None:
    e = env
    r1 = e.backup()
    assert r1.point_id
    disk = e.disks()[1]
    disk.capacityInKB += 4 * 1024  # the admin grows disk 1 by 4 MiB
    disk.capacityInBytes = disk.capacityInKB * 1024
    WaitForTask(e.vm.ReconfigVM_Task(vim.vm.ConfigSpec(  # type: ignore[no-untyped-call]
        deviceChange=[vim.vm.device.VirtualDeviceSpec(  # type: ignore[no-untyped-call]
            operation="edit", device=disk)])))
    write(e.live(1), disk.capacityInBytes - 10_000, b"new space used")
    r2 = e.backup()
    assert r2.point_id
    assert [d.read_kind for d in r2.disks] == ["incremental", "full"]
    assert "size changed" in r2.disks[1].reason
    assert r2.backup is not None and r2.backup.blocks_new <= 2  # the rest deduplicated
    assert e.restored(r2.point_id, 1) == e.content(1)
    assert len(e.restored(r1.point_id, 1)) == disk.capacityInBytes - (4 << 20)
