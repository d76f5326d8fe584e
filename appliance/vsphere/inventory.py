"""Inventory: datacenters, hosts and VMs read with ContainerView + PropertyCollector.

Every query names its property paths explicitly (no attribute walks, which cost one round
trip per attribute). Results are our own frozen dataclasses; nothing ``vim.*`` leaves here.

Disks are numbered 0, 1, … in the order of (controller bus number, unit number), ties broken
by controller key: that number is what ``--disk N`` means everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Final

from pyVmomi import vim

from appliance.errors import NotFoundError
from appliance.vsphere._vim import collect, inventory_path, vm_object
from appliance.vsphere.session import VSphereSession

VM_PATHS = (
    "name",
    "config.instanceUuid",
    "config.uuid",
    "config.guestId",
    "config.template",
    "config.changeTrackingEnabled",
    "config.keyId",
    "config.hardware.device",
    "runtime.powerState",
    "runtime.consolidationNeeded",
    "runtime.host",
    "guest.toolsRunningStatus",
    "guest.ipAddress",
    "snapshot",
)


class VmNotFoundError(NotFoundError):
    """No VM has the given name or instance UUID."""

    code = "vm_not_found"


@dataclass(frozen=True, slots=True)
class DiskInfo:
    index: int
    key: int
    label: str
    controller_bus: int
    unit_number: int
    capacity_bytes: int
    file_name: str
    backing_type: str  # e.g. "FlatVer2", "SeSparse", "RawDiskMappingVer1", "SparseVer2"
    datastore_name: str
    change_id: str | None
    disk_mode: str | None  # "persistent", "independent_persistent", …
    controller_key: int = 0
    parent_file_name: str | None = None  # set when the backing is a delta of another file
    encrypted: bool = False  # backing.keyId is set: the data file holds ciphertext
    datastore_type: str = ""  # its datastore's summary.type ("VMFS", "NFS", "vsan", …)


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    moref: str
    name: str
    description: str
    created: datetime | None
    parent_moref: str | None
    quiesced: bool


@dataclass(frozen=True, slots=True)
class VmInfo:
    name: str
    instance_uuid: str
    bios_uuid: str
    moref: str
    power_state: str  # "poweredOn", "poweredOff", "suspended"
    guest_id: str
    cbt_enabled: bool
    consolidation_needed: bool
    tools_running_status: str
    template: bool
    datacenter: str
    host: str
    disks: tuple[DiskInfo, ...]
    snapshots: tuple[SnapshotInfo, ...]
    ip_address: str = ""  # the guest's, as VMware Tools report it ("" without)
    encrypted: bool = False  # config.keyId is set: VM encryption (its home files too)
    datacenter_path: str = ""  # the datacenter's inventory path ("F0/DC0"): dcPath

    @property
    def has_snapshots(self) -> bool:
        return bool(self.snapshots)


@dataclass(frozen=True, slots=True)
class DatacenterInfo:
    name: str
    moref: str


@dataclass(frozen=True, slots=True)
class HostInfo:
    name: str
    moref: str
    connection_state: str
    power_state: str


def _datastore_of(file_name: str) -> str:
    """``[LocalDS_0] vm/disk.vmdk`` → ``LocalDS_0``."""
    if file_name.startswith("[") and "]" in file_name:
        return file_name[1:file_name.index("]")]
    return ""


def _backing_type(backing: Any) -> str:
    if backing is None:
        return "none"
    name = type(backing).__name__.rsplit(".", 1)[-1]
    return name.removesuffix("BackingInfo")


def _disks(devices: Iterable[Any], ds_types: dict[str, str] | None = None
           ) -> tuple[DiskInfo, ...]:
    """The VM's disks in (bus, unit) order; ``ds_types``: datastores' summary.type by moref
    id and by name (the backing's datastore reference first, its file name's bracket
    second)."""
    ds_types = ds_types or {}
    devices = list(devices or [])
    buses = {d.key: int(d.busNumber) for d in devices
             if isinstance(d, vim.vm.device.VirtualController)}
    raw = []
    for d in devices:
        if not isinstance(d, vim.vm.device.VirtualDisk):
            continue
        bus = buses.get(int(d.controllerKey or 0), -1)
        unit = int(d.unitNumber) if d.unitNumber is not None else -1
        raw.append((bus, unit, int(d.controllerKey or 0), d))
    raw.sort(key=lambda t: (t[0], t[1], t[2]))
    disks = []
    for index, (bus, unit, ckey, d) in enumerate(raw):
        backing = d.backing
        capacity = int(d.capacityInBytes or 0) or int(d.capacityInKB or 0) * 1024
        file_name = str(getattr(backing, "fileName", "") or "")
        parent = getattr(backing, "parent", None)
        ds_ref = getattr(backing, "datastore", None)
        ds_type = (ds_types.get(str(ds_ref._moId), "") if ds_ref is not None else "") or \
            ds_types.get(_datastore_of(file_name), "")
        disks.append(DiskInfo(
            index=index, key=int(d.key), label=str(getattr(d.deviceInfo, "label", "") or ""),
            controller_bus=bus, unit_number=unit, capacity_bytes=capacity,
            file_name=file_name, backing_type=_backing_type(backing),
            datastore_name=_datastore_of(file_name),
            change_id=getattr(backing, "changeId", None) or None,
            disk_mode=getattr(backing, "diskMode", None) or None,
            controller_key=ckey,
            parent_file_name=(str(getattr(parent, "fileName", "")) or None) if parent else None,
            encrypted=getattr(backing, "keyId", None) is not None,
            datastore_type=ds_type,
        ))
    return tuple(disks)


def _snapshots(snapshot_info: Any) -> tuple[SnapshotInfo, ...]:
    out: list[SnapshotInfo] = []

    def walk(trees: Iterable[Any], parent: str | None) -> None:
        for t in trees or []:
            moref = str(t.snapshot._moId)
            out.append(SnapshotInfo(
                moref=moref, name=str(t.name or ""), description=str(t.description or ""),
                created=t.createTime, parent_moref=parent, quiesced=bool(t.quiesced)))
            walk(t.childSnapshotList, moref)

    if snapshot_info is not None:
        walk(snapshot_info.rootSnapshotList, None)
    return tuple(out)


def list_datacenters(session: VSphereSession) -> list[DatacenterInfo]:
    return sorted((DatacenterInfo(name=str(p.get("name", "")), moref=str(obj._moId))
                   for obj, p in collect(session, session.content.rootFolder,
                                          vim.Datacenter, ["name"])),
                  key=lambda d: d.name)


def list_hosts(session: VSphereSession) -> list[HostInfo]:
    rows = collect(session, session.content.rootFolder, vim.HostSystem,
                    ["name", "runtime.connectionState", "runtime.powerState"])
    return sorted((HostInfo(name=str(p.get("name", "")), moref=str(obj._moId),
                            connection_state=str(p.get("runtime.connectionState", "")),
                            power_state=str(p.get("runtime.powerState", "")))
                   for obj, p in rows), key=lambda h: h.name)


def list_vms(session: VSphereSession) -> list[VmInfo]:
    """Every VM (templates included), sorted by name then instance UUID."""
    hosts = {str(obj._moId): str(p.get("name", ""))
             for obj, p in collect(session, session.content.rootFolder, vim.HostSystem,
                                    ["name"])}
    vms: list[VmInfo] = []
    for dc_obj, dc_props in collect(session, session.content.rootFolder, vim.Datacenter,
                                     ["name"]):
        dc_path = session.call(partial(inventory_path, dc_obj))
        ds_types: dict[str, str] = {}
        for ds_obj, ds_props in collect(session, dc_obj, vim.Datastore,
                                        ["name", "summary.type"]):
            kind = str(ds_props.get("summary.type", "") or "")
            ds_types[str(ds_obj._moId)] = ds_types[str(ds_props.get("name", ""))] = kind
        for obj, p in collect(session, dc_obj, vim.VirtualMachine, VM_PATHS):
            host_ref = p.get("runtime.host")
            vms.append(VmInfo(
                name=str(p.get("name", "")),
                instance_uuid=str(p.get("config.instanceUuid", "") or ""),
                bios_uuid=str(p.get("config.uuid", "") or ""),
                moref=str(obj._moId),
                power_state=str(p.get("runtime.powerState", "") or ""),
                guest_id=str(p.get("config.guestId", "") or ""),
                cbt_enabled=bool(p.get("config.changeTrackingEnabled")),
                consolidation_needed=bool(p.get("runtime.consolidationNeeded")),
                tools_running_status=str(p.get("guest.toolsRunningStatus", "") or ""),
                template=bool(p.get("config.template")),
                datacenter=str(dc_props.get("name", "")),
                host=hosts.get(str(host_ref._moId), "") if host_ref is not None else "",
                disks=_disks(p.get("config.hardware.device") or [], ds_types),
                snapshots=_snapshots(p.get("snapshot")),
                ip_address=str(p.get("guest.ipAddress", "") or ""),
                datacenter_path=dc_path,
                encrypted=p.get("config.keyId") is not None,
            ))
    vms.sort(key=lambda v: (v.name, v.instance_uuid))
    return vms


def find_vm(session: VSphereSession, name_or_uuid: str) -> VmInfo:
    """The VM with this instance UUID, moref id or (unique) name."""
    wanted = name_or_uuid.strip()
    vms = list_vms(session)
    for vm in vms:
        if vm.instance_uuid and vm.instance_uuid.lower() == wanted.lower():
            return vm
    for vm in vms:
        if vm.moref == wanted:
            return vm
    named = [vm for vm in vms if vm.name == wanted]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        uuids = ", ".join(vm.instance_uuid for vm in named)
        raise VmNotFoundError(
            f"{len(named)} VMs are named {wanted!r} ({uuids}): name one by its instance UUID")
    raise VmNotFoundError(
        f"no VM named {wanted!r} or with that instance UUID on "
        f"{session.host}:{session.port}: check the name (`vmkeep vsphere vms` lists them)")


def find_vm_moref(session: VSphereSession, instance_uuid: str) -> str | None:
    """The moref of the VM with this instance UUID now, or None (it is gone)."""
    vm = session.call(lambda: session.content.searchIndex.FindByUuid(
        None, instance_uuid, True, True))
    return str(vm._moId) if vm is not None else None


def datastore_urls(session: VSphereSession, vm_moref: str) -> dict[str, str]:
    """The local URL (path) of each datastore VM ``vm_moref`` uses, by datastore name."""
    vm = vm_object(session, vm_moref)
    return {str(ds.name): str(ds.info.url) for ds in vm.datastore or []}


#: The inventory objects a job may name as a container of VMs.
CONTAINER_TYPES: Final = ("Datacenter", "Folder", "ClusterComputeResource", "ComputeResource",
                          "HostSystem", "ResourcePool")


class ContainerNotFoundError(NotFoundError):
    """An inventory path names nothing, or something that holds no VMs."""

    code = "container_not_found"


def vms_in_container(session: VSphereSession, path: str) -> list[VmInfo]:
    """The VMs (templates left out) under the inventory object at ``path`` as vSphere writes
    it: ``/DC0/vm/Folder`` (a VM folder), ``/DC0/host/Cluster`` (a cluster),
    ``/DC0/host/Cluster/Host`` (a host), ``/DC0/host/Cluster/Resources/Pool`` (a resource
    pool) or ``/DC0`` (a datacenter). Evaluated now: a job re-evaluates it at each run."""
    wanted = "/" + path.strip().strip("/")
    entity = session.call(lambda: session.content.searchIndex.FindByInventoryPath(wanted))
    if entity is None:
        raise ContainerNotFoundError(
            f"nothing at inventory path {wanted!r} on {session.host}:{session.port}: write it "
            "as vSphere does, e.g. /DC0/vm/FOLDER, /DC0/host/CLUSTER, /DC0/host/CLUSTER/HOST "
            "or /DC0/host/CLUSTER/Resources/POOL (`vmkeep inventory --containers` lists them)")
    kind = type(entity).__name__.rsplit(".", 1)[-1]
    if kind not in CONTAINER_TYPES:
        raise ContainerNotFoundError(
            f"inventory path {wanted!r} is a {kind}, which holds no VMs: name a datacenter, "
            "folder, cluster, host or resource pool")
    inside = {str(obj._moId) for obj, _p in collect(session, entity, vim.VirtualMachine, [])}
    return [vm for vm in list_vms(session) if vm.moref in inside and not vm.template]


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """A datacenter, folder, cluster, host or resource pool, by inventory path, with the
    names of the VMs directly in it (a folder's or pool's own, a host's running ones)."""

    kind: str
    path: str
    vms: tuple[str, ...]


def list_containers(session: VSphereSession) -> list[ContainerInfo]:
    """Every datacenter, folder, cluster, host and resource pool, sorted by path: what a job
    may name with ``--container`` (both trees: hosts and clusters, VMs and templates)."""
    found: list[ContainerInfo] = []

    def walk(entity: Any, path: str) -> None:
        kind = type(entity).__name__.rsplit(".", 1)[-1]
        children: list[Any] = []
        direct: list[Any] = []
        if kind == "Folder":
            children = list(entity.childEntity or [])
            direct = [c for c in children if isinstance(c, vim.VirtualMachine)]
        elif kind == "Datacenter":
            children = [entity.vmFolder, entity.hostFolder]
        elif kind in ("ClusterComputeResource", "ComputeResource"):
            children = [*(entity.host or []),
                        *([entity.resourcePool] if entity.resourcePool else [])]
        elif kind == "ResourcePool":
            children = list(entity.resourcePool or [])
            direct = list(entity.vm or [])
        elif kind == "HostSystem":
            direct = list(entity.vm or [])
        if kind not in CONTAINER_TYPES:
            return
        found.append(ContainerInfo(kind, path, tuple(sorted(str(v.name) for v in direct))))
        for child in children:
            if isinstance(child, (vim.VirtualMachine, vim.Datastore, vim.Network)):
                continue
            walk(child, f"{path}/{child.name}")

    def run() -> None:
        for child in session.content.rootFolder.childEntity or []:
            walk(child, f"/{child.name}")

    session.call(run)
    return sorted(found, key=lambda c: c.path)
