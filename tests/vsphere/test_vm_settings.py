"""What a new VM gets from a point's recorded VirtualMachineConfigInfo (vm_settings, pure), and
the ConfigSpec built from it, on a JSON fixture: the ConfigInfo of vcsim's DC0_H0_VM0 after a
reconfigure to vmx-19, EFI with secure boot, extraConfig keys, hot-add and an E1000e NIC,
encoded with pyVmomi's VmomiJSONEncoder; then edited by hand: a vTPM (vcsim does not know the
type), a thick eager-zeroed second disk, notes and the extraConfig keys a real vSphere writes
itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pyVmomi import vim

from appliance.errors import UsageError
from appliance.vsphere import restore_target as rt
from appliance.vsphere import vm_settings
from appliance.vsphere.vm_config import (
    ControllerConfig,
    DiskConfig,
    JsonObject,
    NicConfig,
    VmConfig,
)
from appliance.vsphere.vm_settings import PlacementNetworks, PortGroup, new_vm_settings

FIXTURE = Path(__file__).with_name("vm_config_info.json")
COPIED = ["govcsim", "disk.EnableUUID", "vmkeep.test", "guestinfo.userdata",
          "isolation.tools.copy.disable"]
SKIPPED = ["nvram", "pciBridge0.present", "svga.present", "vmware.tools.internalversion",
           "sched.swap.derivedName", "migrate.hostLog", "monitor.phys_bits_used",
           "guestinfo.vmtools.versionString", "ethernet0.pciSlotNumber", "vm.genid",
           "numa.autosize.cookie", "scsi0:0.ctkEnabled", "ctkEnabled", "softPowerOff",
           "toolsInstallManager.updateCounter", "checkpoint.vmState",
           "vmotion.checkpointFBSize"]


def info() -> JsonObject:
    doc = json.loads(FIXTURE.read_text())
    assert isinstance(doc, dict)
    return doc


def _devices(doc: JsonObject) -> list[dict[str, Any]]:
    hardware = doc["hardware"]
    assert isinstance(hardware, dict) and isinstance(hardware["device"], list)
    return [d for d in hardware["device"] if isinstance(d, dict)]


def config_of(doc: JsonObject | None, *, vim_config: bool = True) -> VmConfig:
    """vmkeep's own fields as read_vm_config records them for the fixture's VM."""
    devices = _devices(doc or info())
    disks = tuple(DiskConfig(d["key"], 202, "ParaVirtualSCSIController", 0, d["unitNumber"],
                             d["capacityInKB"] * 1024, "persistent",
                             d["backing"]["thinProvisioned"], d["backing"]["fileName"], i)
                  for i, d in enumerate(x for x in devices
                                        if x["_vimtype"] == "vim.vm.device.VirtualDisk"))
    nic = next(d for d in devices if "macAddress" in d)
    return VmConfig("DC0_H0_VM0", "otherGuest", 1, 1, 32, "efi", "vmx-19",
                    (ControllerConfig(200, "VirtualIDEController", 0),
                     ControllerConfig(202, "ParaVirtualSCSIController", 0)),
                    disks, (NicConfig(nic["key"], "VirtualE1000e", nic["macAddress"], "manual",
                                      "VM Network", "", ""),),
                    "b4689bed", "265104de", vim_config=(doc or info()) if vim_config else None)


def test_the_new_vm_gets_the_recorded_hardware_settings() -> None:
    s = new_vm_settings(config_of(info()))
    assert (s.version, s.firmware, s.secure_boot) == ("vmx-19", "efi", True)
    assert (s.cpu_hot_add, s.memory_hot_add, s.cpu_hot_remove) == (True, True, None)
    assert s.annotation == "db01: restored from vmkeep tests"
    assert [k for k, _ in s.extra_config] == COPIED
    assert dict(s.extra_config)["disk.EnableUUID"] == "TRUE"
    assert list(s.skipped_extra_config) == SKIPPED
    assert [(d.key, d.name) for d in s.disks] == [(2000, "thin"),
                                                  (2001, "thick eager-zeroed")]
    assert [(n.type, n.mac, n.connect) for n in s.nics] == [("VirtualE1000e", "", True)]
    lines = s.describe()
    for want in ("set hardware version: vmx-19", "set firmware: efi",
                 "set EFI secure boot: on", "set CPU hot add: on", "set memory hot add: on",
                 "set disk 1 provisioning: thick eager-zeroed",
                 "set NIC 0: VirtualE1000e on 'VM Network', a new MAC address"):
        assert want in lines, lines
    assert any(line.startswith("set extraConfig (5 keys): govcsim, disk.EnableUUID")
               for line in lines)


def test_every_skipped_extra_config_key_has_its_reason() -> None:
    for key in SKIPPED:
        assert vm_settings.skip_reason(key), key
    for key in [*COPIED, "numa.vcpu.preferHT", "tools.guest.desktop.autolock",
                "sched.cpu.latencySensitivity", "guestinfo.metadata"]:
        assert vm_settings.skip_reason(key) is None, key


def test_what_the_new_vm_cannot_get_says_why() -> None:
    s = new_vm_settings(config_of(info()))
    cannot = {u.what: u.reason for u in s.cannot}
    assert "key provider" in cannot["add the virtual TPM"]
    assert "SPBM" in cannot["apply the VM's storage policy"]
    assert "disks, their controllers and NICs only" in cannot["recreate VirtualCdrom"]
    assert not any(w.startswith("connect NIC") for w in cannot)  # networks not known
    assert "cannot add the virtual TPM: a virtual TPM needs a key provider" in \
        "\n".join(s.describe())
    doc = info()
    doc["keyId"] = {"keyId": "k1", "providerId": {"id": "kms1"}}
    _devices(doc)[12]["backing"]["keyId"] = {"keyId": "k2", "providerId": {"id": "kms1"}}
    cannot = {u.what: u.reason for u in new_vm_settings(config_of(doc)).cannot}
    assert "created unencrypted" in cannot["encrypt the VM"]
    assert "created unencrypted" in cannot["encrypt disk 1"]


def test_a_network_missing_at_the_placement_is_a_cannot() -> None:
    cfg = config_of(info())
    there = new_vm_settings(cfg, networks=PlacementNetworks(frozenset({"VM Network"})))
    assert [n.connect for n in there.nics] == [True]
    missing = new_vm_settings(cfg, networks=PlacementNetworks(frozenset({"Z", "Other"})))
    assert [(n.connect, n.stand_in) for n in missing.nics] == [(False, "Other")]
    cannot = {u.what: u.reason for u in missing.cannot}
    assert cannot["connect NIC 0 to network 'VM Network'"].startswith(
        "the placement has no such network: the NIC is created on 'Other', not connected")
    assert "set NIC 0: VirtualE1000e on 'Other', not connected, a new MAC address" in \
        missing.describe()
    dvs = NicConfig(9, "VirtualVmxnet3", "", "generated", "DC0_DVPG0", "dvportgroup-11", "u-1")
    assert PlacementNetworks(frozenset({"DC0_DVPG0"}), frozenset({"dvportgroup-11"})).has(dvs)
    assert not PlacementNetworks(frozenset({"DC0_DVPG0"})).has(dvs)


def test_the_network_map_puts_nics_on_the_chosen_network_and_refuses_unknown_ones() -> None:
    """``--network FROM=TO`` (issue 15: the restore dialog lets the network be changed): the
    NICs of FROM go on TO, a standard network or a distributed port group at the placement;
    a TO not there, or a FROM the VM had no NIC on, is refused naming what there is."""
    cfg = config_of(info())
    here = PlacementNetworks(frozenset({"VM Network", "isolated"}), frozenset({"dvportgroup-11"}),
                             (PortGroup("DC0_DVPG0", "dvportgroup-11", "u-1"),))
    plain = new_vm_settings(cfg, networks=here)
    assert plain.networks() == {"VM Network": "VM Network"}
    moved = new_vm_settings(cfg, networks=here.mapped({"VM Network": "isolated"}))
    assert moved.networks() == {"VM Network": "isolated"}
    assert [(n.connect, n.mapped_to) for n in moved.nics] == [(True, "isolated")]
    assert "set NIC 0: VirtualE1000e on 'isolated' (mapped from 'VM Network'), a new MAC " \
        "address" in moved.describe()
    spec: Any = rt._new_vm_spec(cfg, cfg.disks, "copy", "LocalDS_0", keep_macs=False,
                                networks=here.mapped({"VM Network": "DC0_DVPG0"}))
    nic: Any = next(c.device for c in spec.deviceChange
                    if isinstance(c.device, vim.vm.device.VirtualEthernetCard))
    assert (nic.backing.port.portgroupKey, nic.backing.port.switchUuid) == \
        ("dvportgroup-11", "u-1")
    assert nic.connectable.startConnected
    with pytest.raises(UsageError, match=r"network 'lab' \(for the NICs on 'VM Network'\) "
                       r"is not at the new VM's placement; the networks there: DC0_DVPG0, "
                       r"VM Network, isolated"):
        here.mapped({"VM Network": "lab"})
    with pytest.raises(UsageError, match=r"no NIC on network 'prod': its networks were "
                       r"VM Network"):
        new_vm_settings(cfg, networks=here.mapped({"prod": "isolated"}))


def test_macs_are_kept_only_when_asked() -> None:
    s = new_vm_settings(config_of(info()), keep_macs=True)
    assert [n.mac for n in s.nics] == ["00:50:56:aa:bb:cc"]
    assert "set NIC 0: VirtualE1000e on 'VM Network', MAC 00:50:56:aa:bb:cc kept" in \
        s.describe()


def test_thick_lazy_zeroed_and_restricted_disks() -> None:
    doc = info()
    _devices(doc)[12]["backing"]["eagerlyScrub"] = False
    s = new_vm_settings(config_of(doc), disks=[2001])
    assert [(d.key, d.name) for d in s.disks] == [(2001, "thick lazy-zeroed")]
    assert s.disk(2000) is None


def test_a_point_without_the_config_info_restores_as_before() -> None:
    s = new_vm_settings(config_of(info(), vim_config=False))
    assert (s.version, s.firmware, s.secure_boot, s.extra_config) == (None, "efi", None, ())
    assert [(d.key, d.name) for d in s.disks] == [(2000, "thin"), (2001, "thick lazy-zeroed")]
    assert "before vmkeep recorded the whole VM configuration" in "\n".join(s.describe())


def test_a_config_info_the_encoder_cannot_encode_is_left_out() -> None:
    from appliance.vsphere.vm_config import _encode_config_info

    assert _encode_config_info(None) is None
    assert _encode_config_info(object()) is None  # not a vSphere data object
    spec = vim.vm.ConfigInfo(version="vmx-19")  # type: ignore[no-untyped-call]
    doc = _encode_config_info(spec)
    assert doc is not None and doc["_vimtype"] == "vim.vm.ConfigInfo"
    assert doc["version"] == "vmx-19"


def test_the_record_carries_the_config_info_and_old_records_still_read() -> None:
    cfg = config_of(info())
    record = json.loads(json.dumps(cfg.to_record()))
    assert list(record)[-1] == "vim_config"
    assert VmConfig.from_record(record) == cfg
    del record["vim_config"]
    old = VmConfig.from_record(record)
    assert old.vim_config is None and old.to_record() == record


def test_the_config_spec_sets_what_the_settings_say() -> None:
    cfg = config_of(info())
    spec: Any = rt._new_vm_spec(cfg, cfg.disks, "copy", "LocalDS_0", keep_macs=True,
                                networks=PlacementNetworks(frozenset({"Other"})))
    assert (spec.version, spec.firmware, spec.bootOptions.efiSecureBootEnabled) == \
        ("vmx-19", "efi", True)
    assert (spec.cpuHotAddEnabled, spec.memoryHotAddEnabled) == (True, True)
    assert [o.key for o in spec.extraConfig] == COPIED
    assert spec.annotation == "db01: restored from vmkeep tests"
    devices: list[Any] = [c.device for c in spec.deviceChange]
    disks: list[Any] = [d for d in devices if isinstance(d, vim.vm.device.VirtualDisk)]
    assert [(d.backing.thinProvisioned, bool(d.backing.eagerlyScrub)) for d in disks] == \
        [(True, False), (False, True)]
    nics: list[Any] = [d for d in devices
                       if isinstance(d, vim.vm.device.VirtualEthernetCard)]
    assert [(type(n).__name__, n.macAddress, n.addressType, n.connectable.startConnected,
             n.backing.deviceName) for n in nics] == \
        [("vim.vm.device.VirtualE1000e", "00:50:56:aa:bb:cc", "manual", False, "Other")]
    old = rt._new_vm_spec(config_of(info(), vim_config=False), cfg.disks, "copy",
                          "LocalDS_0", keep_macs=False)
    assert (old.version, old.firmware, old.extraConfig, old.bootOptions) == \
        (None, "efi", [], None)


@pytest.mark.parametrize("key", ["uuid.bios", "vc.uuid", "vm.genidX", "viv.moid",
                                 "hpet0.present", "scsi0.sasWWID", "sata0.pciSlotNumber"])
def test_vsphere_owned_identity_and_device_keys_are_not_copied(key: str) -> None:
    assert vm_settings.skip_reason(key)

