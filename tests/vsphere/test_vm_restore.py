"""Restores into vSphere against the simulator: an entire VM to a new VM, over the original VM,
and one disk into an existing VM; failures leave nothing half-restored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyVim.task import WaitForTask
from pyVmomi import vim

from appliance.errors import UsageError, VmkeepError
from appliance.jobs import vm_restore
from appliance.jobs.restore import read_blocks
from appliance.jobs.vm_restore import (
    plan_new_vm,
    plan_original_vm,
    plan_restore_original,
    restore_disk_into_vm,
    restore_new_vm,
    restore_original_vm,
)
from appliance.vsphere import inventory
from appliance.vsphere import restore_target as rt
from appliance.vsphere.cbt import split_datastore_path
from appliance.vsphere.session import fetch_fingerprint
from appliance.vsphere.transport import DatastoreDiskSource, DatastoreEndpoint, TransportError
from appliance.vsphere.upload import UploadError, upload_file
from appliance.vsphere.vm_config import PlacementRecord
from tests.helpers import in_ws, session_first
from tests.vsphere.vmenv import BS, VM, Env, vm_object, warnings_of, write

NEW = "restored-vm"


def flat_bytes(e: Env, disk: rt.TargetDisk) -> bytes:
    data = (Path(e.datastores[disk.datastore]) / disk.flat_path).read_bytes()
    return data[:disk.capacity_bytes] + bytes(max(0, disk.capacity_bytes - len(data)))


def vm_names(e: Env) -> list[str]:
    return [v.name for v in inventory.list_vms(e.session)]


def backed_up(e: Env) -> tuple[str, list[bytes]]:
    r = e.backup()
    assert r.point_id and r.status == "success", e.logs
    return r.point_id, [e.content(0), e.content(1)]


def test_entire_vm_to_a_new_vm_has_the_hardware_and_the_bytes(env: Env) -> None:
    e = env
    point, want = backed_up(e)
    write(e.live(1), 0, b"written after the backup" * 100)  # the new VM must not see this
    progress: list[int] = []
    result = in_ws(e.repo, e.cat, session_first(restore_new_vm, e.session), point, NEW, log=e.log,
                            progress=lambda done, total: progress.append(done))
    assert result.vm_name == NEW and result.disks == (0, 1)
    assert result.bytes_written == sum(len(w) for w in want)
    assert progress and progress[-1] == result.bytes_written
    original = inventory.find_vm(e.session, VM)
    new = inventory.find_vm(e.session, NEW)
    assert new.instance_uuid != original.instance_uuid
    assert [(d.controller_bus, d.unit_number, d.capacity_bytes) for d in new.disks] == \
        [(d.controller_bus, d.unit_number, d.capacity_bytes) for d in original.disks]
    assert new.guest_id == original.guest_id
    live = e.session.content.searchIndex.FindByUuid(None, new.instance_uuid, True, True)
    old = e.vm
    assert live.config.hardware.numCPU == old.config.hardware.numCPU
    assert live.config.hardware.memoryMB == old.config.hardware.memoryMB
    nics = [d for d in live.config.hardware.device if hasattr(d, "macAddress")]
    old_nics = [d for d in old.config.hardware.device if hasattr(d, "macAddress")]
    assert len(nics) == len(old_nics)
    target = rt.describe_vm(e.session, new.moref)
    assert [flat_bytes(e, d) for d in target.disks] == want
    assert split_datastore_path(target.disks[0].file_name)[1].startswith(NEW + "/")


def test_a_failed_new_vm_restore_leaves_no_vm(env: Env,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    e = env
    point, _ = backed_up(e)
    calls: list[int] = []
    real = read_blocks

    def failing(ws: Any, disk: Any, **k: Any) -> Iterator[tuple[int, bytes]]:
        # the disks' data, read while the NFC import sends them: the second one fails
        calls.append(disk.disk_index)
        if len(calls) == 2:
            raise UploadError("injected: the datastore went away")
        yield from real(ws, disk, **k)

    monkeypatch.setattr(vm_restore, "read_blocks", failing)
    with pytest.raises(UploadError, match="injected"):
        in_ws(e.repo, e.cat, session_first(restore_new_vm, e.session), point, NEW, log=e.log)
    assert len(calls) == 2  # the first disk was written, the second failed
    assert NEW not in vm_names(e)
    assert any("deleting the half-restored VM" in m for _, m in e.logs)


def test_new_vm_placement_names_are_checked_first(env: Env) -> None:
    e = env
    point, _ = backed_up(e)
    with pytest.raises(VmkeepError, match=r"no datastore named 'nope'.*LocalDS_0"):
        in_ws(e.repo, e.cat, session_first(restore_new_vm, e.session),
              point, NEW, datastore="nope", log=e.log)
    assert NEW not in vm_names(e)


def test_restore_over_the_original_vm(env: Env) -> None:
    e = env
    point, want = backed_up(e)
    write(e.live(0), 0, b"ransomware" * 1000)
    write(e.live(1), 3 * BS, b"ransomware" * 1000)
    assert e.vm.runtime.powerState == "poweredOn"
    plan = in_ws(e.repo, e.cat, session_first(plan_restore_original, e.session), point)
    text = "\n".join(plan.describe())
    assert "OVERWRITES" in text and "powered off" in text
    assert [d.action for d in plan.disks] == ["overwrite", "overwrite"]
    with pytest.raises(UsageError, match="confirm"):
        in_ws(e.repo, e.cat, session_first(restore_original_vm, e.session),
              plan, confirm=False, log=e.log)
    assert e.content(0) != want[0]  # nothing was touched without confirmation
    result = in_ws(e.repo, e.cat, session_first(restore_original_vm, e.session),
                   plan, confirm=True, log=e.log)
    assert result.cbt_reset
    assert e.vm.runtime.powerState == "poweredOff"
    assert [e.content(0), e.content(1)] == want
    # The disks were written behind CBT's back: the next backup must not trust old changeIds.
    e.logs.clear()
    again = e.backup()
    assert again.point_id and [d.read_kind for d in again.disks] == ["full", "full"]
    assert any("CBT changeId invalid" in m for lvl, m in e.logs if lvl == "warning")
    assert e.restored(again.point_id, 0) == want[0]


def test_original_vm_with_snapshots_is_refused(env: Env) -> None:
    e = env
    point, _ = backed_up(e)
    WaitForTask(e.vm.CreateSnapshot_Task(  # type: ignore[no-untyped-call]
        name="admin", description="", memory=False, quiesce=False))
    with pytest.raises(vm_restore.VmRestoreError, match="1 snapshot"):
        in_ws(e.repo, e.cat, session_first(plan_restore_original, e.session), point)


def test_one_disk_into_an_existing_vm(env: Env) -> None:
    e = env
    point, want = backed_up(e)
    other = "DC0_H0_VM1"
    before = rt.describe_vm(e.session, inventory.find_vm(e.session, other).moref)
    result = in_ws(e.repo, e.cat, session_first(restore_disk_into_vm, e.session),
                   point, 1, other, log=e.log)
    after = rt.describe_vm(e.session, before.moref)
    assert len(after.disks) == len(before.disks) + 1
    assert result.target_disk.capacity_bytes == len(want[1])
    assert flat_bytes(e, result.target_disk) == want[1]


def _target(*disks: tuple[int, int, int], snapshots: int = 0) -> rt.TargetVm:
    return rt.TargetVm("vm", "vm-1", "u", "DC0", "poweredOn", snapshots, tuple(
        rt.TargetDisk(i, 2000 + i, bus, unit, size, f"[ds] vm/d{i}.vmdk",
                      "FlatVer2BackingInfo") for i, (bus, unit, size) in enumerate(disks)))


def test_plans_are_pure_and_explain_themselves(env: Env) -> None:
    e = env
    point, want = backed_up(e)
    m = e.repo.read_manifest(point)
    sizes = [len(w) for w in want]
    new = plan_new_vm(m, "copy")
    assert [(d.action, d.bus, d.unit, d.size) for d in new.disks] == \
        [("create", 0, 0, sizes[0]), ("create", 0, 1, sizes[1])]
    grow = plan_original_vm(m, _target((0, 0, sizes[0]), (0, 1, sizes[1] // 2)))
    assert [d.action for d in grow.disks] == ["overwrite", "grow"]
    assert "grown from" in "\n".join(grow.describe())
    with pytest.raises(vm_restore.VmRestoreError, match="cannot shrink"):
        plan_original_vm(m, _target((0, 0, sizes[0] * 2), (0, 1, sizes[1])))
    with pytest.raises(vm_restore.VmRestoreError, match="no disk at bus 0 unit 1"):
        plan_original_vm(m, _target((0, 0, sizes[0])))
    with pytest.raises(UsageError):
        plan_new_vm(m, " ")


def test_datastore_connections_check_the_pinned_certificate(env: Env) -> None:
    """Reads and uploads refuse a server whose certificate is not the pinned one, before the
    session cookie is sent."""
    e = env
    s = e.session
    before = e.content(0)
    right = fetch_fingerprint(s.host, s.port)
    disk = rt.describe_vm(s, e.vm._moId).disks[0]
    for pin, ok in ((right, True), ("0" * 64, False)):
        endpoint = DatastoreEndpoint(s.host, s.port, s.cookie, s.ssl_context, pin)
        src = DatastoreDiskSource(endpoint, "DC0", disk.datastore, disk.flat_path,
                                  disk.capacity_bytes, "disk0", [])
        try:
            if ok:
                assert src.read(0, 4096) == e.content(0)[:4096]
            else:
                with pytest.raises(TransportError, match="expected 0000"):
                    src.read(0, 4096)
                with pytest.raises(TransportError, match="expected 0000"):
                    upload_file(endpoint, "DC0", disk.datastore, disk.flat_path, 1, [b"x"])
        finally:
            src.close()
    assert e.content(0) == before  # the refused upload wrote nothing


def _counters(e: Env) -> dict[str, Any]:
    import json
    import ssl
    import urllib.request
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    url = f"https://{e.session.host}:{e.session.port}/vmkeep/counters"
    with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:
        return dict(json.load(resp))


@pytest.mark.parametrize("vcsim", [{"VCSIM_VC_FOLDER_REFUSE": "1"}], indirect=True)
def test_restores_into_existing_vms_write_to_the_host(env: Env) -> None:
    """Over the original VM and one disk into an existing VM: the disks are written on the
    host that runs the VM (its /folder, PUT tickets, pinned certificate), not relayed by a
    vCenter; here the vCenter's /folder refuses every request."""
    e = env
    point, want = backed_up(e)
    write(e.live(1), 3 * BS, b"ransomware" * 1000)
    plan = in_ws(e.repo, e.cat, session_first(plan_restore_original, e.session), point)
    in_ws(e.repo, e.cat, session_first(restore_original_vm, e.session), plan, confirm=True,
          log=e.log)
    assert [e.content(0), e.content(1)] == want
    other = "DC0_H0_VM1"
    result = in_ws(e.repo, e.cat, session_first(restore_disk_into_vm, e.session),
                   point, 1, other, log=e.log)
    assert flat_bytes(e, result.target_disk) == want[1]
    counts = _counters(e)
    assert counts["vcenter"]["served"] == 0
    assert sum(h["served"] for h in counts["hosts"].values()) >= 3  # two disks, one disk
    assert any("written on host DC0_H0" in m for lvl, m in e.logs if lvl == "info"), e.logs


def _non_default(e: Env) -> dict[str, str]:
    """Reconfigure the VM away from vcsim's defaults: vmx-19, EFI with secure boot,
    extraConfig keys, hot add, its NIC replaced by an E1000e with a fixed MAC, and a third,
    thick eager-zeroed disk. Returns the extraConfig keys set."""
    extra = {"disk.EnableUUID": "TRUE", "vmkeep.custom": "kept"}
    old_nic = next(d for d in e.vm.config.hardware.device if hasattr(d, "macAddress"))
    nic = vim.vm.device.VirtualE1000e(  # type: ignore[no-untyped-call]
        key=-5, addressType="manual", macAddress="00:50:56:3f:01:02",
        backing=vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(  # type: ignore[no-untyped-call]
            deviceName="VM Network"))
    eager = vim.vm.device.VirtualDisk(  # type: ignore[no-untyped-call]
        key=-6, controllerKey=202, unitNumber=2, capacityInKB=1024,
        backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(  # type: ignore[no-untyped-call]
            diskMode="persistent", thinProvisioned=False, eagerlyScrub=True, fileName=""))
    spec = vim.vm.ConfigSpec(  # type: ignore[no-untyped-call]
        version="vmx-19", firmware="efi", cpuHotAddEnabled=True, memoryHotAddEnabled=True,
        bootOptions=vim.vm.BootOptions(efiSecureBootEnabled=True),  # type: ignore[no-untyped-call]
        extraConfig=[vim.option.OptionValue(key=k, value=v)  # type: ignore[no-untyped-call]
                     for k, v in extra.items()],
        deviceChange=[
            vim.vm.device.VirtualDeviceSpec(  # type: ignore[no-untyped-call]
                operation="remove", device=old_nic),
            vim.vm.device.VirtualDeviceSpec(  # type: ignore[no-untyped-call]
                operation="add", device=nic),
            vim.vm.device.VirtualDeviceSpec(  # type: ignore[no-untyped-call]
                operation="add", fileOperation="create", device=eager)])
    WaitForTask(e.vm.ReconfigVM_Task(spec))  # type: ignore[no-untyped-call]
    return extra


def _hardware(vm: Any) -> dict[str, Any]:
    """What the acceptance compares, read through the API."""
    c = vm.config
    devices: list[Any] = list(c.hardware.device)
    buses = {d.key: d.busNumber for d in devices
             if isinstance(d, vim.vm.device.VirtualController)}
    disks: list[Any] = sorted((d for d in devices if isinstance(d, vim.vm.device.VirtualDisk)),
                              key=lambda d: (buses[d.controllerKey], d.unitNumber))
    return {
        "version": c.version, "firmware": c.firmware,
        "secure_boot": c.bootOptions.efiSecureBootEnabled if c.bootOptions else None,
        "hot_add": (c.cpuHotAddEnabled, c.memoryHotAddEnabled),
        "extra": {o.key: o.value for o in c.extraConfig or []},
        "nics": [(type(d).__name__, d.macAddress) for d in devices
                 if isinstance(d, vim.vm.device.VirtualEthernetCard)],
        "disks": [(bool(d.backing.thinProvisioned), bool(d.backing.eagerlyScrub))
                  for d in disks]}


def test_a_new_vm_has_the_recorded_vm_configuration(env: Env) -> None:
    """Issue 14's acceptance: the same hardware version, firmware, secure boot, extraConfig
    keys, NIC types (and MACs with keep_macs) and disk provisioning, through the API."""
    e = env
    extra = _non_default(e)
    original = _hardware(e.vm)
    assert original["version"] == "vmx-19" and original["disks"][2] == (False, True)
    assert original["nics"] == [("vim.vm.device.VirtualE1000e", "00:50:56:3f:01:02")]
    r = e.backup()
    assert r.point_id and r.status == "success", e.logs
    plan = plan_new_vm(e.repo.read_manifest(r.point_id), NEW, keep_macs=True)
    lines = plan.describe()
    for want in ("  set hardware version: vmx-19", "  set firmware: efi",
                 "  set EFI secure boot: on", "  set disk 2 provisioning: thick eager-zeroed",
                 "  set NIC 0: VirtualE1000e on 'VM Network', MAC 00:50:56:3f:01:02 kept"):
        assert want in lines, lines
    assert any(line.startswith("  cannot apply the VM's storage policy: ") for line in lines)
    e.logs.clear()
    result = in_ws(e.repo, e.cat, session_first(restore_new_vm, e.session), r.point_id, NEW,
                   keep_macs=True, log=e.log)
    new = _hardware(vm_object(e.session, NEW))
    for key in ("version", "firmware", "secure_boot", "hot_add", "nics", "disks"):
        assert new[key] == original[key], key
    assert {k: new["extra"].get(k) for k in extra} == extra
    assert "nvram" not in new["extra"]
    assert any("cannot apply the VM's storage policy" in m for m in warnings_of(e))
    assert result.disks == (0, 1, 2)
    nets = rt.placement_networks(e.session, rt.resolve_placement(e.session))
    assert "VM Network" in nets.names and "DC0_DVPG0" not in nets.names
    assert any(k.startswith("dvportgroup-") for k in nets.portgroup_keys)


def test_a_nic_whose_network_is_missing_at_the_placement(env: Env) -> None:
    """The point's NIC is on a port group of its own host only; restored onto another host,
    the plan says it cannot connect it there, and the new VM's NIC is put on a network the
    host has, not connected at power-on."""
    e = env
    host = e.vm.runtime.host
    host.configManager.networkSystem.AddPortGroup(vim.host.PortGroup.Specification(  # type: ignore[no-untyped-call]
        name="Only Here", vlanId=0, vswitchName="vSwitch0",
        policy=vim.host.NetworkPolicy()))  # type: ignore[no-untyped-call]
    nic = next(d for d in e.vm.config.hardware.device if hasattr(d, "macAddress"))
    nic.backing = vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(  # type: ignore[no-untyped-call]
        deviceName="Only Here")
    WaitForTask(e.vm.ReconfigVM_Task(vim.vm.ConfigSpec(  # type: ignore[no-untyped-call]
        deviceChange=[vim.vm.device.VirtualDeviceSpec(  # type: ignore[no-untyped-call]
            operation="edit", device=nic)])))
    r = e.backup()
    assert r.point_id and r.status == "success", e.logs
    other = next(h for h in e.session.content.viewManager.CreateContainerView(
        e.session.content.rootFolder, [vim.HostSystem], True).view
        if h.name != host.name and "Only Here" not in [n.name for n in h.network])
    placement = rt.resolve_placement(e.session, host=other.name)
    networks = rt.placement_networks(e.session, placement)
    plan = plan_new_vm(e.repo.read_manifest(r.point_id), NEW, networks=networks)
    assert any(line.startswith("  cannot connect NIC 0 to network 'Only Here': the placement "
                               "has no such network") for line in plan.describe())
    e.logs.clear()
    in_ws(e.repo, e.cat, session_first(restore_new_vm, e.session), r.point_id, NEW,
          host=other.name, log=e.log)
    assert any("cannot connect NIC 0 to network 'Only Here'" in m for m in warnings_of(e))
    nics: list[Any] = [d for d in vm_object(e.session, NEW).config.hardware.device
                       if isinstance(d, vim.vm.device.VirtualEthernetCard)]
    assert [(n.backing.deviceName, n.connectable.startConnected) for n in nics] == \
        [("VM Network", False)]


def _where(vm: Any) -> tuple[str, str, str, str, list[str]]:
    return (vm.runtime.host.name, vm.resourcePool.name, vm.parent.name,
            vm.config.files.vmPathName.split("]")[0].lstrip("["),
            sorted(n.name for n in vm.network))


def test_a_new_vm_goes_where_the_original_was_unless_told_otherwise(env: Env) -> None:
    """With no placement named, the new VM lands on the original VM's host, resource pool,
    folder, datastore and networks (recorded with the point), not on the first host of the
    datacenter; the dry run says where. A recorded name that no longer exists falls back to
    the default, and a note says so."""
    e = env
    point, _ = backed_up(e)
    original = _where(e.vm)
    first_host = sorted(h.name for h in inventory_hosts(e))[0]
    assert first_host != original[0]  # the old default would have placed it elsewhere
    placement = in_ws(e.repo, e.cat, session_first(vm_restore.new_vm_placement, e.session),
                      point)
    plan = in_ws(e.repo, e.cat, vm_restore.plan_restore_new, point, NEW, placement=placement)
    assert any(f"host {original[0]!r}" in line and "as the original VM" in line
               for line in plan.describe()), plan.describe()
    result = in_ws(e.repo, e.cat, session_first(restore_new_vm, e.session), point, NEW,
                   log=e.log)
    new = e.session.content.searchIndex.FindByUuid(
        None, inventory.find_vm(e.session, NEW).instance_uuid, True, True)
    assert _where(new) == original
    assert result.vm_name == NEW
    in_ws(e.repo, e.cat, session_first(restore_new_vm, e.session), point, "elsewhere",
          host=first_host, log=e.log)
    moved = e.session.content.searchIndex.FindByUuid(
        None, inventory.find_vm(e.session, "elsewhere").instance_uuid, True, True)
    assert moved.runtime.host.name == first_host
    # the original host gone (a point recorded elsewhere): the default, and a note says so
    gone = PlacementRecord(original_dc(e), "gone-host", "Resources", "vm", original[3])
    placed = rt.resolve_placement(e.session, original=gone)
    assert placed.host == first_host and "datastore" in placed.as_original
    assert any("host 'gone-host' no longer exists" in n for n in placed.notes), placed.notes


def original_dc(e: Env) -> str:
    node = e.vm.parent
    while not isinstance(node, vim.Datacenter):
        node = node.parent
    return str(node.name)


def inventory_hosts(e: Env) -> list[Any]:
    view = e.session.content.viewManager.CreateContainerView(
        e.session.content.rootFolder, [vim.HostSystem], True)
    try:
        return list(view.view)
    finally:
        view.Destroy()
