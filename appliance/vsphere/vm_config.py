"""A VM's configuration as a backup records it, for recreating the VM at restore: hardware,
controllers, disks at their controller bus and unit, NICs and their networks.

``read_vm_config`` reads it from vSphere (the snapshot's configuration, the live VM's where
the snapshot's lacks something); ``VmConfig.to_record`` is the JSON a VM restore point stores
as its ``config`` and ``VmConfig.from_record`` reads it back (also from older points: what is
missing gets the default the restore has always used).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from pyVmomi import vim
from pyVmomi.VmomiJSONEncoder import VmomiJSONEncoder

from appliance.vsphere._vim import snapshot_object, type_name, vm_object
from appliance.vsphere.inventory import VmInfo
from appliance.vsphere.session import VSphereSession
from appliance.vsphere.snapshot import SnapshotRef

#: A scalar of the recorded configuration.
Field = str | int | bool
#: A row of the recorded configuration (a controller, a disk, a NIC).
Row = dict[str, Field]
#: A JSON value (what ``json.loads`` gives).
Json: TypeAlias = "str | int | float | bool | list[Json] | dict[str, Json] | None"
#: A JSON object: the encoded ``VirtualMachineConfigInfo`` (``vim_config``).
JsonObject: TypeAlias = dict[str, Json]
#: The recorded configuration as a restore point stores it (JSON).
Record = dict[str, Field | list[Row] | Row | JsonObject]


@dataclass(frozen=True, slots=True)
class PlacementRecord:
    """Where the VM was when it was backed up, by name (a restore to a new VM goes there
    unless told otherwise): datacenter, host, resource pool, VM folder, the datastore of its
    configuration file."""

    datacenter: str
    host: str
    resource_pool: str
    folder: str
    datastore: str

    def to_record(self) -> Row:
        return {"datacenter": self.datacenter, "host": self.host,
                "resource_pool": self.resource_pool, "folder": self.folder,
                "datastore": self.datastore}



@dataclass(frozen=True, slots=True)
class ControllerConfig:
    key: int
    type: str  # the pyVmomi device class name, e.g. "VirtualLsiLogicController"
    bus: int

    def to_record(self) -> Row:
        return {"key": self.key, "type": self.type, "bus": self.bus}


@dataclass(frozen=True, slots=True)
class DiskConfig:
    key: int
    controller_key: int
    controller_type: str
    bus: int
    unit: int
    capacity_bytes: int
    disk_mode: str
    thin: bool
    file_name: str
    index: int  # vmkeep's disk number: (bus, unit, key) order

    def to_record(self) -> Row:
        return {"key": self.key, "controller_key": self.controller_key,
                "controller_type": self.controller_type, "bus": self.bus, "unit": self.unit,
                "capacity_bytes": self.capacity_bytes, "disk_mode": self.disk_mode,
                "thin": self.thin, "file_name": self.file_name, "index": self.index}


@dataclass(frozen=True, slots=True)
class NicConfig:
    key: int
    type: str  # the pyVmomi device class name, e.g. "VirtualVmxnet3"
    mac: str
    address_type: str
    network: str
    portgroup_key: str
    switch_uuid: str

    def to_record(self) -> Row:
        return {"key": self.key, "type": self.type, "mac": self.mac,
                "address_type": self.address_type, "network": self.network,
                "portgroup_key": self.portgroup_key, "switch_uuid": self.switch_uuid}


@dataclass(frozen=True, slots=True)
class VmConfig:
    name: str
    guest_id: str
    num_cpu: int
    cores_per_socket: int
    memory_mb: int
    firmware: str
    version: str
    controllers: tuple[ControllerConfig, ...]
    disks: tuple[DiskConfig, ...]
    nics: tuple[NicConfig, ...]
    instance_uuid: str
    bios_uuid: str
    #: The snapshot's ``VirtualMachineConfigInfo`` as JSON (None: a point from before
    #: vmkeep recorded it; its restore sets what it always did).
    vim_config: JsonObject | None = None
    #: Where the VM was (None: a point from before vmkeep recorded it).
    placement: PlacementRecord | None = None

    def to_record(self) -> Record:
        """The JSON a restore point stores (keys in this order, as vmkeep always wrote it;
        ``vim_config`` and ``placement`` last, when there are)."""
        record: Record = {
            "name": self.name, "guest_id": self.guest_id, "num_cpu": self.num_cpu,
            "cores_per_socket": self.cores_per_socket, "memory_mb": self.memory_mb,
            "firmware": self.firmware, "version": self.version,
            "controllers": [c.to_record() for c in self.controllers],
            "disks": [d.to_record() for d in self.disks],
            "nics": [n.to_record() for n in self.nics],
            "instance_uuid": self.instance_uuid, "bios_uuid": self.bios_uuid,
        }
        if self.vim_config is not None:
            record["vim_config"] = self.vim_config
        if self.placement is not None:
            record["placement"] = self.placement.to_record()
        return record

    @staticmethod
    def from_record(doc: Mapping[str, Field | Sequence[Mapping[str, Field]] | JsonObject
                                 | None]) -> VmConfig:
        """Read a restore point's recorded configuration. A disk without ``key``, ``bus``
        or ``unit`` is an error (KeyError): nothing places it."""
        return VmConfig(
            name=_str(doc.get("name")), guest_id=_str(doc.get("guest_id")),
            num_cpu=_int(doc.get("num_cpu")), cores_per_socket=_int(doc.get("cores_per_socket")),
            memory_mb=_int(doc.get("memory_mb")), firmware=_str(doc.get("firmware")),
            version=_str(doc.get("version")),
            controllers=tuple(ControllerConfig(_int(c.get("key")), _str(c.get("type")),
                                               _int(c.get("bus")))
                              for c in _rows(doc.get("controllers"))),
            disks=tuple(DiskConfig(
                key=_int(d["key"]), controller_key=_int(d.get("controller_key")),
                controller_type=_str(d.get("controller_type")), bus=_int(d["bus"]),
                unit=_int(d["unit"]), capacity_bytes=_int(d.get("capacity_bytes")),
                disk_mode=_str(d.get("disk_mode")), thin=bool(d.get("thin", True)),
                file_name=_str(d.get("file_name")), index=_int(d.get("index", -1)))
                for d in _rows(doc.get("disks"))),
            nics=tuple(NicConfig(
                key=_int(n.get("key")), type=_str(n.get("type")), mac=_str(n.get("mac")),
                address_type=_str(n.get("address_type")), network=_str(n.get("network")),
                portgroup_key=_str(n.get("portgroup_key")),
                switch_uuid=_str(n.get("switch_uuid")))
                for n in _rows(doc.get("nics"))),
            instance_uuid=_str(doc.get("instance_uuid")), bios_uuid=_str(doc.get("bios_uuid")),
            vim_config=_object(doc.get("vim_config")),
            placement=_placement_record(doc.get("placement")))


def _placement_record(value: object) -> PlacementRecord | None:
    if not isinstance(value, Mapping):
        return None
    return PlacementRecord(*(_str(value.get(k)) for k in (
        "datacenter", "host", "resource_pool", "folder", "datastore")))


def _object(value: object) -> JsonObject | None:
    if not isinstance(value, dict):
        return None
    return {str(k): v for k, v in value.items()}


def _str(value: object) -> str:
    return str(value or "")


def _int(value: object) -> int:
    if isinstance(value, bool | int | float | str):
        return int(value or 0)
    return 0


def _rows(value: object) -> list[Mapping[str, object]]:
    if not isinstance(value, list | tuple):
        return []
    return [r for r in value if isinstance(r, Mapping)]


def _devices(snap_config: Any) -> tuple[dict[str, Any], list[ControllerConfig],
                                        list[DiskConfig], list[NicConfig]]:
    """The snapshot configuration's hardware and devices (duck-typed pyVmomi data)."""
    hw = getattr(snap_config, "hardware", None)
    devices = list(getattr(hw, "device", None) or [])
    by_key = {int(d.key): d for d in devices}
    disks: list[DiskConfig] = []
    nics: list[NicConfig] = []
    controllers: list[ControllerConfig] = []
    for d in devices:
        kind = type_name(d)
        if hasattr(d, "busNumber") and hasattr(d, "device") and kind.endswith("Controller"):
            controllers.append(ControllerConfig(int(d.key), kind, int(d.busNumber or 0)))
        elif hasattr(d, "capacityInKB") and hasattr(d, "unitNumber"):
            ctrl = by_key.get(int(d.controllerKey or 0))
            backing = d.backing
            disks.append(DiskConfig(
                key=int(d.key), controller_key=int(d.controllerKey or 0),
                controller_type=type_name(ctrl) if ctrl else "",
                bus=int(getattr(ctrl, "busNumber", 0) or 0),
                unit=int(d.unitNumber or 0),
                capacity_bytes=int(d.capacityInBytes or 0) or int(d.capacityInKB or 0) * 1024,
                disk_mode=str(getattr(backing, "diskMode", "") or ""),
                thin=bool(getattr(backing, "thinProvisioned", False)),
                file_name=str(getattr(backing, "fileName", "") or ""), index=-1))
        elif hasattr(d, "macAddress"):
            backing = d.backing
            port = getattr(backing, "port", None)
            nics.append(NicConfig(
                key=int(d.key), type=kind, mac=str(d.macAddress or ""),
                address_type=str(getattr(d, "addressType", "") or ""),
                network=str(getattr(backing, "deviceName", "") or ""),
                portgroup_key=str(getattr(port, "portgroupKey", "") or ""),
                switch_uuid=str(getattr(port, "switchUuid", "") or "")))
    disks.sort(key=lambda x: (x.bus, x.unit, x.key))
    hardware = {
        "guest_id": str(getattr(snap_config, "guestId", "") or ""),
        "num_cpu": int(getattr(hw, "numCPU", 0) or 0),
        "cores_per_socket": int(getattr(hw, "numCoresPerSocket", 0) or 0),
        "memory_mb": int(getattr(hw, "memoryMB", 0) or 0),
        "firmware": str(getattr(snap_config, "firmware", "") or ""),
        "version": str(getattr(snap_config, "version", "") or ""),
    }
    return hardware, controllers, disks, nics


def read_vm_config(session: VSphereSession, snapshot: SnapshotRef, info: VmInfo) -> VmConfig:
    """The configuration of VM ``info`` as of ``snapshot``, for recreating it at restore."""
    snap_config = snapshot_object(session, snapshot.moref).config
    hw, controllers, disks, nics = _devices(snap_config)
    vm = vm_object(session, snapshot.vm_moref)
    live = vm.config
    for k, attr in (("guest_id", "guestId"), ("firmware", "firmware")):
        if not hw[k]:
            hw[k] = str(getattr(live, attr, "") or "")
    if not hw["num_cpu"]:
        hw["num_cpu"] = int(getattr(live.hardware, "numCPU", 0) or 0)
    if not hw["memory_mb"]:
        hw["memory_mb"] = int(getattr(live.hardware, "memoryMB", 0) or 0)
    portgroups = {str(getattr(n, "key", "") or ""): str(n.name) for n in vm.network or []}
    live_devices = {int(d.key): d for d in getattr(live.hardware, "device", None) or []}
    named: list[NicConfig] = []
    for nic in nics:
        if nic.network:
            named.append(nic)
            continue
        dev = live_devices.get(nic.key)
        backing = getattr(dev, "backing", None) if dev is not None else None
        name = str(getattr(backing, "deviceName", "") or "")
        net = getattr(backing, "network", None)
        if not name and net is not None:
            name = str(getattr(net, "name", "") or "")
        named.append(NicConfig(nic.key, nic.type, nic.mac, nic.address_type,
                               name or portgroups.get(nic.portgroup_key, ""),
                               nic.portgroup_key, nic.switch_uuid))
    return VmConfig(
        name=info.name,  # the snapshot's config may lack it; the VM's name is current
        guest_id=hw["guest_id"], num_cpu=hw["num_cpu"],
        cores_per_socket=hw["cores_per_socket"], memory_mb=hw["memory_mb"],
        firmware=hw["firmware"], version=hw["version"], controllers=tuple(controllers),
        disks=tuple(DiskConfig(d.key, d.controller_key, d.controller_type, d.bus, d.unit,
                               d.capacity_bytes, d.disk_mode, d.thin, d.file_name, i)
                    for i, d in enumerate(disks)),
        nics=tuple(named), instance_uuid=info.instance_uuid, bios_uuid=info.bios_uuid,
        vim_config=_encode_config_info(snap_config), placement=_placement(vm))


def _placement(vm: Any) -> PlacementRecord | None:
    """Where ``vm`` is now, by name (None when the inventory does not say)."""
    host = getattr(getattr(vm, "runtime", None), "host", None)
    pool = getattr(vm, "resourcePool", None)
    folder = getattr(vm, "parent", None)
    vmx = str(getattr(getattr(getattr(vm, "config", None), "files", None), "vmPathName", "")
              or "")
    node = folder
    while node is not None and not isinstance(node, vim.Datacenter):
        node = getattr(node, "parent", None)
    if host is None or node is None:
        return None
    datastore = vmx[1:vmx.index("]")] if vmx.startswith("[") and "]" in vmx else ""
    return PlacementRecord(str(node.name), str(host.name),
                           str(pool.name) if pool is not None else "",
                           str(folder.name) if folder is not None else "", datastore)


def _encode_config_info(config_info: Any) -> JsonObject | None:
    """A ``VirtualMachineConfigInfo`` as JSON, encoded by pyVmomi's ``VmomiJSONEncoder``
    (None when there is none, or the encoder cannot encode it: the point then restores as
    one from before vmkeep recorded it, rather than the backup failing)."""
    if config_info is None:
        return None
    try:
        doc = json.loads(json.dumps(config_info, cls=VmomiJSONEncoder, strip_dynamic=True))
    except (TypeError, ValueError, RecursionError):
        return None
    return _object(doc)
