"""What a VM restored to a new VM gets from the recorded configuration, and what it cannot get
(with the reason). Pure: it reads the point's recorded configuration (``VmConfig``, whose
``vim_config`` is the snapshot's ``VirtualMachineConfigInfo`` as JSON) and, when known, the
networks at the placement; vSphere is not asked.

The same ``NewVmSettings`` is shown by the restore's plan (``--dry-run``) and applied by the
ConfigSpec builder (``restore_target._new_vm_spec``), so what the plan lists is what is set.

A point recorded before vmkeep stored ``vim_config`` restores as it always did: firmware, NIC
types and thin/thick from vmkeep's own fields, nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from appliance.errors import UsageError
from appliance.vsphere.vm_config import Json, JsonObject, NicConfig, VmConfig

#: extraConfig keys a new VM does not get from the recorded VM: (pattern, why). Everything
#: else is copied (disk.EnableUUID, isolation.*, user-set guestinfo.*, numa.vcpu.*, …).
SKIPPED_EXTRA_CONFIG: tuple[tuple[str, str], ...] = (
    (r"nvram", "the NVRAM file's name: vSphere creates the new VM's own"),
    (r"(uuid|vc\.uuid|vm\.genid|vm\.genidX)(\..*)?",
     "identity of the original VM: the new VM gets its own (a copied generation id would "
     "make a domain controller believe it was not cloned)"),
    (r"viv\.moid", "vCenter's inventory id of the original VM"),
    (r"(pciBridge\d+|svga|hpet\d+|vmci\d+)\..*",
     "virtual hardware vSphere sets up itself for the new VM's hardware version and guest OS"),
    (r"(ethernet|scsi|sata|nvme|ide|sound|usb|usb_xhci|serial|parallel|floppy)\d*[.:].*",
     "device settings (PCI slots, WWIDs, …): the new VM's devices are created by the "
     "restore and get their own"),
    (r"(.*\.)?ctkEnabled", "Changed Block Tracking: a backup turns it on when it needs it"),
    (r"cpuid\.coresPerSocket", "set through the cores-per-socket setting instead"),
    (r"sched\.swap\.derivedName", "the original VM's swap file"),
    (r"(migrate|vmotion|checkpoint|monitor|vmxstats|numa\.autosize)\..*",
     "runtime state vSphere writes while the VM runs or moves"),
    (r"softPowerOff|consolidateDeleteNFCSnapshot",
     "runtime state vSphere writes while the VM runs"),
    (r"(vmware\.tools|toolsInstallManager)\..*",
     "VMware Tools state, reported again by the guest's Tools"),
    (r"(guestinfo\.(vmtools|vmware|driver|gc)\..*|guestinfo\.appInfo|guestInfo\.detailed\.data"
     r"|guestOS\.detailed\.data)",
     "reported by the guest (VMware Tools), not set by a person"),
)
_SKIPPED = tuple((re.compile(p, re.IGNORECASE), why) for p, why in SKIPPED_EXTRA_CONFIG)

#: Devices vSphere gives every new VM itself; the others the restore does not create are
#: listed as "cannot".
_OWN_DEVICES = frozenset({
    "VirtualIDEController", "VirtualPCIController", "VirtualPS2Controller",
    "VirtualSIOController", "VirtualKeyboard", "VirtualPointingDevice", "VirtualVideoCard",
    "VirtualMachineVideoCard", "VirtualVMCIDevice", "VirtualDevice"})

STORAGE_POLICY_REASON = ("the VM configuration does not carry its SPBM storage policy and "
                         "vmkeep does not talk to SPBM: the new VM gets the datastore's "
                         "default policy; assign the policy in vSphere afterwards")
VTPM_REASON = ("a virtual TPM needs a key provider configured in vCenter and its secrets are "
               "not in the backup: the new VM has none; add one in vSphere (a guest that "
               "sealed keys in it, e.g. BitLocker, asks for its recovery key)")
ENCRYPTION_REASON = ("vmkeep does not talk to the key provider: the new VM is created "
                     "unencrypted; encrypt it in vSphere with an encryption storage policy")


@dataclass(frozen=True, slots=True)
class PortGroup:
    """A distributed port group at the placement."""

    name: str
    key: str
    switch_uuid: str


@dataclass(frozen=True, slots=True)
class PlacementNetworks:
    """The networks a new VM's NICs can be connected to where it is placed: standard
    networks by name, distributed port groups by key (and, with their switch, by name), and
    the administrator's network map: for an original network's name, the name of the network
    at the placement its NICs go on instead (``--network FROM=TO``)."""

    names: frozenset[str]
    portgroup_keys: frozenset[str] = frozenset()
    portgroups: tuple[PortGroup, ...] = ()
    mapping: tuple[tuple[str, str], ...] = ()

    def has(self, nic: NicConfig) -> bool:
        if nic.portgroup_key and nic.switch_uuid:
            return nic.portgroup_key in self.portgroup_keys
        return (nic.network or "VM Network") in self.names

    def stand_in(self) -> str:
        """A standard network to put a NIC on whose own is missing ("" when none)."""
        if "VM Network" in self.names:
            return "VM Network"
        return min(self.names, default="")

    def all_names(self) -> list[str]:
        return sorted(self.names | {p.name for p in self.portgroups})

    def mapped(self, mapping: Mapping[str, str]) -> PlacementNetworks:
        """These networks with ``mapping`` (original network -> network here); a network
        that is not here is refused, naming those that are."""
        for source, target in mapping.items():
            if target not in self.names and not any(p.name == target for p in self.portgroups):
                raise UsageError(
                    f"network {target!r} (for the NICs on {source!r}) is not at the new VM's "
                    f"placement; the networks there: {', '.join(self.all_names()) or 'none'}")
        return replace(self, mapping=tuple(sorted(mapping.items())))

    def target(self, source: str) -> str | PortGroup | None:
        """Where the map puts the NICs of network ``source`` (None: not mapped)."""
        name = dict(self.mapping).get(source)
        if name is None:
            return None
        if name in self.names:
            return name
        return next(p for p in self.portgroups if p.name == name)


@dataclass(frozen=True, slots=True)
class Setting:
    """One thing the restore sets on the new VM, for people: ``what`` = ``value``."""

    what: str
    value: str

    def describe(self) -> str:
        return f"{self.what}: {self.value}"


@dataclass(frozen=True, slots=True)
class Unsupported:
    """One thing of the recorded VM the new VM does not get, and why."""

    what: str
    reason: str

    def describe(self) -> str:
        return f"{self.what}: {self.reason}"


@dataclass(frozen=True, slots=True)
class NicSetting:
    key: int  # the recorded device key
    type: str  # pyVmomi device class name
    mac: str  # "" = a generated address
    connect: bool  # False: its network is missing at the placement
    stand_in: str = ""  # its network is missing: the standard network it is put on instead
    mapped_to: str | PortGroup | None = None  # the network map's choice (``--network``)
    network: str = ""  # the original network's name ("VM Network" when it had none)

    @property
    def on(self) -> str:
        """The name of the network the NIC is created on."""
        chosen = self.mapped_to
        if chosen is not None:
            return chosen if isinstance(chosen, str) else chosen.name
        return self.stand_in or self.network


@dataclass(frozen=True, slots=True)
class DiskProvisioning:
    key: int  # the recorded device key
    thin: bool
    eager_zero: bool

    @property
    def name(self) -> str:
        if self.thin:
            return "thin"
        return "thick eager-zeroed" if self.eager_zero else "thick lazy-zeroed"


@dataclass(frozen=True, slots=True)
class NewVmSettings:
    """What the ConfigSpec of the new VM sets beyond vmkeep's own fields (None: not set,
    vSphere's default), and the human lists of it."""

    version: str | None
    firmware: str | None
    secure_boot: bool | None
    extra_config: tuple[tuple[str, str], ...]
    cpu_hot_add: bool | None
    cpu_hot_remove: bool | None
    memory_hot_add: bool | None
    annotation: str | None
    nics: tuple[NicSetting, ...]
    disks: tuple[DiskProvisioning, ...]
    will_set: tuple[Setting, ...]
    cannot: tuple[Unsupported, ...]
    skipped_extra_config: tuple[str, ...] = ()  # keys not copied (vSphere's own)

    def disk(self, key: int) -> DiskProvisioning | None:
        return next((d for d in self.disks if d.key == key), None)

    def nic(self, key: int) -> NicSetting | None:
        return next((n for n in self.nics if n.key == key), None)

    def networks(self) -> dict[str, str]:
        """Each original network -> the network its NICs are created on."""
        return {n.network: n.on for n in self.nics}

    def describe(self) -> list[str]:
        """Plan lines: "set …" and "cannot …" (with the reason)."""
        return ([f"set {s.describe()}" for s in self.will_set]
                + [f"cannot {u.describe()}" for u in self.cannot])


def skip_reason(key: str) -> str | None:
    """Why extraConfig ``key`` is not copied to a new VM (None: it is copied)."""
    for pattern, why in _SKIPPED:
        if pattern.fullmatch(key):
            return why
    return None


def _at(doc: Json, *path: str) -> Json:
    for name in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(name)
    return doc


def _list(value: Json) -> list[JsonObject]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _kind(device: JsonObject) -> str:
    return str(device.get("_vimtype") or "").rsplit(".", 1)[-1]


def _key(device: JsonObject) -> int:
    key = device.get("key")
    return key if isinstance(key, int) and not isinstance(key, bool) else 0


def _bool(value: Json) -> bool | None:
    return value if isinstance(value, bool) else None


def _text(value: Json) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def _nic_settings(config: VmConfig, keep_macs: bool, networks: PlacementNetworks | None
                  ) -> tuple[list[NicSetting], list[Setting], list[Unsupported]]:
    nics: list[NicSetting] = []
    will: list[Setting] = []
    cannot: list[Unsupported] = []
    if networks is not None and networks.mapping:
        own = {nic.network or nic.portgroup_key or "VM Network" for nic in config.nics}
        unknown = [s for s, _t in networks.mapping if s not in own]
        if unknown:
            raise UsageError(f"the VM had no NIC on network {unknown[0]!r}: its networks were "
                             f"{', '.join(sorted(own)) or 'none (it has no NIC)'}")
    for i, nic in enumerate(config.nics):
        mac = nic.mac if keep_macs and nic.mac else ""
        where = nic.network or nic.portgroup_key or "VM Network"
        chosen = networks.target(where) if networks is not None else None
        connect = networks is None or chosen is not None or networks.has(nic)
        stand_in = "" if networks is None or connect else networks.stand_in()
        setting = NicSetting(nic.key, nic.type, mac, connect, stand_in, chosen, where)
        nics.append(setting)
        will.append(Setting(f"NIC {i}", f"{nic.type} on {setting.on!r}"
                            + (f" (mapped from {where!r})" if chosen is not None else "")
                            + ", " + ("not connected, " if not connect else "")
                            + (f"MAC {mac} kept" if mac else "a new MAC address")))
        if not connect:
            cannot.append(Unsupported(
                f"connect NIC {i} to network {where!r}",
                "the placement has no such network: the NIC is created on "
                f"{stand_in!r}, not connected at power-on; connect it to a network in "
                "vSphere, or map it to one that is there (--network)"))
    return nics, will, cannot


def _disks(config: VmConfig, devices: Sequence[JsonObject], disks: Sequence[int] | None
           ) -> tuple[list[DiskProvisioning], list[Setting], list[Unsupported]]:
    by_key = {_key(d): d for d in devices}
    out: list[DiskProvisioning] = []
    will: list[Setting] = []
    cannot: list[Unsupported] = []
    for d in config.disks:
        if disks is not None and d.key not in disks:
            continue
        backing = _at(by_key.get(d.key), "backing")
        thin = _bool(_at(backing, "thinProvisioned"))
        prov = DiskProvisioning(d.key, d.thin if thin is None else thin,
                                bool(_at(backing, "eagerlyScrub")))
        out.append(prov)
        will.append(Setting(f"disk {d.index} provisioning", prov.name))
        if _at(backing, "keyId") is not None:
            cannot.append(Unsupported(f"encrypt disk {d.index}", ENCRYPTION_REASON))
    return out, will, cannot


def _extra_config(doc: JsonObject) -> tuple[list[tuple[str, str]], list[str]]:
    copied: list[tuple[str, str]] = []
    skipped: list[str] = []
    for option in _list(doc.get("extraConfig")):
        key = _text(option.get("key"))
        if not key:
            continue
        if skip_reason(key) is None:
            copied.append((key, _text(option.get("value"))))
        else:
            skipped.append(key)
    return copied, skipped


def _other_devices(config: VmConfig, devices: Sequence[JsonObject]) -> list[Unsupported]:
    """Devices the restore does not recreate (but vTPMs, listed on their own)."""
    made = {c.key for c in config.controllers} | {d.key for d in config.disks} \
        | {n.key for n in config.nics}
    names = sorted({_kind(d) for d in devices
                    if _kind(d) not in _OWN_DEVICES and _kind(d) != "VirtualTPM"
                    and not _kind(d).endswith("Controller")
                    and _key(d) not in made})
    if not names:
        return []
    return [Unsupported(f"recreate {', '.join(names)}",
                        "a restore creates disks, their controllers and NICs only (an ISO, a "
                        "host device or a passthrough device may not exist at the "
                        "placement); add them in vSphere")]


def _as_before(config: VmConfig, nics: list[NicSetting], nic_will: list[Setting],
               nic_cannot: list[Unsupported], disks: Sequence[int] | None) -> NewVmSettings:
    """An older point (no ``vim_config``): what vmkeep always set."""
    made = [d for d in config.disks if disks is None or d.key in disks]
    provisioning = [DiskProvisioning(d.key, d.thin, False) for d in made]
    will = [Setting("firmware", config.firmware)] if config.firmware else []
    will += nic_will
    will += [Setting(f"disk {d.index} provisioning", p.name)
             for d, p in zip(made, provisioning, strict=True)]
    rest = Unsupported("recreate the rest of the VM's configuration",
                       "this point has no recorded VM configuration (it was made before vmkeep "
                       "recorded the whole VM configuration): hardware version, extraConfig, "
                       "secure boot and hot-add are vSphere's defaults")
    return NewVmSettings(None, config.firmware or None, None, (), None, None, None, None,
                         tuple(nics), tuple(provisioning), tuple(will),
                         (*nic_cannot, rest))


def new_vm_settings(config: VmConfig, *, keep_macs: bool = False,
                    networks: PlacementNetworks | None = None,
                    disks: Sequence[int] | None = None) -> NewVmSettings:
    """What a new VM made from ``config`` gets and cannot get. ``networks``: those at the
    placement (None: not known, not checked); ``disks``: the recorded disk keys created
    (None: all)."""
    nics, nic_will, nic_cannot = _nic_settings(config, keep_macs, networks)
    doc = config.vim_config
    if doc is None:
        return _as_before(config, nics, nic_will, nic_cannot, disks)
    devices = _list(_at(doc, "hardware", "device"))
    version = _text(doc.get("version")) or None
    firmware = _text(doc.get("firmware")) or config.firmware or None
    secure_boot = _bool(_at(doc, "bootOptions", "efiSecureBootEnabled"))
    if firmware != "efi":
        secure_boot = None
    extra, skipped = _extra_config(doc)
    hot = {k: _bool(doc.get(k)) for k in
           ("cpuHotAddEnabled", "cpuHotRemoveEnabled", "memoryHotAddEnabled")}
    annotation = _text(doc.get("annotation")) or None
    will: list[Setting] = []
    if version:
        will.append(Setting("hardware version", version))
    if firmware:
        will.append(Setting("firmware", firmware))
    if secure_boot is not None:
        will.append(Setting("EFI secure boot", _on(secure_boot)))
    for flag, label in (("cpuHotAddEnabled", "CPU hot add"),
                        ("cpuHotRemoveEnabled", "CPU hot remove"),
                        ("memoryHotAddEnabled", "memory hot add")):
        value = hot[flag]
        if value is not None:
            will.append(Setting(label, _on(value)))
    if annotation:
        will.append(Setting("notes", f"{len(annotation)} characters"))
    if extra:
        will.append(Setting(f"extraConfig ({len(extra)} keys)",
                            ", ".join(k for k, _ in extra)))
    if skipped:
        will.append(Setting(f"extraConfig not copied ({len(skipped)} keys, vSphere's own)",
                            ", ".join(skipped)))
    provisioning, disk_will, disk_cannot = _disks(config, devices, disks)
    cannot = list(nic_cannot)
    if any(_kind(d) == "VirtualTPM" for d in devices):
        cannot.append(Unsupported("add the virtual TPM", VTPM_REASON))
    if doc.get("keyId") is not None:
        cannot.append(Unsupported("encrypt the VM", ENCRYPTION_REASON))
    cannot += disk_cannot
    cannot.append(Unsupported("apply the VM's storage policy", STORAGE_POLICY_REASON))
    cannot += _other_devices(config, devices)
    return NewVmSettings(
        version, firmware, secure_boot, tuple(extra), hot["cpuHotAddEnabled"],
        hot["cpuHotRemoveEnabled"], hot["memoryHotAddEnabled"], annotation, tuple(nics),
        tuple(provisioning), tuple(will + nic_will + disk_will), tuple(cannot),
        tuple(skipped))
