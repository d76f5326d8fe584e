"""Inventory through ContainerView + PropertyCollector against vcsim's default model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pyVim.task import WaitForTask
from pyVmomi import vim

from appliance.vsphere.inventory import (
    VmNotFoundError,
    find_vm,
    list_datacenters,
    list_hosts,
    list_vms,
)
from appliance.vsphere.session import VSphereSession, connect
from tests.vcsim import Vcsim


@pytest.fixture
def session(vcsim: Vcsim) -> Iterator[VSphereSession]:
    with connect(vcsim.host, vcsim.port, vcsim.user, vcsim.password, fingerprint=None,
                 insecure=True) as s:
        yield s


def _vm(session: VSphereSession, instance_uuid: str) -> Any:
    return session.content.searchIndex.FindByUuid(None, instance_uuid, True, True)


def _reconfig(session: VSphereSession, instance_uuid: str, spec: Any) -> None:
    WaitForTask(_vm(session, instance_uuid).ReconfigVM_Task(spec))  # type: ignore[no-untyped-call]


def _add_disk(unit: int, kb: int, controller_key: int = 202) -> Any:
    disk = vim.vm.device.VirtualDisk(  # type: ignore[no-untyped-call]
        key=-1, controllerKey=controller_key, unitNumber=unit, capacityInKB=kb,
        backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(  # type: ignore[no-untyped-call]
            diskMode="persistent", thinProvisioned=True, fileName=""))
    return vim.vm.device.VirtualDeviceSpec(  # type: ignore[no-untyped-call]
        operation="add", fileOperation="create", device=disk)


def test_lists_the_simulators_vms(session: VSphereSession) -> None:
    vms = list_vms(session)
    assert [vm.name for vm in vms] == ["DC0_C0_RP0_VM0", "DC0_C0_RP0_VM1",
                                       "DC0_H0_VM0", "DC0_H0_VM1"]
    for vm in vms:
        assert vm.instance_uuid and vm.moref.startswith("vm-")
        assert vm.power_state == "poweredOn"
        assert vm.datacenter == "DC0" and vm.host
        assert not vm.cbt_enabled and not vm.consolidation_needed and not vm.has_snapshots
        assert vm.tools_running_status == "guestToolsNotRunning"
        assert vm.guest_id
        (disk,) = vm.disks
        assert (disk.index, disk.controller_bus, disk.unit_number) == (0, 0, 0)
        assert disk.capacity_bytes == 1024 * 1024  # from capacityInKB: vcsim leaves Bytes empty
        assert disk.backing_type == "FlatVer2" and disk.datastore_name == "LocalDS_0"
        assert disk.file_name == f"[LocalDS_0] {vm.name}/disk1.vmdk"
        assert disk.disk_mode == "persistent" and disk.parent_file_name is None


def test_instance_uuids_are_stable_across_listings(session: VSphereSession) -> None:
    first = {vm.instance_uuid: vm.name for vm in list_vms(session)}
    second = {vm.instance_uuid: vm.name for vm in list_vms(session)}
    assert first == second and len(first) == 4


def test_disks_are_numbered_by_bus_then_unit(session: VSphereSession) -> None:
    vm = find_vm(session, "DC0_H0_VM0")
    # Added out of order: unit 3 first, then unit 1; the listing sorts by (bus, unit).
    _reconfig(session, vm.instance_uuid,
              vim.vm.ConfigSpec(deviceChange=[_add_disk(3, 3072)]))  # type: ignore[no-untyped-call]
    _reconfig(session, vm.instance_uuid,
              vim.vm.ConfigSpec(deviceChange=[_add_disk(1, 2048)]))  # type: ignore[no-untyped-call]
    disks = find_vm(session, vm.instance_uuid).disks
    assert [(d.index, d.controller_bus, d.unit_number) for d in disks] == [
        (0, 0, 0), (1, 0, 1), (2, 0, 3)]
    assert [d.capacity_bytes for d in disks] == [1024 * 1024, 2048 * 1024, 3072 * 1024]
    assert len({d.key for d in disks}) == 3


def test_cbt_state_follows_reconfig(session: VSphereSession) -> None:
    vm = find_vm(session, "DC0_H0_VM1")
    assert not vm.cbt_enabled
    _reconfig(session, vm.instance_uuid,
              vim.vm.ConfigSpec(changeTrackingEnabled=True))  # type: ignore[no-untyped-call]
    after = find_vm(session, vm.instance_uuid)
    assert after.cbt_enabled
    assert {v.name: v.cbt_enabled for v in list_vms(session)}["DC0_H0_VM0"] is False


def test_snapshots_show_in_the_listing(session: VSphereSession) -> None:
    vm = find_vm(session, "DC0_C0_RP0_VM0")
    task = _vm(session, vm.instance_uuid).CreateSnapshot_Task(
        name="vmkeep-test", description="d", memory=False, quiesce=False)
    WaitForTask(task)  # type: ignore[no-untyped-call]
    after = find_vm(session, vm.instance_uuid)
    assert after.has_snapshots
    assert [(s.name, s.parent_moref) for s in after.snapshots] == [("vmkeep-test", None)]


def test_find_vm_by_uuid_moref_and_name(session: VSphereSession) -> None:
    vm = find_vm(session, "DC0_H0_VM0")
    assert find_vm(session, vm.instance_uuid.upper()) == vm
    assert find_vm(session, vm.moref) == vm


def test_find_vm_not_found_is_one_line(session: VSphereSession) -> None:
    with pytest.raises(VmNotFoundError) as info:
        find_vm(session, "no-such-vm")
    assert "no-such-vm" in str(info.value) and "\n" not in str(info.value)
    assert info.value.exit_code == 3


def test_datacenters_and_hosts(session: VSphereSession) -> None:
    assert [dc.name for dc in list_datacenters(session)] == ["DC0"]
    hosts = list_hosts(session)
    assert len(hosts) >= 2
    assert all(h.connection_state == "connected" for h in hosts)
