"""Restore over the original VM through hot-add: the VM's own disks (it is powered off and
has no snapshots, as ``vm_restore.plan_original_vm`` checks) are attached to the
appliance's VM ``persistent``; the point's stored blocks are written at their offsets, and
every area allocated on the disk now but zero in the point is zeroed, so that the disk ends
byte-identical to the point without writing all of it. What is allocated now comes from
Changed Block Tracking (QueryChangedDiskAreas, changeId "*", no snapshot); with CBT off or
not answering, every area that is zero in the point is zeroed (logged). The disks are
detached afterwards, also on failure; ``vm_restore`` resets CBT as after any restore.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Literal

from appliance.jobs.restore import DiskToRestore, read_blocks
from appliance.jobs.workspace import Workspace
from appliance.source import Extent
from appliance.vsphere import restore_target as rt
from appliance.vsphere.cbt import CbtError, changed_areas
from appliance.vsphere.hotadd import HotaddError, attached, check_encrypted, find_appliance
from appliance.vsphere.session import VSphereSession

LogFn = Callable[[str, str], None]
ProgressFn = Callable[[int, int], None]
DiskProgressFn = Callable[[int, int, int], None]  # (disk index in the point, done, its size)
ZERO_CHUNK = 1 << 20
#: How a restore over the original VM writes: a PUT of each flat file to the host that runs
#: it or through the vCenter's /folder, or through disks attached to the appliance VM.
RestoreTransport = Literal["host", "vcenter", "hotadd"]


def zero_areas(allocated: Sequence[Extent], stored: Sequence[int], block_size: int,
               size: int) -> list[Extent]:
    """The parts of ``allocated`` that no stored block (``stored``: block indices of the
    point) covers, clipped to ``size`` (pure)."""
    have = set(stored)
    out: list[Extent] = []
    for a in allocated:
        start, end = a.offset, min(a.offset + a.length, size)
        pos = start
        while pos < end:
            block = pos // block_size
            stop = min(end, (block + 1) * block_size)
            if block not in have:
                if out and out[-1].offset + out[-1].length == pos:
                    out[-1] = Extent(out[-1].offset, out[-1].length + stop - pos)
                else:
                    out.append(Extent(pos, stop - pos))
            pos = stop
    return out


def _allocated_now(session: VSphereSession, vm_moref: str, target: rt.TargetDisk,
                   log: LogFn) -> list[Extent]:
    try:
        return changed_areas(session, vm_moref, None, target.key, target.capacity_bytes, "*")
    except CbtError as exc:
        log("info", f"{target.file_name}: what is allocated now is unknown ({exc}); zeroing "
                    "every area that is zero in the point")
        return [Extent(0, target.capacity_bytes)]


def write_disks(session: VSphereSession, ws: Workspace, vm_moref: str,
                disks: Sequence[tuple[DiskToRestore, rt.TargetDisk]], *, log: LogFn,
                progress: ProgressFn | None = None, appliance_vm: str = "",
                disk_progress: DiskProgressFn | None = None) -> int:
    """Write each point disk into its target disk through hot-add; bytes written.
    ``appliance_vm`` names the appliance's own VM (else ``hotadd.find_appliance`` finds
    it)."""
    appliance = find_appliance(session, appliance_vm or None)
    check_encrypted(appliance, any(t.encrypted for _, t in disks), "the VM's disks are")
    total = sum(d.size for d, _ in disks)
    done = 0
    allocated = {t.file_name: _allocated_now(session, vm_moref, t, log) for _, t in disks}
    with attached(session, [t.file_name for _, t in disks], mode="persistent",
                  log=log, appliance=appliance) as devices:
        for disk, target in disks:
            if target.capacity_bytes != disk.size:
                raise HotaddError(f"target disk {target.file_name} is "
                                  f"{target.capacity_bytes} bytes, the backed-up disk "
                                  f"{disk.disk_index} {disk.size}")
            path = devices[target.file_name]
            fd = os.open(path, os.O_WRONLY)
            try:
                bs = disk.block_size
                for index, data in read_blocks(ws, disk):
                    os.pwrite(fd, data, index * bs)
                    done += len(data)
                    if progress is not None:
                        progress(min(done, total), total)
                    if disk_progress is not None:
                        disk_progress(disk.disk_index, min(disk.size, (index + 1) * bs),
                                      disk.size)
                zeros = zero_areas(allocated[target.file_name],
                                   [p.block_index for p in disk.plan], bs, disk.size)
                zeroed = 0
                for z in zeros:
                    pos = z.offset
                    while pos < z.offset + z.length:
                        n = min(ZERO_CHUNK, z.offset + z.length - pos)
                        os.pwrite(fd, bytes(n), pos)
                        pos += n
                        zeroed += n
                os.fsync(fd)
                if disk_progress is not None:
                    disk_progress(disk.disk_index, disk.size, disk.size)
            except OSError as exc:
                raise HotaddError(f"writing {path} ({target.file_name}) failed: "
                                  f"{exc.strerror}") from None
            finally:
                os.close(fd)
            log("info", f"disk {disk.disk_index}: wrote the point's blocks into "
                        f"{target.file_name} through hot-add and zeroed {zeroed} bytes "
                        f"allocated now but zero in the point ({len(zeros)} area(s))")
    return done
