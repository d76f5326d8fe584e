"""Changed Block Tracking: a snapshot's disks and the areas that changed since a changeId.

Takes a session and moref ids (``SnapshotRef``); returns vmkeep's frozen data (``Extent``,
``SnapshotDisk``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from pyVmomi import vim, vmodl

from appliance.errors import VSphereError
from appliance.source import Extent
from appliance.vsphere._vim import snapshot_object, type_name, vm_object
from appliance.vsphere.session import VSphereSession
from appliance.vsphere.snapshot import SnapshotRef

ALL_ALLOCATED = "*"


class CbtError(VSphereError):
    """Changed Block Tracking could not answer."""

    code = "cbt"


class CbtInvalid(CbtError):
    """The changeId (or device/offset) is unknown to vSphere: read the whole disk instead."""

    code = "cbt_invalid"


class CbtNotEnabled(CbtError):
    """CBT is off for the VM (or not supported for the disk)."""

    code = "cbt_not_enabled"


@dataclass(frozen=True, slots=True)
class SnapshotDisk:
    """A virtual disk as the snapshot's own configuration names it (its frozen base)."""

    key: int
    file_name: str
    capacity_bytes: int
    change_id: str | None
    backing_type: str
    bus: int
    unit: int

    @property
    def datastore(self) -> str:
        return split_datastore_path(self.file_name)[0]

    @property
    def path(self) -> str:
        return split_datastore_path(self.file_name)[1]


def split_datastore_path(ds_path: str) -> tuple[str, str]:
    """``"[LocalDS_0] vm/disk1.vmdk"`` -> ``("LocalDS_0", "vm/disk1.vmdk")``."""
    if not ds_path.startswith("[") or "]" not in ds_path:
        raise CbtError(f"{ds_path!r} is not a datastore path like '[datastore] folder/file.vmdk'")
    name, _, rest = ds_path[1:].partition("]")
    return name, rest.strip()


def flat_file_of(path: str) -> str:
    """The data file of a flat disk: ``folder/disk1.vmdk`` -> ``folder/disk1-flat.vmdk``."""
    if path.endswith("-flat.vmdk"):
        return path
    if path.endswith(".vmdk"):
        return path[: -len(".vmdk")] + "-flat.vmdk"
    return path


def snapshot_disks(session: VSphereSession, snapshot: SnapshotRef) -> list[SnapshotDisk]:
    """The virtual disks of ``snapshot``, ordered by (controller bus, unit number): the index
    in this list is vmkeep's disk number."""
    snap = snapshot_object(session, snapshot.moref)
    try:
        devices = session.call(lambda: list(snap.config.hardware.device or []))
    except vmodl.MethodFault as exc:
        raise CbtError(f"reading the configuration of snapshot {snap._moId} failed "
                       f"({type(exc).__name__})") from exc
    controllers = {d.key: d for d in devices
                   if isinstance(d, vim.vm.device.VirtualController)}
    disks: list[SnapshotDisk] = []
    for d in devices:
        if not isinstance(d, vim.vm.device.VirtualDisk):
            continue
        ctrl = controllers.get(int(d.controllerKey or 0))
        bus = int(getattr(ctrl, "busNumber", 0) or 0)
        capacity = int(d.capacityInBytes or 0) or int(d.capacityInKB or 0) * 1024
        backing = d.backing
        disks.append(SnapshotDisk(
            key=int(d.key),
            file_name=str(getattr(backing, "fileName", "") or ""),
            capacity_bytes=capacity,
            change_id=getattr(backing, "changeId", None) or None,
            backing_type=type_name(backing),
            bus=bus,
            unit=int(d.unitNumber or 0),
        ))
    disks.sort(key=lambda s: (s.bus, s.unit, s.key))
    return disks


def merge_extents(extents: list[Extent]) -> list[Extent]:
    """Sorted, with touching or overlapping extents joined."""
    out: list[Extent] = []
    for e in sorted(extents):
        if e.length <= 0:
            continue
        if out and out[-1].end >= e.offset:
            last = out[-1]
            out[-1] = Extent(last.offset, max(last.end, e.end) - last.offset)
        else:
            out.append(e)
    return out


def changed_areas(session: VSphereSession, vm_moref: str, snapshot: SnapshotRef | None,
                  device_key: int, capacity: int, change_id: str) -> list[Extent]:
    """Areas of disk ``device_key`` of VM ``vm_moref`` changed since ``change_id`` ("*": all
    allocated areas), at ``snapshot`` (None: the live disk). Pages with startOffset until
    ``capacity`` is covered. Raises CbtInvalid (fall back to a full read) or CbtNotEnabled."""
    vm = vm_object(session, vm_moref)
    snap = snapshot_object(session, snapshot.moref) if snapshot is not None else None
    got: list[Extent] = []
    offset = 0
    while offset < capacity:
        try:
            reply = session.call(functools.partial(
                vm.QueryChangedDiskAreas, snapshot=snap, deviceKey=device_key,
                startOffset=offset, changeId=change_id))
        except vmodl.fault.InvalidArgument as exc:
            prop = getattr(exc, "invalidProperty", None) or "an argument"
            raise CbtInvalid(f"vSphere rejected {prop} in the CBT query for disk {device_key} "
                             f"(changeId {change_id!r}, offset {offset}); a full read is "
                             "needed") from exc
        except vmodl.fault.NotSupported as exc:
            raise CbtNotEnabled(f"Changed Block Tracking is not enabled for disk {device_key} "
                                "of this VM; enable it (a full read is needed this time)"
                                ) from exc
        except vmodl.MethodFault as exc:
            raise CbtError(f"the CBT query for disk {device_key} failed "
                           f"({type(exc).__name__})") from exc
        start, length = int(reply.startOffset), int(reply.length)
        if start != offset or length <= 0:
            raise CbtInvalid(f"the CBT reply for disk {device_key} covers [{start}, "
                             f"{start + length}) where offset {offset} was asked; a full read "
                             "is needed")
        for area in reply.changedArea or []:
            s, n = int(area.start), int(area.length)
            s, e = max(s, offset), min(s + n, capacity)
            if e > s:
                got.append(Extent(s, e - s))
        offset = start + length
    return merge_extents(got)
