"""Restore a VM restore point into vSphere: an entire VM to a new VM, an entire VM over the
original VM, or one disk into an existing VM. Plan (pure), then execute.

The plan checks everything that can be checked before vSphere is touched: which disks the
point has, which recorded disks it lacks (a disk the backup skipped), and for the original VM
what will be overwritten. Execution creates or prepares the target, then sends each disk's
bytes, read from the repository and checked block by block.

- A new VM gets the recorded hardware (CPUs, memory, guest OS, controllers, disks at their
  controller bus and unit, so ``--disk N`` means the same disk; NICs on the recorded
  networks, with new MAC addresses unless asked to keep them) and what
  ``vsphere.vm_settings`` decides from the recorded ConfigInfo (hardware version, firmware,
  secure boot, extraConfig, NIC types, disk provisioning; the plan lists it and what cannot
  be recreated, with the reason). It is imported through an NFC lease
  (``appliance.vsphere.nfc_import``): vSphere creates the VM, and each disk goes to the ESXi
  host as a streamOptimized VMDK of the point's stored blocks only (zeros are not sent); a
  dropped upload is sent again for that disk. If any step fails, the new VM is deleted
  again: no half-restored VM is left behind.
- Over the original VM (found by its instance UUID): it must have no snapshots (writing a base
  disk under a snapshot would corrupt the chain), it is powered off, disks the backup had
  larger than now are grown, then overwritten (a PUT of each whole flat file through the
  vCenter's ``/folder``). Its hardware is left as it is. Because the
  disk files were written behind Changed Block Tracking's back, CBT is reset: the next backup
  of that VM reads every allocated area (deduplicated) instead of trusting stale change IDs.
  This cannot be undone, so it needs ``confirm=True`` (the CLI asks).
- One disk into an existing VM: a new thin disk of the backed-up size on its first free SCSI
  slot, then the upload; on failure the added disk is removed again.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from appliance.errors import BadInputError, NotFoundError, UsageError, VmkeepError
from appliance.jobs import hotadd_restore
from appliance.jobs.hotadd_restore import RestoreTransport
from appliance.jobs.restore import (
    DiskToRestore,
    disk_bytes,
    find_point,
    prepare_disk,
    read_blocks,
)
from appliance.jobs.vm_backup import OBJECT_KIND, LogFn
from appliance.jobs.workspace import Workspace
from appliance.progress import human_bytes
from appliance.repository.manifest import Manifest
from appliance.vsphere import restore_target as rt
from appliance.vsphere.disk_access import write_refusal
from appliance.vsphere.host_endpoint import host_of_vm, service_ticket
from appliance.vsphere.inventory import find_vm, find_vm_moref
from appliance.vsphere.nfc_import import ImportDisk, import_new_vm
from appliance.vsphere.session import VSphereSession
from appliance.vsphere.transport import DatastoreEndpoint
from appliance.vsphere.upload import upload_file, upload_to_host
from appliance.vsphere.vm_config import DiskConfig, VmConfig
from appliance.vsphere.vm_settings import NewVmSettings, PlacementNetworks, new_vm_settings

ProgressFn = Callable[[int, int], None]
#: One disk's progress: (its index in the point, bytes of it done, its size).
DiskProgressFn = Callable[[int, int, int], None]
Mode = Literal["new", "original"]


class VmRestoreError(VmkeepError):
    """A VM could not be restored as asked."""

    code = "vm_restore"


@dataclass(frozen=True, slots=True)
class DiskAction:
    """What happens to one disk of the point."""

    index: int  # the disk's number in the point
    size: int
    action: str  # "create" | "overwrite" | "grow"
    bus: int
    unit: int
    target_file: str = ""  # original VM: the file that is overwritten
    target_size: int = 0


@dataclass(frozen=True, slots=True)
class VmRestorePlan:
    point_id: str
    source_vm: str
    mode: Mode
    target_name: str
    disks: tuple[DiskAction, ...]
    target_moref: str | None = None  # original VM
    power_off: bool = False  # original VM: it is on and will be powered off
    warnings: tuple[str, ...] = ()
    settings: NewVmSettings | None = None  # new VM: what it gets and cannot get, and why
    placement: str = ""  # new VM: where it goes (``Placement.described``), "" when unknown

    def describe(self) -> list[str]:
        """Human lines: what the restore will do (the confirmation text)."""
        if self.mode == "new":
            lines = [f"restore point {self.point_id} of VM {self.source_vm!r} to a new VM "
                     f"{self.target_name!r} with {len(self.disks)} disk(s):"]
            if self.placement:
                lines.append(f"  placed on {self.placement}")
            lines += [f"  disk {d.index}: create {d.size} bytes at bus {d.bus} unit {d.unit}"
                      for d in self.disks]
            if self.settings is not None:
                lines += [f"  {line}" for line in self.settings.describe()]
        else:
            lines = [f"restore point {self.point_id} over VM {self.target_name!r} "
                     f"({self.target_moref}): THIS OVERWRITES its disks"]
            if self.power_off:
                lines.append("  the VM is powered on and will be powered off first")
            for d in self.disks:
                grow = (f", grown from {d.target_size} to {d.size} bytes"
                        if d.action == "grow" else "")
                lines.append(f"  disk {d.index}: overwrite {d.target_file}{grow}")
        lines += [f"  warning: {w}" for w in self.warnings]
        return lines


@dataclass(frozen=True, slots=True)
class VmRestoreResult:
    point_id: str
    vm_name: str
    vm_moref: str
    disks: tuple[int, ...]
    bytes_written: int
    seconds: float
    cbt_reset: bool = False
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DiskIntoVmResult:
    point_id: str
    disk_index: int
    vm_name: str
    target_disk: rt.TargetDisk
    bytes_written: int
    seconds: float


def _vm_manifest(ws: Workspace, point_id: str) -> Manifest:
    find_point(ws, point_id)
    manifest = ws.repo.read_manifest(point_id)
    if manifest.object_kind != OBJECT_KIND or not manifest.config.get("disks"):
        raise BadInputError(f"restore point {point_id} is a backup of "
                            f"{manifest.object_kind} {manifest.object_name!r}, not of a VM; "
                            "restore its disks to files instead")
    return manifest


def _recorded(manifest: Manifest) -> tuple[list[tuple[int, DiskConfig, int]], list[str]]:
    """(point disk index, recorded disk config, size) for each disk in the point, and a
    warning for each recorded disk the point lacks."""
    by_key = {d.key: d for d in VmConfig.from_record(manifest.config).disks}
    out: list[tuple[int, DiskConfig, int]] = []
    used: set[int] = set()
    for rec in manifest.disks:
        key = int(rec.meta.get("key", -1))
        cfg = by_key.get(key)
        if cfg is None:
            raise BadInputError(f"disk {rec.index} of point {manifest.point_id} is missing "
                                "from the point's recorded configuration; restore it to a "
                                "file instead")
        used.add(key)
        out.append((rec.index, cfg, rec.size))
    warnings = [f"recorded disk {d.index} ({d.file_name}) is not in this point "
                "(the backup skipped it): the restored VM does not get it"
                for k, d in by_key.items() if k not in used]
    return out, warnings


def plan_new_vm(manifest: Manifest, name: str, *, keep_macs: bool = False,
                networks: PlacementNetworks | None = None,
                placement: rt.Placement | None = None) -> VmRestorePlan:
    """Restore to a new VM named ``name`` (pure). ``networks``: those at the placement (None:
    not checked); ``placement``: where it goes (None: not resolved), its notes as warnings."""
    if not name.strip():
        raise UsageError("give the new VM a name")
    disks, warnings = _recorded(manifest)
    settings = new_vm_settings(VmConfig.from_record(manifest.config), keep_macs=keep_macs,
                               networks=networks, disks=[cfg.key for _i, cfg, _s in disks])
    if placement is not None:
        warnings += placement.notes
    return VmRestorePlan(
        manifest.point_id, manifest.object_name, "new", name,
        tuple(DiskAction(i, size, "create", cfg.bus, cfg.unit)
              for i, cfg, size in disks), warnings=tuple(warnings), settings=settings,
        placement=placement.described if placement is not None else "")


def plan_original_vm(manifest: Manifest, target: rt.TargetVm, *,
                     transport: RestoreTransport = "host") -> VmRestorePlan:
    """Restore over ``target``, the VM the point was taken of (pure). An encrypted disk
    can be written through ``hotadd`` only (the host encrypts what an encrypted appliance VM
    writes); as a file (``host``, ``vcenter``) it cannot."""
    if target.snapshot_count:
        raise VmRestoreError(
            f"VM {target.name!r} has {target.snapshot_count} snapshot(s): overwriting its base "
            "disks under a snapshot would corrupt them; delete its snapshots first, or "
            "restore to a new VM")
    disks, warnings = _recorded(manifest)
    slots = {(d.bus, d.unit): d for d in target.disks}
    actions = []
    for i, cfg, size in disks:
        bus, unit = cfg.bus, cfg.unit
        have = slots.get((bus, unit))
        if have is None:
            raise VmRestoreError(
                f"VM {target.name!r} has no disk at bus {bus} unit {unit}, where disk {i} of "
                f"point {manifest.point_id} was; restore to a new VM, or restore that disk "
                "into the VM")
        if have.backing_type != "FlatVer2BackingInfo":
            raise VmRestoreError(
                f"disk at bus {bus} unit {unit} of VM {target.name!r} has a "
                f"{have.backing_type} backing, not a flat VMDK this restore can write; "
                "restore to a new VM")
        why = ""
        encrypted = have.encrypted and transport != "hotadd"
        if have.datastore_type is not None or encrypted:  # None: its type was not read
            why = write_refusal(have.datastore, have.datastore_type or "", encrypted=encrypted)
        if why:
            hint = ("restore through hot-add (--transport hotadd, an encrypted appliance VM) "
                    "or to a new VM" if encrypted else
                    "restore to a new VM on a VMFS or NFS datastore")
            raise VmRestoreError(
                f"disk at bus {bus} unit {unit} of VM {target.name!r} ({have.file_name}) "
                f"cannot be overwritten by file: {why}; {hint}")
        if have.capacity_bytes > size:
            raise VmRestoreError(
                f"disk at bus {bus} unit {unit} of VM {target.name!r} is "
                f"{have.capacity_bytes} bytes, larger than the backed-up {size}: vSphere "
                "cannot shrink a disk; restore to a new VM")
        actions.append(DiskAction(i, size, "grow" if have.capacity_bytes < size else
                                  "overwrite", bus, unit, have.file_name, have.capacity_bytes))
    return VmRestorePlan(manifest.point_id, manifest.object_name, "original", target.name,
                         tuple(actions), target_moref=target.moref,
                         power_off=target.power_state != "poweredOff",
                         warnings=tuple(warnings))


UploadTransport = Literal["host", "vcenter"]


class _Uploader:
    """Streams disks from the repository to datastore files, counting for progress: on the
    host that runs the target VM (``host``, the default: tickets, pinned certificate) or
    through the vCenter's ``/folder`` (``vcenter``)."""

    def __init__(self, session: VSphereSession, ws: Workspace, total: int,
                 progress: ProgressFn | None, *, vm_moref: str,
                 transport: UploadTransport = "host",
                 disk_progress: DiskProgressFn | None = None) -> None:
        self.session = session
        self.endpoint = DatastoreEndpoint(session.host, session.port, session.cookie,
                                          session.ssl_context, session.fingerprint)
        self.host = host_of_vm(session, vm_moref) if transport == "host" else None
        self.ws = ws
        self.total = total
        self.done = 0
        self.progress = progress
        self.disk_progress = disk_progress

    @property
    def where(self) -> str:
        """For the log: where the bytes went."""
        if self.host is not None:
            return f"written on host {self.host.name}"
        return "written through the vCenter"

    def upload(self, disk: DiskToRestore, datacenter: str, target: rt.TargetDisk) -> int:
        if target.capacity_bytes != disk.size:
            raise VmRestoreError(f"target disk {target.file_name} is {target.capacity_bytes} "
                                 f"bytes, the backed-up disk {disk.disk_index} {disk.size}")
        before = self.done

        def report(sent: int) -> None:
            self.done = before + sent
            if self.progress is not None:
                self.progress(self.done, self.total)
            if self.disk_progress is not None:
                self.disk_progress(disk.disk_index, sent, disk.size)

        if self.host is not None:
            session = self.session
            return upload_to_host(self.host, lambda url: service_ticket(session, url, "PUT"),
                                  target.datastore, target.flat_path, disk.size,
                                  disk_bytes(self.ws, disk), progress=report)
        return upload_file(self.endpoint, datacenter, target.datastore, target.flat_path,
                           disk.size, disk_bytes(self.ws, disk), progress=report)


def _allocated(ws: Workspace, disk: DiskToRestore) -> Iterator[tuple[int, bytes]]:
    """(byte offset, data) of each stored block of ``disk``, ascending: what an NFC import
    sends (blocks not stored are zeros, and are not sent)."""
    for index, data in read_blocks(ws, disk):
        yield index * disk.block_size, data


def _extents(disk: DiskToRestore) -> tuple[tuple[int, int], ...]:
    """The byte extents ``_allocated`` gives, from the block map alone."""
    bs = disk.block_size
    return tuple((b.block_index * bs, min(bs, disk.size - b.block_index * bs))
                 for b in disk.plan)


def plan_restore_new(ws: Workspace, point_id: str,
                     name: str, *, keep_macs: bool = False,
                     networks: PlacementNetworks | None = None,
                     placement: rt.Placement | None = None) -> VmRestorePlan:
    """The plan for a restore of ``point_id`` to a new VM named ``name`` (reads only)."""
    return plan_new_vm(_vm_manifest(ws, point_id), name, keep_macs=keep_macs,
                       networks=networks, placement=placement)


def new_vm_placement(session: VSphereSession, ws: Workspace, point_id: str, *,
                     datacenter: str | None = None, host: str | None = None,
                     resource_pool: str | None = None, datastore: str | None = None,
                     folder: str | None = None) -> rt.Placement:
    """Where a new VM restored from ``point_id`` goes: the names given, else where the
    original VM was (recorded with the point) as far as that still exists, else the
    defaults (``restore_target.resolve_placement``)."""
    config = VmConfig.from_record(_vm_manifest(ws, point_id).config)
    return rt.resolve_placement(session, datacenter=datacenter, host=host,
                                resource_pool=resource_pool, datastore=datastore,
                                folder=folder, original=config.placement)


def new_vm_networks(session: VSphereSession, placement: rt.Placement) -> PlacementNetworks:
    """The networks at ``placement`` (for the plan)."""
    return rt.placement_networks(session, placement)


def _prepare(ws: Workspace, plan: VmRestorePlan) -> dict[int, DiskToRestore]:
    return {d.index: prepare_disk(ws, plan.point_id, d.index) for d in plan.disks}


def restore_new_vm(session: VSphereSession, ws: Workspace, point_id: str,
                   name: str, *, datacenter: str | None = None, host: str | None = None,
                   resource_pool: str | None = None, datastore: str | None = None,
                   folder: str | None = None, keep_macs: bool = False,
                   network_map: Mapping[str, str] | None = None,
                   power_on: bool = False, log: LogFn,
                   progress: ProgressFn | None = None,
                   disk_progress: DiskProgressFn | None = None) -> VmRestoreResult:
    """Create a new VM like the one in ``point_id`` and fill its disks. ``network_map``: an
    original network's name -> the network at the placement its NICs go on instead. The
    caller holds a shared repository lock and has synchronised the catalog."""
    started = time.monotonic()
    plan = plan_restore_new(ws, point_id, name)
    manifest = ws.repo.read_manifest(point_id)
    for w in plan.warnings:
        log("warning", w)
    disks = _prepare(ws, plan)
    config = VmConfig.from_record(manifest.config)
    placement = rt.resolve_placement(session, datacenter=datacenter, host=host,
                                     resource_pool=resource_pool, datastore=datastore,
                                     folder=folder, original=config.placement)
    for note in placement.notes:
        log("warning", note)
    log("info", f"the new VM {name!r} goes on {placement.described}")
    why = write_refusal(placement.datastore, placement.datastore_type)
    if why:
        raise VmRestoreError(f"cannot restore VM {name!r} there, nothing was created: {why}; "
                             "choose a VMFS or NFS datastore (--datastore)")
    by_key = {d.key: d for d in config.disks}
    recorded = [by_key[int(rec.meta["key"])] for rec in manifest.disks]
    sized = [replace(cfg, capacity_bytes=rec.size)
             for cfg, rec in zip(recorded, manifest.disks, strict=True)]
    networks = rt.placement_networks(session, placement).mapped(network_map or {})
    for u in new_vm_settings(config, keep_macs=keep_macs, networks=networks,
                             disks=[d.key for d in sized]).cannot:
        log("warning", f"the new VM cannot {u.describe()}")
    total = sum(d.size for d in plan.disks)
    done: dict[tuple[int, int], int] = {}

    at_slot = {(a.bus, a.unit): a for a in plan.disks}

    def slot_progress(bus: int, unit: int, n: int) -> None:
        done[(bus, unit)] = n
        if progress is not None:
            progress(sum(done.values()), total)
        if disk_progress is not None:
            action = at_slot[(bus, unit)]
            disk_progress(action.index, min(n, action.size), action.size)

    sources = [ImportDisk(a.bus, a.unit, a.size, _extents(disks[a.index]),
                          functools.partial(_allocated, ws, disks[a.index]))
               for a in plan.disks]
    moref = ""
    try:
        imported = import_new_vm(session, placement, config, sized, name, keep_macs=keep_macs,
                                 networks=networks, sources=sources, progress=slot_progress)
        moref = imported.vm_moref
        log("info", f"created VM {name!r} ({moref}) on host {placement.host!r}, datastore "
                    f"{placement.datastore!r} (imported through an NFC lease)")
        target = rt.describe_vm(session, moref)
        slots = {(d.bus, d.unit): d for d in target.disks}
        sent = {(d.bus, d.unit): d.bytes_sent for d in imported.disks}
        for action in plan.disks:
            tdisk = slots.get((action.bus, action.unit))
            if tdisk is None:
                raise VmRestoreError(f"the new VM {name!r} has no disk at bus {action.bus} "
                                     f"unit {action.unit} for disk {action.index}")
            log("info", f"disk {action.index}: {human_bytes(action.size)} written to "
                        f"{tdisk.file_name} "
                        f"({human_bytes(sent.get((action.bus, action.unit), 0))} sent)")
        written = total
        if power_on:
            rt.power_on(session, moref)
            log("info", f"powered on VM {name!r}")
    except BaseException as exc:
        log("error", f"restore to new VM {name!r} failed ({exc}); deleting the half-restored "
                     "VM")
        if moref:  # the import itself aborts its lease, which deletes the VM it created
            try:
                rt.destroy_vm(session, moref)
            except VmkeepError as cleanup:
                log("error", f"deleting VM {name!r} ({moref}) failed too: {cleanup}; "
                             "delete it by hand")
        raise
    return VmRestoreResult(point_id, name, moref, tuple(d.index for d in plan.disks),
                           written, time.monotonic() - started, warnings=plan.warnings)


def plan_restore_original(session: VSphereSession, ws: Workspace, point_id: str, *,
                          transport: RestoreTransport = "host") -> VmRestorePlan:
    """The plan for a restore over the original VM through ``transport`` (reads only): show
    ``describe()`` to the person who has to confirm it."""
    manifest = _vm_manifest(ws, point_id)
    uuid = manifest.object_uuid or str(manifest.config.get("instance_uuid") or "")
    moref = find_vm_moref(session, uuid) if uuid else None
    if moref is None:
        raise NotFoundError(f"the original VM {manifest.object_name!r} (instance UUID {uuid}) "
                            f"no longer exists on {session.host}; restore to a new VM")
    return plan_original_vm(manifest, rt.describe_vm(session, moref), transport=transport)


def restore_original_vm(session: VSphereSession, ws: Workspace,
                        plan: VmRestorePlan, *, confirm: bool, power_on: bool = False,
                        transport: RestoreTransport = "host", log: LogFn,
                        progress: ProgressFn | None = None,
                        appliance_vm: str = "",
                        disk_progress: DiskProgressFn | None = None) -> VmRestoreResult:
    """Carry out ``plan`` (from ``plan_restore_original``): power off, grow, overwrite, reset
    CBT. Refuses without ``confirm``; refuses if the VM changed since the plan. ``transport``
    "hotadd" writes through disks attached to the appliance VM (``jobs.hotadd_restore``)."""
    started = time.monotonic()
    if plan.mode != "original" or plan.target_moref is None:
        raise UsageError("restore_original_vm needs a plan for the original VM")
    if not confirm:
        raise UsageError("restoring over the original VM overwrites its disks and cannot be "
                         "undone: confirm it (--yes) or restore to a new VM")
    disks = _prepare(ws, plan)
    manifest = ws.repo.read_manifest(plan.point_id)
    now = plan_original_vm(manifest, rt.describe_vm(session, plan.target_moref),
                           transport=transport)
    if [(d.bus, d.unit, d.action, d.target_file) for d in now.disks] != \
            [(d.bus, d.unit, d.action, d.target_file) for d in plan.disks]:
        raise VmRestoreError(f"VM {plan.target_name!r} changed since the restore was planned; "
                             "plan and confirm it again")
    for w in plan.warnings:
        log("warning", w)
    if rt.power_off(session, plan.target_moref):
        log("info", f"powered off VM {plan.target_name!r}")
    for d in plan.disks:
        if d.action == "grow":
            key = next(t.key for t in rt.describe_vm(session, plan.target_moref).disks
                       if (t.bus, t.unit) == (d.bus, d.unit))
            rt.grow_disk(session, plan.target_moref, key, d.size)
            log("info", f"disk {d.index}: grown from {human_bytes(d.target_size)} to "
                        f"{human_bytes(d.size)}")
    target = rt.describe_vm(session, plan.target_moref)
    slots = {(t.bus, t.unit): t for t in target.disks}
    written = 0
    if transport == "hotadd":
        written = hotadd_restore.write_disks(
            session, ws, plan.target_moref,
            [(disks[d.index], slots[(d.bus, d.unit)]) for d in plan.disks],
            log=log, progress=progress, appliance_vm=appliance_vm,
            disk_progress=disk_progress)
    else:
        uploader = _Uploader(session, ws, sum(d.size for d in plan.disks), progress,
                             vm_moref=plan.target_moref,
                             transport="vcenter" if transport == "vcenter" else "host",
                             disk_progress=disk_progress)
        for d in plan.disks:
            written += uploader.upload(disks[d.index], target.datacenter_path,
                                       slots[(d.bus, d.unit)])
            log("info", f"disk {d.index}: overwrote {d.target_file} ({human_bytes(d.size)}, "
                        f"{uploader.where})")
    reset = rt.reset_cbt(session, plan.target_moref)
    if reset:
        log("info", f"reset Changed Block Tracking on VM {plan.target_name!r}: its next backup "
                    "reads every allocated area (deduplicated)")
    if power_on:
        rt.power_on(session, plan.target_moref)
        log("info", f"powered on VM {plan.target_name!r}")
    return VmRestoreResult(plan.point_id, plan.target_name, plan.target_moref,
                           tuple(d.index for d in plan.disks), written,
                           time.monotonic() - started, cbt_reset=reset,
                           warnings=plan.warnings)


def restore_disk_into_vm(session: VSphereSession, ws: Workspace,
                         point_id: str, disk_index: int, vm_name_or_uuid: str, *,
                         datastore: str | None = None, transport: UploadTransport = "host",
                         log: LogFn, progress: ProgressFn | None = None) -> DiskIntoVmResult:
    """Add disk ``disk_index`` of ``point_id`` to an existing VM as a new disk."""
    started = time.monotonic()
    disk = prepare_disk(ws, point_id, disk_index)
    info = find_vm(session, vm_name_or_uuid)
    target = rt.describe_vm(session, info.moref)
    ds = datastore or (target.disks[0].datastore if target.disks else None)
    if ds is None:
        raise UsageError(f"VM {info.name!r} has no disk to take a datastore from: name one "
                         "with --datastore")
    why = write_refusal(ds, rt.datastore_type(session, target.datacenter, ds))
    if why:
        raise VmRestoreError(f"cannot add disk {disk_index} to VM {info.name!r} on datastore "
                             f"{ds!r}, nothing was changed: {why}; choose a VMFS or NFS "
                             "datastore (--datastore)")
    added = rt.add_disk(session, info.moref, disk.size, ds)
    log("info", f"added disk {added.index} ({added.file_name}, {disk.size} bytes) to VM "
                f"{info.name!r} at bus {added.bus} unit {added.unit}")
    try:
        uploader = _Uploader(session, ws, disk.size, progress, vm_moref=info.moref,
                             transport=transport)
        written = uploader.upload(disk, target.datacenter_path, added)
    except BaseException as exc:
        log("error", f"writing disk {disk_index} into VM {info.name!r} failed ({exc}); "
                     "removing the added disk")
        with contextlib.suppress(VmkeepError):
            rt.remove_disk(session, info.moref, added.key)
        raise
    log("info", f"disk {disk_index} of point {point_id}: {written} bytes {uploader.where} "
                f"to {added.file_name}")
    return DiskIntoVmResult(point_id, disk_index, info.name, added, written,
                            time.monotonic() - started)

