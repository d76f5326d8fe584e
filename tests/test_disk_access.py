"""The rule of which disks vmkeep reads by file (``appliance.vsphere.disk_access``): pure, so
every case is checked here without a simulator."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from pyVmomi import vim

from appliance.vsphere.disk_access import (
    DATASTORE_KINDS,
    datastore_refusal,
    disk_verdicts,
    refusal_message,
    write_refusal,
)
from appliance.vsphere.inventory import DiskInfo, VmInfo


def disk(index: int, ds: str = "ds1", ds_type: str = "VMFS", **kw: object) -> DiskInfo:
    base = DiskInfo(index=index, key=2000 + index, label=f"Hard disk {index + 1}",
                    controller_bus=0, unit_number=index, capacity_bytes=1 << 20,
                    file_name=f"[{ds}] vm/vm_{index}.vmdk", backing_type="FlatVer2",
                    datastore_name=ds, change_id=None, disk_mode="persistent",
                    datastore_type=ds_type)
    return replace(base, **kw)  # type: ignore[arg-type]


def vm(*disks: DiskInfo, encrypted: bool = False) -> VmInfo:
    return VmInfo(name="db01", instance_uuid="u-1", bios_uuid="b-1", moref="vm-1",
                  power_state="poweredOn", guest_id="", cbt_enabled=True,
                  consolidation_needed=False, tools_running_status="", template=False,
                  datacenter="DC0", host="h1", disks=disks, snapshots=(),
                  encrypted=encrypted)


@pytest.mark.parametrize("kind", ["VMFS", "NFS", "NFS41", "OTHER"])
def test_file_datastores_are_readable(kind: str) -> None:
    assert datastore_refusal(kind, "ds1") == ""


@pytest.mark.parametrize(("kind", "named"), [
    ("vsan", "vSAN"), ("vsanD", "vSAN Direct"), ("VVOL", "vVols"), ("PMEM", "persistent memory"),
    ("VFFS", "virtual flash"), ("vfat", "vfat"), ("CIFS", "CIFS")])
def test_object_and_other_datastores_are_refused_by_name(kind: str, named: str) -> None:
    why = datastore_refusal(kind, "ds9")
    assert why.startswith(f"datastore 'ds9' is a {named} datastore ({kind}): ")


@pytest.mark.parametrize("kind", ["", "ext4", "vmfs"])
def test_an_unknown_type_is_refused(kind: str) -> None:
    assert "unknown type" in datastore_refusal(kind, "ds1")


def test_every_type_vsphere_names_is_decided() -> None:
    """vSphere's own list (``HostFileSystemVolumeFileSystemType``) is in the table: a type
    is refused as unknown only when vSphere adds one."""
    named: Any = vim.host.FileSystemVolume.FileSystemType  # pyVmomi's enums are untyped
    assert set(named.values) <= set(DATASTORE_KINDS)
    assert {k for k, v in DATASTORE_KINDS.items() if v.by_file} == {"VMFS", "NFS", "NFS41",
                                                                   "OTHER"}


def test_verdicts_in_order_of_precedence() -> None:
    v = vm(disk(0),
           disk(1, "vsan1", "vsan"),
           disk(2, "vvol1", "VVOL"),
           disk(3, encrypted=True),
           disk(4, "vsan1", "vsan", disk_mode="independent_persistent"),  # skipped first
           disk(5, backing_type="RawDiskMappingVer1"),
           disk(6, parent_file_name="[ds1] vm/base.vmdk"),
           disk(7, "vsan1", "vsan"),  # excluded by the job
           disk(8, "nfs1", "NFS41"),
           disk(9, backing_type="SeSparse"))
    got = disk_verdicts(v, frozenset({7}))
    assert [g.status for g in got] == ["readable", "refused", "refused", "refused", "skipped",
                                      "skipped", "skipped", "excluded", "readable", "skipped"]
    assert [g.index for g in got] == list(range(10))
    assert "vSAN" in got[1].reason and "vVols" in got[2].reason
    assert "backing.keyId" in got[3].reason
    assert "independent_persistent" in got[4].reason and "raw device" in got[5].reason
    assert "delta of [ds1] vm/base.vmdk" in got[6].reason
    assert got[7].reason == "excluded by the job" and got[0].reason == ""
    assert (got[1].datastore, got[1].datastore_type) == ("vsan1", "vsan")


def test_an_encrypted_vm_refuses_every_disk_it_does_not_exclude() -> None:
    got = disk_verdicts(vm(disk(0), disk(1), encrypted=True), frozenset({1}))
    assert [g.status for g in got] == ["refused", "excluded"]
    assert "config.keyId" in got[0].reason


def test_the_refusal_names_each_disk_and_how_to_leave_it_out() -> None:
    v = vm(disk(0), disk(1, "vsan1", "vsan"), disk(2, encrypted=True))
    msg = refusal_message(v, disk_verdicts(v))
    assert msg.startswith("VM 'db01' cannot be backed up by file, so no snapshot was taken: ")
    assert "disk 1 ([vsan1] vm/vm_1.vmdk): datastore 'vsan1' is a vSAN datastore" in msg
    assert "disk 2 ([ds1] vm/vm_2.vmdk): it is encrypted" in msg
    assert "disk 0" not in msg
    assert "--exclude-disk db01:1 --exclude-disk db01:2" in msg
    assert refusal_message(v, disk_verdicts(v, frozenset({1, 2}))) == ""


def test_a_restore_writes_only_plain_disk_files() -> None:
    assert write_refusal("ds1", "VMFS") == "" and write_refusal("nfs", "NFS41") == ""
    assert "vVols" in write_refusal("vv", "VVOL")
    assert "unknown type" in write_refusal("x", "")
    assert "backing.keyId" in write_refusal("ds1", "VMFS", encrypted=True)
