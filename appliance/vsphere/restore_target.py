"""Restore targets in vSphere: a new VM built from a restore point's recorded configuration,
the original VM made ready to be overwritten, or a new disk added to an existing VM.

Input is vmkeep's own recorded configuration (``vm_config.VmConfig``, the ``config`` of a
VM restore point); output is frozen data naming the datastore files a
restore must fill. Nothing ``vim.*`` leaves this module.

Placement names (datacenter, host, resource pool, datastore, folder) are checked before
anything is created; an unknown one is an error that lists what exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyVmomi import vim, vmodl

from appliance.errors import BadInputError, NotFoundError, VSphereError
from appliance.vsphere._vim import (
    VsphereTaskError,
    collect,
    inventory_path,
    vm_object,
    wait_for_task,
)
from appliance.vsphere.cbt import flat_file_of, split_datastore_path
from appliance.vsphere.session import VSphereSession
from appliance.vsphere.vm_config import DiskConfig, NicConfig, PlacementRecord, VmConfig
from appliance.vsphere.vm_settings import (
    NewVmSettings,
    NicSetting,
    PlacementNetworks,
    PortGroup,
    new_vm_settings,
)

# Controllers every VM has from creation on; the others are added from the recorded config.
BUILTIN_CONTROLLERS = frozenset({"VirtualIDEController", "VirtualPCIController",
                                 "VirtualPS2Controller", "VirtualSIOController"})
IDE_KEYS = {0: 200, 1: 201}  # the built-in IDE controllers' keys by bus number
SCSI_UNITS = tuple(u for u in range(16) if u != 7)  # unit 7 is the SCSI controller itself


class RestoreTargetError(VSphereError):
    """A restore target could not be created or prepared in vSphere."""

    code = "vsphere_restore_target"


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a new VM goes, resolved to managed object ids."""

    datacenter: str
    datacenter_moref: str
    folder_moref: str
    pool_moref: str
    host_moref: str | None
    host: str
    datastore: str
    datastore_type: str = ""  # its summary.type (VMFS, NFS, vsan, …): disk_access's rule
    datacenter_path: str = ""  # the datacenter's inventory path ("F0/DC0"): dcPath
    pool: str = ""  # the resource pool's name
    folder: str = ""  # the VM folder's name
    #: Which names were the original VM's (recorded with the point): "host", "datastore", …
    as_original: tuple[str, ...] = ()
    #: Recorded names that no longer exist, each with what was taken instead.
    notes: tuple[str, ...] = ()

    @property
    def described(self) -> str:
        """For the plan and the log: where the VM goes."""
        text = (f"host {self.host!r}, resource pool {self.pool!r}, datastore "
                f"{self.datastore!r}, folder {self.folder!r} in datacenter {self.datacenter!r}")
        if self.as_original:
            text += " (as the original VM: " + ", ".join(self.as_original) + ")"
        return text


@dataclass(frozen=True, slots=True)
class TargetDisk:
    """A virtual disk of the target VM and the flat file that holds its bytes."""

    index: int  # vmkeep's disk number on the target VM: (bus, unit) order
    key: int
    bus: int
    unit: int
    capacity_bytes: int
    file_name: str  # "[datastore] folder/disk.vmdk"
    backing_type: str
    datastore_type: str | None = None  # its datastore's summary.type (None: not read)
    encrypted: bool = False  # backing.keyId: its file holds ciphertext

    @property
    def datastore(self) -> str:
        return split_datastore_path(self.file_name)[0]

    @property
    def flat_path(self) -> str:
        return flat_file_of(split_datastore_path(self.file_name)[1])


@dataclass(frozen=True, slots=True)
class TargetVm:
    name: str
    moref: str
    instance_uuid: str
    datacenter: str
    power_state: str
    snapshot_count: int
    disks: tuple[TargetDisk, ...]
    datacenter_path: str = ""  # the datacenter's inventory path ("F0/DC0"): dcPath


def _fault(exc: BaseException) -> str:
    msg = getattr(exc, "msg", None) or ""
    return " ".join(f"{type(exc).__name__}: {msg}".split()) if msg else type(exc).__name__


def _children(folder: Any, kind: Any) -> list[Any]:
    """Objects of ``kind`` below ``folder`` (through nested folders)."""
    out: list[Any] = []
    for child in folder.childEntity or []:
        if isinstance(child, kind):
            out.append(child)
        elif isinstance(child, vim.Folder):
            out += _children(child, kind)
    return out


def _pick(kind: str, wanted: str | None, found: Sequence[tuple[str, Any]], where: str) -> Any:
    names = sorted(n for n, _ in found)
    if wanted is None:
        if len(found) == 1:
            return found[0][1]
        raise BadInputError(f"{where} has {len(found)} {kind}s ({', '.join(names) or 'none'}): "
                            f"name one with --{kind.replace(' ', '-')}")
    for n, obj in found:
        if n == wanted:
            return obj
    raise NotFoundError(f"no {kind} named {wanted!r} in {where}; choose one of: "
                        f"{', '.join(names) or 'none'}")


def resolve_placement(session: VSphereSession, *, datacenter: str | None = None,
                      host: str | None = None, resource_pool: str | None = None,
                      datastore: str | None = None, folder: str | None = None,
                      original: PlacementRecord | None = None) -> Placement:
    """Turn names into a placement. A name given must exist. A name left out is the
    ``original`` VM's (recorded with the point) when that still exists (else a note says so
    and the default is taken); otherwise each may be left out when there is only one choice;
    without a host or pool, the first host's resource pool is used; without a folder, the
    datacenter's VM folder."""
    taken: list[str] = []
    notes: list[str] = []

    def prefer(kind: str, given: str | None, recorded: str, names: Sequence[str]
               ) -> str | None:
        """The name to use for ``kind``: the one given, else the original VM's if it
        exists among ``names``, else None (the default)."""
        if given is not None or not recorded:
            return given
        if recorded in names:
            taken.append(kind)
            return recorded
        notes.append(f"the original VM's {kind} {recorded!r} no longer exists; the default "
                     "is taken")
        return None

    def run() -> Placement:
        taken.clear()  # session.call may run this again after logging in again
        notes.clear()
        content = session.content
        dcs = _children(content.rootFolder, vim.Datacenter)
        dc_name = prefer("datacenter", datacenter, original.datacenter if original else "",
                         [str(d.name) for d in dcs])
        dc = _pick("datacenter", dc_name, [(str(d.name), d) for d in dcs],
                   f"vCenter {session.host}")
        where = f"datacenter {dc.name!r}"
        computes = _children(dc.hostFolder, vim.ComputeResource)
        hosts = [(str(h.name), h, c) for c in computes for h in c.host or []]
        want_host = prefer("host", host, original.host if original else "",
                           [n for n, _, _ in hosts])
        host_obj: Any = None
        if want_host is not None:
            match = [(h, c) for n, h, c in hosts if n == want_host]
            if not match:
                raise NotFoundError(f"no host named {want_host!r} in {where}; choose one of: "
                                    f"{', '.join(sorted(n for n, _, _ in hosts)) or 'none'}")
            host_obj, compute = match[0]
        elif hosts:
            _, host_obj, compute = sorted(hosts, key=lambda t: t[0])[0]
        else:
            raise RestoreTargetError(f"{where} has no host to run a restored VM")
        pools: list[tuple[str, Any]] = []

        def walk(pool: Any) -> None:
            pools.append((str(pool.name), pool))
            for p in pool.resourcePool or []:
                walk(p)

        # the host's own cluster first: "Resources" is every cluster's root pool's name
        for c in sorted(computes, key=lambda c: c != compute):
            if c.resourcePool is not None:
                walk(c.resourcePool)
        own = [n for n, p in pools if _owner(p) == compute]
        want_pool = prefer("resource pool", resource_pool,
                           original.resource_pool if original else "", own)
        pool = (_pick("resource pool", want_pool, pools, where) if want_pool is not None
                else compute.resourcePool)
        stores = [(str(d.name), d) for d in (host_obj.datastore or dc.datastore or [])]
        want_ds = prefer("datastore", datastore, original.datastore if original else "",
                         [n for n, _ in stores])
        ds = _pick("datastore", want_ds, stores, f"host {host_obj.name!r}")
        folders = [(str(f.name), f) for f in _all_folders(dc.vmFolder)]
        want_folder = prefer("folder", folder, original.folder if original else "",
                             [n for n, _ in folders])
        fold = (_pick("folder", want_folder, folders, where) if want_folder is not None
                else dc.vmFolder)
        return Placement(str(dc.name), str(dc._moId), str(fold._moId), str(pool._moId),
                         str(host_obj._moId), str(host_obj.name), str(ds.name),
                         str(ds.summary.type or ""),
                         datacenter_path=inventory_path(dc), pool=str(pool.name),
                         folder=str(fold.name), as_original=tuple(taken), notes=tuple(notes))

    try:
        return session.call(run)
    except vmodl.MethodFault as exc:
        raise RestoreTargetError(f"reading the inventory of {session.host} failed "
                                 f"({_fault(exc)})") from exc


def _owner(pool: Any) -> Any:
    """The compute resource (cluster or standalone host) a resource pool belongs to."""
    return pool.owner


def _all_folders(folder: Any) -> list[Any]:
    out = [folder]
    for child in folder.childEntity or []:
        if isinstance(child, vim.Folder):
            out += _all_folders(child)
    return out


def _device_class(type_name: str) -> Any:
    cls = getattr(vim.vm.device, type_name, None)
    if cls is None:
        raise BadInputError(f"the restore point names device type {type_name!r}, which this "
                            "vSphere API does not know")
    return cls


def _disk_backing(datastore: str, disk_mode: str, thin: bool, eager_zero: bool = False) -> Any:
    backing = vim.vm.device.VirtualDisk.FlatVer2BackingInfo(  # type: ignore[no-untyped-call]
        fileName=f"[{datastore}]", diskMode=disk_mode or "persistent", thinProvisioned=thin)
    if not thin and eager_zero:
        backing.eagerlyScrub = True
    return backing


def _new_disk(key: int, controller_key: int, unit: int, capacity: int, datastore: str,
              disk_mode: str = "persistent", thin: bool = True, eager_zero: bool = False) -> Any:
    disk = vim.vm.device.VirtualDisk(  # type: ignore[no-untyped-call]
        key=key, controllerKey=controller_key, unitNumber=unit,
        capacityInKB=(capacity + 1023) // 1024, capacityInBytes=capacity,
        backing=_disk_backing(datastore, disk_mode, thin, eager_zero))
    return vim.vm.device.VirtualDeviceSpec(  # type: ignore[no-untyped-call]
        operation="add", fileOperation="create", device=disk)


def _nic_backing(nic: NicConfig, how: NicSetting | None = None) -> Any:
    chosen = how.mapped_to if how is not None else None
    stand_in = how.stand_in if how is not None else ""
    if isinstance(chosen, PortGroup):  # the network map's distributed port group
        port = vim.dvs.PortConnection(  # type: ignore[no-untyped-call]
            switchUuid=chosen.switch_uuid, portgroupKey=chosen.key)
        return vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(  # type: ignore[no-untyped-call]
            port=port)
    if chosen or stand_in:  # mapped, or its own network is missing at the placement
        return vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(  # type: ignore[no-untyped-call]
            deviceName=chosen or stand_in)
    if nic.switch_uuid and nic.portgroup_key:
        port = vim.dvs.PortConnection(  # type: ignore[no-untyped-call]
            switchUuid=nic.switch_uuid, portgroupKey=nic.portgroup_key)
        return vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(  # type: ignore[no-untyped-call]
            port=port)
    return vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(  # type: ignore[no-untyped-call]
        deviceName=nic.network or "VM Network")


def _apply_settings(spec: Any, settings: NewVmSettings) -> None:
    """Hardware version, firmware, secure boot, hot-add, notes and extraConfig (what
    ``vm_settings`` decided; None leaves vSphere's default)."""
    if settings.version:
        spec.version = settings.version
    if settings.firmware:
        spec.firmware = settings.firmware
    if settings.secure_boot is not None:
        spec.bootOptions = vim.vm.BootOptions(  # type: ignore[no-untyped-call]
            efiSecureBootEnabled=settings.secure_boot)
    for attr, value in (("cpuHotAddEnabled", settings.cpu_hot_add),
                        ("cpuHotRemoveEnabled", settings.cpu_hot_remove),
                        ("memoryHotAddEnabled", settings.memory_hot_add)):
        if value is not None:
            setattr(spec, attr, value)
    if settings.annotation:
        spec.annotation = settings.annotation
    if settings.extra_config:
        spec.extraConfig = [vim.option.OptionValue(key=k, value=v)  # type: ignore[no-untyped-call]
                            for k, v in settings.extra_config]


def _new_vm_spec(config: VmConfig, disks: Sequence[DiskConfig], name: str,
                 datastore: str, *, keep_macs: bool,
                 networks: PlacementNetworks | None = None,
                 settings: NewVmSettings | None = None) -> Any:
    """A ``vim.vm.ConfigSpec`` for a VM like the recorded one. ``disks`` are the recorded
    disks to create; each keeps its controller bus and unit, so disk numbers match the
    backup's. What it sets beyond vmkeep's own fields is ``settings`` (default: decided
    by ``vm_settings.new_vm_settings`` from the recorded configuration; ``networks``, those
    at the placement: a NIC whose network is missing there is not connected at power-on)."""
    if settings is None:
        settings = new_vm_settings(config, keep_macs=keep_macs, networks=networks,
                                   disks=[d.key for d in disks])
    spec: Any = vim.vm.ConfigSpec(  # type: ignore[no-untyped-call]
        name=name, guestId=config.guest_id or "otherGuest64",
        numCPUs=config.num_cpu or 1,
        memoryMB=config.memory_mb or 1024,
        files=vim.vm.FileInfo(vmPathName=f"[{datastore}]"))  # type: ignore[no-untyped-call]
    if config.cores_per_socket:
        spec.numCoresPerSocket = config.cores_per_socket
    _apply_settings(spec, settings)
    changes: list[Any] = []
    new_keys: dict[int, int] = {}
    next_key = -100
    for c in config.controllers:
        if c.type in BUILTIN_CONTROLLERS:
            if c.type == "VirtualIDEController":
                new_keys[c.key] = IDE_KEYS.get(c.bus, 200)
            continue
        if not any(d.controller_key == c.key for d in disks):
            continue  # a controller with no disk to restore is not needed
        cls = _device_class(c.type)
        dev = cls(key=next_key, busNumber=c.bus)
        if hasattr(dev, "sharedBus"):
            dev.sharedBus = "noSharing"
        changes.append(vim.vm.device.VirtualDeviceSpec(  # type: ignore[no-untyped-call]
            operation="add", device=dev))
        new_keys[c.key] = next_key
        next_key -= 1
    for d in disks:
        ckey = new_keys.get(d.controller_key)
        if ckey is None:
            raise BadInputError(f"disk {d.index} of the restore point hangs on "
                                f"controller {d.controller_key}, which the point does not "
                                "describe; restore the disk to a file instead")
        prov = settings.disk(d.key)
        changes.append(_new_disk(next_key, ckey, d.unit, d.capacity_bytes,
                                 datastore, d.disk_mode or "persistent",
                                 prov.thin if prov is not None else d.thin,
                                 prov.eager_zero if prov is not None else False))
        next_key -= 1
    for nic in config.nics:
        cls = _device_class(nic.type)
        how = settings.nic(nic.key)
        dev = cls(key=next_key, backing=_nic_backing(nic, how))
        dev.connectable = vim.vm.device.VirtualDevice.ConnectInfo(  # type: ignore[no-untyped-call]
            startConnected=how is None or how.connect, allowGuestControl=True,
            connected=False)
        if how is not None and how.mac:
            dev.addressType = "manual"
            dev.macAddress = how.mac
        else:
            dev.addressType = "generated"
        changes.append(vim.vm.device.VirtualDeviceSpec(  # type: ignore[no-untyped-call]
            operation="add", device=dev))
        next_key -= 1
    spec.deviceChange = changes
    return spec


def _target_disks(devices: Sequence[Any]) -> tuple[TargetDisk, ...]:
    buses = {int(d.key): int(d.busNumber) for d in devices
             if isinstance(d, vim.vm.device.VirtualController)}
    raw = []
    for d in devices:
        if isinstance(d, vim.vm.device.VirtualDisk):
            ckey = int(d.controllerKey or 0)
            raw.append((buses.get(ckey, -1), int(d.unitNumber or 0), ckey, d))
    raw.sort(key=lambda t: (t[0], t[1], t[2]))
    out = []
    for i, (bus, unit, _ckey, d) in enumerate(raw):
        backing = d.backing
        ds_ref = getattr(backing, "datastore", None)
        out.append(TargetDisk(
            index=i, key=int(d.key), bus=bus, unit=unit,
            capacity_bytes=int(d.capacityInBytes or 0) or int(d.capacityInKB or 0) * 1024,
            file_name=str(getattr(backing, "fileName", "") or ""),
            backing_type=type(backing).__name__.rsplit(".", 1)[-1],
            datastore_type=str(ds_ref.summary.type or "") if ds_ref is not None else "",
            encrypted=getattr(backing, "keyId", None) is not None))
    return tuple(out)


def _vm(session: VSphereSession, moref: str) -> Any:
    return vm_object(session, moref)


def _datacenter_node(obj: Any) -> Any:
    node = obj
    while node is not None and not isinstance(node, vim.Datacenter):
        node = getattr(node, "parent", None)
    return node


def _datacenter_of(obj: Any) -> str:
    node = _datacenter_node(obj)
    return str(node.name) if node is not None else ""


def _datacenter_path_of(obj: Any) -> str:
    node = _datacenter_node(obj)
    return inventory_path(node) if node is not None else ""


def describe_vm(session: VSphereSession, moref: str) -> TargetVm:
    """The VM's name, power state, snapshot count and disks, read now."""

    def run() -> TargetVm:
        vm = _vm(session, moref)
        config = vm.config
        count = 0
        stack = list(vm.snapshot.rootSnapshotList) if vm.snapshot else []
        while stack:
            node = stack.pop()
            count += 1
            stack += list(node.childSnapshotList or [])
        return TargetVm(str(vm.name), moref, str(config.instanceUuid or ""),
                        _datacenter_of(vm), str(vm.runtime.powerState), count,
                        _target_disks(list(config.hardware.device or [])),
                        _datacenter_path_of(vm))

    try:
        return session.call(run)
    except vmodl.fault.ManagedObjectNotFound as exc:
        raise NotFoundError(f"VM {moref} no longer exists on {session.host}") from exc
    except vmodl.MethodFault as exc:
        raise RestoreTargetError(f"reading VM {moref} failed ({_fault(exc)})") from exc


def datastore_type(session: VSphereSession, datacenter: str, name: str) -> str:
    """The ``summary.type`` of datastore ``name`` in ``datacenter`` (NotFoundError when it
    has none of that name)."""

    def run() -> str:
        dcs = [d for d in _children(session.content.rootFolder, vim.Datacenter)
               if str(d.name) == datacenter]
        stores = [(str(p.get("name", "")), str(p.get("summary.type", "") or ""))
                  for dc in dcs
                  for _obj, p in collect(session, dc, vim.Datastore, ["name", "summary.type"])]
        for n, kind in stores:
            if n == name:
                return kind
        raise NotFoundError(f"no datastore named {name!r} in datacenter {datacenter!r}; "
                            f"choose one of: {', '.join(sorted(n for n, _ in stores)) or 'none'}")

    return session.call(run)


def _task(session: VSphereSession, start: Any, what: str, timeout: float) -> Any:
    try:
        task = session.call(start)
    except vmodl.MethodFault as exc:
        raise RestoreTargetError(f"{what} was refused ({_fault(exc)})") from exc
    try:
        return wait_for_task(task, timeout, what=what)
    except VsphereTaskError as exc:
        raise RestoreTargetError(str(exc)) from exc


def placement_networks(session: VSphereSession, placement: Placement) -> PlacementNetworks:
    """The networks at ``placement`` (its host's, or its datacenter's without a host): the
    standard networks' names and the distributed port groups' keys."""

    def run() -> PlacementNetworks:
        owner: Any
        if placement.host_moref:
            owner = vim.HostSystem(placement.host_moref, session.si._stub)  # type: ignore[no-untyped-call]
        else:
            owner = vim.Datacenter(placement.datacenter_moref, session.si._stub)  # type: ignore[no-untyped-call]
        nets = list(owner.network or [])
        portgroups = [n for n in nets if isinstance(n, vim.dvs.DistributedVirtualPortgroup)]
        return PlacementNetworks(
            frozenset(str(n.name) for n in nets if not isinstance(
                n, vim.dvs.DistributedVirtualPortgroup | vim.OpaqueNetwork)),
            frozenset(str(n.key) for n in portgroups),
            tuple(PortGroup(str(n.name), str(n.key),
                            str(getattr(n.config.distributedVirtualSwitch, "uuid", "") or ""))
                  for n in portgroups))

    try:
        return session.call(run)
    except vmodl.MethodFault as exc:
        raise RestoreTargetError(f"reading the networks at host {placement.host!r} failed "
                                 f"({_fault(exc)})") from exc


def create_vm(session: VSphereSession, placement: Placement, config: VmConfig,
              disks: Sequence[DiskConfig], name: str, *, keep_macs: bool,
              timeout: float = 600.0,
              networks: PlacementNetworks | None = None) -> TargetVm:
    """Create a VM named ``name`` like the recorded ``config`` with ``disks`` (recorded disks,
    at their controller bus and unit; created empty, of their ``capacity_bytes``) and the
    settings ``vm_settings`` decides (hardware version, firmware, extraConfig, …); NICs get
    new MAC addresses unless ``keep_macs``. Return what it looks like."""
    spec = _new_vm_spec(config, disks, name, placement.datastore, keep_macs=keep_macs,
                        networks=networks)
    folder = vim.Folder(placement.folder_moref, session.si._stub)  # type: ignore[no-untyped-call]
    pool = vim.ResourcePool(placement.pool_moref, session.si._stub)  # type: ignore[no-untyped-call]
    host = (vim.HostSystem(placement.host_moref, session.si._stub)  # type: ignore[no-untyped-call]
            if placement.host_moref else None)
    what = f"creating VM {spec.name!r} on datastore {placement.datastore!r}"
    vm = _task(session, lambda: folder.CreateVM_Task(config=spec, pool=pool, host=host),
               what, timeout)
    return describe_vm(session, str(vm._moId))


def destroy_vm(session: VSphereSession, moref: str, *, timeout: float = 600.0) -> None:
    """Delete a VM and its files (used to take back a half-restored new VM)."""
    vm = _vm(session, moref)
    _task(session, lambda: vm.Destroy_Task(), f"deleting VM {moref}", timeout)


def power_off(session: VSphereSession, moref: str, *, timeout: float = 600.0) -> bool:
    """Power the VM off (hard). Returns True when it was on."""
    vm = _vm(session, moref)
    if session.call(lambda: str(vm.runtime.powerState)) == "poweredOff":
        return False
    _task(session, lambda: vm.PowerOffVM_Task(), f"powering off VM {vm.name!r}", timeout)
    return True


def power_on(session: VSphereSession, moref: str, *, timeout: float = 600.0) -> None:
    vm = _vm(session, moref)
    _task(session, lambda: vm.PowerOnVM_Task(), f"powering on VM {vm.name!r}", timeout)


def _reconfigure(session: VSphereSession, moref: str, spec: Any, what: str,
                 timeout: float) -> None:
    vm = _vm(session, moref)
    _task(session, lambda: vm.ReconfigVM_Task(spec=spec), what, timeout)


def grow_disk(session: VSphereSession, moref: str, key: int, capacity: int, *,
              timeout: float = 600.0) -> None:
    """Extend disk ``key`` to ``capacity`` bytes (vSphere cannot shrink a disk)."""
    vm = _vm(session, moref)
    disk = next(d for d in session.call(lambda: list(vm.config.hardware.device))
                if int(d.key) == key)
    disk.capacityInKB = (capacity + 1023) // 1024
    disk.capacityInBytes = capacity
    change = vim.vm.device.VirtualDeviceSpec(  # type: ignore[no-untyped-call]
        operation="edit", device=disk)
    _reconfigure(session, moref, vim.vm.ConfigSpec(  # type: ignore[no-untyped-call]
        deviceChange=[change]), f"growing disk {key} of VM {vm.name!r} to {capacity} bytes",
                 timeout)


def free_slot(session: VSphereSession, moref: str) -> tuple[int, int]:
    """(controller key, unit number) of the first free slot on a SCSI controller."""
    vm = _vm(session, moref)
    devices = session.call(lambda: list(vm.config.hardware.device or []))
    for c in sorted((d for d in devices if isinstance(d, vim.vm.device.VirtualSCSIController)),
                    key=lambda d: int(d.busNumber)):
        used = {int(d.unitNumber) for d in devices
                if int(getattr(d, "controllerKey", 0) or 0) == int(c.key)
                and d.unitNumber is not None}
        for unit in SCSI_UNITS:
            if unit not in used:
                return int(c.key), unit
    raise RestoreTargetError(f"VM {vm.name!r} has no free SCSI slot for another disk; add a "
                             "SCSI controller or free a slot")


def add_disk(session: VSphereSession, moref: str, capacity: int, datastore: str, *,
             timeout: float = 600.0) -> TargetDisk:
    """Add a new empty thin disk of ``capacity`` bytes on the first free SCSI slot."""
    before = {d.key for d in describe_vm(session, moref).disks}
    ckey, unit = free_slot(session, moref)
    _reconfigure(session, moref, vim.vm.ConfigSpec(  # type: ignore[no-untyped-call]
        deviceChange=[_new_disk(-1, ckey, unit, capacity, datastore)]),
        f"adding a {capacity}-byte disk to VM {moref}", timeout)
    added = [d for d in describe_vm(session, moref).disks if d.key not in before]
    if len(added) != 1:
        raise RestoreTargetError(f"VM {moref} does not show the disk just added")
    return added[0]


def reset_cbt(session: VSphereSession, moref: str, *, timeout: float = 600.0) -> bool:
    """Turn Changed Block Tracking off and on again, so that no earlier changeId stays valid
    (writing a disk's file directly bypasses CBT). Returns False when CBT was off."""
    vm = _vm(session, moref)
    if not session.call(lambda: bool(vm.config.changeTrackingEnabled)):
        return False
    for on in (False, True):
        _reconfigure(session, moref, vim.vm.ConfigSpec(  # type: ignore[no-untyped-call]
            changeTrackingEnabled=on), f"{'enabling' if on else 'disabling'} Changed Block "
                     f"Tracking on VM {moref}", timeout)
    return True


def remove_disk(session: VSphereSession, moref: str, key: int, *,
                timeout: float = 600.0) -> None:
    """Detach disk ``key`` and delete its files (takes back a disk a failed restore added)."""
    vm = _vm(session, moref)
    disk = next((d for d in session.call(lambda: list(vm.config.hardware.device))
                 if int(d.key) == key), None)
    if disk is None:
        return
    change = vim.vm.device.VirtualDeviceSpec(  # type: ignore[no-untyped-call]
        operation="remove", fileOperation="destroy", device=disk)
    _reconfigure(session, moref, vim.vm.ConfigSpec(  # type: ignore[no-untyped-call]
        deviceChange=[change]), f"removing disk {key} of VM {moref}", timeout)
