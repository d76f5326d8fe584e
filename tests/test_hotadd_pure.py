"""Hot-add's pure parts: the BIOS UUID's two byte orders, free SCSI units, the device lookup
in a fake sysfs and by-id folder, the Hunter's rule for foreign disks, and what a hot-add
restore zeroes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pyVmomi import vim

from appliance.jobs.hotadd_restore import zero_areas
from appliance.source import Extent
from appliance.vsphere import hotadd
from appliance.vsphere.hotadd import ApplianceVm, AttachedDisk, HotaddError, device_of
from appliance.vsphere.hunter import Action, FindingKind, attached_disk_findings
from appliance.vsphere.inventory import DiskInfo, SnapshotInfo, VmInfo


def test_the_bios_uuid_is_tried_in_both_byte_orders() -> None:
    forms = hotadd.uuid_forms("4223C1B5-0E7A-9A6A-6A1B-3A2C1D0E0F10\n")
    assert forms == ("4223c1b5-0e7a-9a6a-6a1b-3a2c1d0e0f10",
                     "b5c12342-7a0e-6a9a-6a1b-3a2c1d0e0f10")
    assert hotadd.uuid_forms("not a uuid") == ()


def _controller(key: int, bus: int) -> Any:
    return vim.vm.device.ParaVirtualSCSIController(  # type: ignore[no-untyped-call]
        key=key, busNumber=bus, scsiCtlrUnitNumber=7)


def _disk(key: int, ctrl: int, unit: int) -> Any:
    return vim.vm.device.VirtualDisk(  # type: ignore[no-untyped-call]
        key=key, controllerKey=ctrl, unitNumber=unit)


def test_free_units_skip_7_and_used_ones_bus_by_bus() -> None:
    devices = [_controller(1001, 1), _controller(1000, 0), _disk(2000, 1000, 0),
               _disk(2001, 1000, 1)]
    free = hotadd._free_units(devices)
    assert free[:2] == [(1000, 0, 2), (1000, 0, 3)]
    assert (1000, 0, 7) not in free and (1001, 1, 0) in free
    assert len(free) == 13 + 15
    assert hotadd._free_units([]) == []


def test_attach_without_a_free_unit_names_the_controllers(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    full = [_controller(1000, 0)] + [_disk(2000 + u, 1000, u) for u in range(16) if u != 7]
    monkeypatch.setattr(hotadd, "_devices", lambda session, app: full)
    app = ApplianceVm("vm-1", "vmkeep", "[ds] vmkeep", False)
    with pytest.raises(HotaddError, match=r"0 free SCSI unit.*ParaVirtualSCSIController bus 0"):
        hotadd.attach(None, app,  # type: ignore[arg-type]
                      ["[ds] vm/vm.vmdk"], "independent_nonpersistent")


UUID = "6000C291-aaaa-bbbb-cccc-0123456789ab"
HEX = "6000c291aaaabbbbcccc0123456789ab"


def test_the_device_is_found_by_id_then_in_sysfs(tmp_path: Path) -> None:
    disk = AttachedDisk("[ds] vm/vm.vmdk", 2001, UUID, 0, 1)
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    (tmp_path / "sdb").write_bytes(b"")  # the device node a real link points at
    (by_id / f"scsi-3{HEX}").symlink_to(tmp_path / "sdb")
    assert device_of(disk, by_id=str(by_id), sysfs=str(tmp_path), wait=0) == \
        f"{by_id}/scsi-3{HEX}"
    (by_id / f"scsi-3{HEX}").unlink()
    dev = tmp_path / "class" / "scsi_device" / "2:0:1:0" / "device"
    (dev / "block" / "sdc").mkdir(parents=True)
    (dev / "wwid").write_text(f"naa.{HEX}\n")
    assert device_of(disk, by_id=str(by_id), sysfs=str(tmp_path), wait=0) == "/dev/sdc"
    (dev / "wwid").write_text("naa.6000c29000000000000000000000000\n")
    with pytest.raises(HotaddError, match=r"did not appear.*disk\.EnableUUID"):
        device_of(disk, by_id=str(by_id), sysfs=str(tmp_path), wait=0.05)


def _vm(name: str, moref: str, files: list[str], snaps: tuple[str, ...] = ()) -> VmInfo:
    disks = tuple(DiskInfo(i, 2000 + i, f"Hard disk {i}", 0, i, 1 << 20, f, "FlatVer2",
                           "LocalDS_0", None, "persistent") for i, f in enumerate(files))
    return VmInfo(name, f"uuid-{name}", f"bios-{name}", moref, "poweredOn", "", True, False,
                  "", False, "DC0", "H0", disks,
                  tuple(SnapshotInfo(f"snap-{s}", s, "", None, None, False) for s in snaps))


def test_the_hunter_detaches_only_other_vms_disks() -> None:
    app = ApplianceVm("vm-9", "vmkeep", "[LocalDS_0] vmkeep", True)
    vms = [_vm("db", "vm-1", ["[LocalDS_0] db/db.vmdk"], ("vmkeep-x",)),
           _vm("web", "vm-2", ["[LocalDS_0] web/web.vmdk"]),
           _vm("vmkeep", "vm-9", ["[LocalDS_0] vmkeep/vmkeep.vmdk",
                                  "[LocalDS_1] data/own-data.vmdk",
                                  "[LocalDS_0] db/db-snap1.vmdk",
                                  "[LocalDS_0] web/web.vmdk"])]
    found = attached_disk_findings(app, vms, {}, busy=["web"])
    assert [(f.file_name, f.action, f.device_key) for f in found] == [
        ("[LocalDS_0] db/db-snap1.vmdk", Action.DETACH_DISK, 2002),
        ("[LocalDS_0] web/web.vmdk", Action.LEAVE, 2003)]
    assert all(f.kind is FindingKind.ATTACHED_DISK and f.vm_moref == "vm-9" for f in found)
    in_use = attached_disk_findings(app, vms, {"vmkeep-x": "s1"}, busy=[])
    assert in_use[0].action is Action.LEAVE and in_use[0].in_use_by == "s1"


def test_a_hotadd_restore_zeroes_what_is_allocated_but_not_stored() -> None:
    bs = 256
    allocated = [Extent(0, 1024), Extent(1500, 100), Extent(2000, 5000)]
    stored = [0, 2, 3]  # blocks [0,256), [512,1024)
    assert zero_areas(allocated, stored, bs, 2300) == [
        Extent(256, 256), Extent(1500, 100), Extent(2000, 300)]
    assert zero_areas([], stored, bs, 2300) == []


def test_encrypted_disks_are_read_through_hotadd_only() -> None:
    from dataclasses import replace

    from appliance.vsphere.disk_access import disk_verdicts

    vm = _vm("db", "vm-1", ["[LocalDS_0] db/db.vmdk"])
    vm = replace(vm, encrypted=True,
                 disks=tuple(replace(d, encrypted=True, datastore_type="VMFS")
                             for d in vm.disks))
    assert [v.status for v in disk_verdicts(vm)] == ["refused"]
    assert "config.keyId" in disk_verdicts(vm)[0].reason
    assert [v.status for v in disk_verdicts(vm, hotadd=True)] == ["readable"]
    vsan = replace(vm, disks=tuple(replace(d, datastore_type="vsan") for d in vm.disks))
    assert [v.status for v in disk_verdicts(vsan, hotadd=True)] == ["refused"]
