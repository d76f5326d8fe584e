"""Hot-add: the appliance reads a VM's disks as block devices of its own VM.

The appliance finds its own VM (``find_appliance``: the BIOS UUID the firmware reports, in
``/sys/class/dmi/id/product_uuid``, or the VM named by ``$VMKEEP_APPLIANCE_VM``), attaches
the disks (``attached``: one ReconfigVM adding each as an existing file on a free unit of
its SCSI controllers, no fileOperation), finds each new block device as the guest sees it
(``/dev/disk/by-id/wwn-0x<backing.uuid>``, or sysfs: the SCSI device whose ``wwid`` is
``naa.<backing.uuid>``), and detaches them afterwards (ReconfigVM remove, never with
``fileOperation=destroy``: the files belong to the VM being read), also when the work
fails. Disks attached for a backup are ``independent_nonpersistent`` (writes, if any, go to
a redo log that is discarded: the source never changes); a restore attaches ``persistent``.

A real appliance needs a paravirtual or LSI Logic SCSI controller with free units (0–15,
not 7) and ``disk.EnableUUID`` so that the guest sees each disk's UUID; it must run on a
host that sees the datastores. After a crash, the Snapshot Hunter detaches disks of other
VMs left on the appliance VM (``foreign_disks``).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pyVmomi import vim, vmodl

from appliance.vsphere._vim import fault_text, vm_object, wait_for_task
from appliance.vsphere.inventory import VmInfo, VmNotFoundError, find_vm
from appliance.vsphere.session import VSphereSession
from appliance.vsphere.transport import TransportError

APPLIANCE_VM_ENV = "VMKEEP_APPLIANCE_VM"  # the appliance VM's name or BIOS UUID
BY_ID_ENV = "VMKEEP_HOTADD_BY_ID"  # where by-id links are looked up (tests: the simulator's)
DMI_UUID = "/sys/class/dmi/id/product_uuid"
BY_ID_DIR = "/dev/disk/by-id"
SYSFS = "/sys"
DEVICE_WAIT = 30.0  # seconds for an attached disk's device to appear
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
                   r"[0-9a-fA-F]{12}$")

DiskMode = Literal["independent_nonpersistent", "persistent"]
LogFn = Callable[[str, str], None]


class HotaddError(TransportError):
    """Hot-add could not attach, find or detach a disk."""


@dataclass(frozen=True, slots=True)
class ApplianceVm:
    moref: str
    name: str
    folder: str  # "[ds] folder" of its .vmx
    encrypted: bool  # config.keyId: only an encrypted VM may have encrypted disks attached


@dataclass(frozen=True, slots=True)
class AttachedDisk:
    """A disk attached to the appliance VM: the file, its device key there, its UUID."""

    file_name: str
    key: int
    uuid: str
    bus: int
    unit: int


def uuid_forms(smbios: str) -> tuple[str, ...]:
    """The BIOS UUID as DMI reports it and with its first three fields byte-swapped (SMBIOS
    2.6+ stores them little-endian; VMware's ``config.uuid`` may be either)."""
    s = smbios.strip().lower()
    if not _UUID.match(s):
        return ()
    h = s.replace("-", "")

    def swap(part: str) -> str:
        return "".join(reversed([part[i:i + 2] for i in range(0, len(part), 2)]))

    swapped = swap(h[:8]) + swap(h[8:12]) + swap(h[12:16]) + h[16:]

    def dashed(x: str) -> str:
        return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"

    return tuple(dict.fromkeys((dashed(h), dashed(swapped))))


def _describe(session: VSphereSession, vm: Any) -> ApplianceVm:
    name, path, key_id = session.call(
        lambda: (vm.name, vm.config.files.vmPathName, vm.config.keyId))
    return ApplianceVm(vm._moId, str(name), str(path).rsplit("/", 1)[0], key_id is not None)


def _find_by_uuid(session: VSphereSession, index: Any, uuid: str) -> Any:
    return session.call(lambda: index.FindByUuid(None, uuid, True, False))


def find_appliance(session: VSphereSession, override: str | None = None) -> ApplianceVm:
    """The VM this appliance runs in: ``override`` (or ``$VMKEEP_APPLIANCE_VM``: a VM name
    or BIOS UUID), else the BIOS UUID in DMI (readable by root only)."""
    given = override or os.environ.get(APPLIANCE_VM_ENV, "").strip()
    index = session.si.content.searchIndex
    if given and not uuid_forms(given):
        try:
            return _describe(session, vm_object(session, find_vm(session, given).moref))
        except VmNotFoundError as exc:
            raise HotaddError(f"hot-add: the appliance VM {given!r} ({APPLIANCE_VM_ENV}) was "
                              f"not found: {exc}") from None
    if given:
        forms, source = uuid_forms(given), f"{APPLIANCE_VM_ENV}={given}"
    else:
        try:
            forms, source = uuid_forms(Path(DMI_UUID).read_text()), DMI_UUID
        except OSError as exc:
            raise HotaddError(
                f"hot-add needs to know the appliance's own VM: {DMI_UUID} cannot be read "
                f"({exc.strerror}; it is readable by root only) — run the appliance as root "
                f"in its VM, or name the VM in {APPLIANCE_VM_ENV} (its name or BIOS UUID)"
            ) from None
    for uuid in forms:
        vm = _find_by_uuid(session, index, uuid)
        if vm is not None:
            return _describe(session, vm)
    raise HotaddError(f"hot-add: no VM on {session.host} has the BIOS UUID of {source} "
                      f"(tried {', '.join(forms) or 'none: not a UUID'}); the appliance must "
                      f"run in a VM of this vCenter, or name it in {APPLIANCE_VM_ENV}")


def check_encrypted(appliance: ApplianceVm, encrypted: bool, what: str) -> None:
    """Refuse to attach encrypted disks (``encrypted``) to an appliance VM that is not
    encrypted itself: ESXi attaches an encrypted disk only to an encrypted VM."""
    if encrypted and not appliance.encrypted:
        raise HotaddError(f"hot-add: {what} encrypted, and ESXi attaches an encrypted disk "
                          f"only to an encrypted VM: the appliance VM {appliance.name!r} has "
                          "no config.keyId (encrypt it with the same key provider, or use "
                          "another way)")


def _devices(session: VSphereSession, appliance: ApplianceVm) -> list[Any]:
    vm = vm_object(session, appliance.moref)
    return list(session.call(lambda: vm.config.hardware.device) or [])


def _free_units(devices: Sequence[Any]) -> list[tuple[int, int, int]]:
    """(controller key, bus, unit) of each free unit of the SCSI controllers, in order."""
    used = {(d.controllerKey, d.unitNumber) for d in devices
            if getattr(d, "unitNumber", None) is not None}
    out = []
    for c in sorted((d for d in devices if isinstance(d, vim.vm.device.VirtualSCSIController)),
                    key=lambda c: c.busNumber):
        own = c.scsiCtlrUnitNumber if c.scsiCtlrUnitNumber is not None else 7
        out += [(c.key, c.busNumber, u) for u in range(16)
                if u not in (7, own) and (c.key, u) not in used]
    return out


def _reconfigure(session: VSphereSession, appliance: ApplianceVm, changes: list[Any],
                 what: str) -> None:
    vm = vm_object(session, appliance.moref)
    spec = vim.vm.ConfigSpec(deviceChange=changes)  # type: ignore[no-untyped-call]
    try:
        task = session.call(lambda: vm.ReconfigVM_Task(spec=spec))
        wait_for_task(task, 600.0, what=what, session=session)
    except vmodl.MethodFault as exc:
        raise HotaddError(f"{what} was refused ({fault_text(exc)})") from None


def attach(session: VSphereSession, appliance: ApplianceVm, files: Sequence[str],
           mode: DiskMode) -> list[AttachedDisk]:
    """Attach each existing disk file in ``files`` to the appliance VM (one ReconfigVM)."""
    devices = _devices(session, appliance)
    slots = _free_units(devices)
    if len(slots) < len(files):
        ctrls = [f"{type(d).__name__} bus {d.busNumber}" for d in devices
                 if isinstance(d, vim.vm.device.VirtualSCSIController)]
        raise HotaddError(f"hot-add: the appliance VM {appliance.name!r} has "
                          f"{len(slots)} free SCSI unit(s) for {len(files)} disk(s) (SCSI "
                          f"controllers: {', '.join(ctrls) or 'none'}); add a paravirtual "
                          "or LSI Logic SCSI controller to it")
    changes = []
    for n, (file_name, (ckey, _bus, unit)) in enumerate(zip(files, slots, strict=False)):
        backing = vim.vm.device.VirtualDisk.FlatVer2BackingInfo(  # type: ignore[no-untyped-call]
            fileName=file_name, diskMode=mode)
        disk = vim.vm.device.VirtualDisk(  # type: ignore[no-untyped-call]
            key=-100 - n, controllerKey=ckey, unitNumber=unit, backing=backing)
        changes.append(vim.vm.device.VirtualDeviceSpec(  # type: ignore[no-untyped-call]
            operation="add", device=disk))
    _reconfigure(session, appliance, changes,
                 f"attaching {len(files)} disk(s) to the appliance VM {appliance.name!r}")
    return attached_disks(session, appliance, files)


def attached_disks(session: VSphereSession, appliance: ApplianceVm,
                   files: Sequence[str]) -> list[AttachedDisk]:
    """The appliance VM's disks whose backing file is one of ``files``."""
    devices: list[Any] = _devices(session, appliance)
    bus = {d.key: d.busNumber for d in devices
           if isinstance(d, vim.vm.device.VirtualController)}
    out = []
    for d in devices:
        name = getattr(getattr(d, "backing", None), "fileName", None)
        if isinstance(d, vim.vm.device.VirtualDisk) and name in files:
            out.append(AttachedDisk(str(name), d.key, str(getattr(d.backing, "uuid", "") or ""),
                                    bus.get(d.controllerKey or 0, -1), int(d.unitNumber or 0)))
    return out


def detach(session: VSphereSession, appliance: ApplianceVm, disks: Sequence[AttachedDisk]
           ) -> None:
    """Remove the disks from the appliance VM, their files left as they are."""
    if not disks:
        return
    changes = []
    for d in disks:
        dev = vim.vm.device.VirtualDisk(key=d.key)  # type: ignore[no-untyped-call]
        changes.append(vim.vm.device.VirtualDeviceSpec(  # type: ignore[no-untyped-call]
            operation="remove", device=dev))  # no fileOperation: never destroy
    _reconfigure(session, appliance, changes,
                 f"detaching {len(disks)} disk(s) from the appliance VM {appliance.name!r}")


def device_of(disk: AttachedDisk, *, by_id: str | None = None, sysfs: str = SYSFS,
              wait: float | None = None) -> str:
    """The block device of an attached disk, waited for (polled) up to ``wait`` seconds:
    ``by_id``/wwn-0x<uuid> or scsi-3<uuid>, else the sysfs SCSI device whose wwid is it."""
    wait = DEVICE_WAIT if wait is None else wait
    hexid = disk.uuid.replace("-", "").lower()
    if not hexid:
        raise HotaddError(f"hot-add: disk {disk.file_name} has no backing.uuid to find it by")
    by_id = by_id or os.environ.get(BY_ID_ENV) or BY_ID_DIR
    names = [f"{by_id}/wwn-0x{hexid}", f"{by_id}/scsi-3{hexid}"]
    deadline = time.monotonic() + wait
    delay = 0.02
    while True:
        for p in names:
            if os.path.exists(p):
                return p
        found = _sysfs_device(sysfs, hexid)
        if found:
            return found
        if time.monotonic() >= deadline:
            raise HotaddError(f"hot-add: disk {disk.file_name} (uuid {disk.uuid}, SCSI "
                              f"{disk.bus}:{disk.unit}) did not appear as {names[0]} or in "
                              f"{sysfs}/class/scsi_device within {wait:g} s (the appliance "
                              "VM needs disk.EnableUUID=TRUE)")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def _sysfs_device(sysfs: str, hexid: str) -> str:
    root = Path(sysfs) / "class" / "scsi_device"
    try:
        entries = list(root.iterdir())
    except OSError:
        return ""
    for e in entries:
        try:
            wwid = (e / "device" / "wwid").read_text().strip().lower()
            if wwid.replace("naa.", "") == hexid:
                blocks = list((e / "device" / "block").iterdir())
                if blocks:
                    return f"/dev/{blocks[0].name}"
        except OSError:
            continue
    return ""


@contextmanager
def attached(session: VSphereSession, files: Sequence[str], *, mode: DiskMode, log: LogFn,
             appliance: ApplianceVm | None = None) -> Iterator[dict[str, str]]:
    """Attach ``files`` to the appliance VM and yield {file: block device}; detach them when
    done, also on failure (a failed detach is logged; the Snapshot Hunter finds it)."""
    app = appliance or find_appliance(session)
    disks: list[AttachedDisk] = []
    try:
        disks = attach(session, app, files, mode)
        log("info", f"hot-add: attached {len(disks)} disk(s) to the appliance VM {app.name!r} "
                    f"({mode}): " + ", ".join(f"{d.file_name} at SCSI {d.bus}:{d.unit}"
                                              for d in disks))
        yield {d.file_name: device_of(d) for d in disks}
    finally:
        # What is attached now (an attach that failed half-way included).
        now: list[AttachedDisk] = []
        try:
            now = attached_disks(session, app, files) if files else []
            detach(session, app, now)
        except (HotaddError, vmodl.MethodFault) as exc:
            log("error", f"hot-add: detaching from the appliance VM {app.name!r} failed "
                         f"({exc}); the Snapshot Hunter detaches them on its next run")
        else:
            if now:
                log("info", f"hot-add: detached {len(now)} disk(s) from the appliance VM "
                            f"{app.name!r}")


@dataclass(frozen=True, slots=True)
class ForeignDisk:
    """A disk of another VM attached to the appliance VM (hot-add left by a crashed run)."""

    file_name: str
    key: int
    owner: str  # the VM whose folder holds the file


def folder_of(file_name: str) -> str:
    """``[ds] vm/disk.vmdk`` → ``[ds] vm``."""
    return file_name.rsplit("/", 1)[0] if "/" in file_name else file_name


def foreign_disks(appliance: ApplianceVm, vms: Sequence[VmInfo]) -> list[ForeignDisk]:
    """The appliance VM's disks whose file lies in another VM's folder, not in its own
    (pure): what hot-add attaches. Its own disks, wherever they are, are never listed."""
    owners: dict[str, str] = {}
    for vm in vms:
        if vm.moref != appliance.moref:
            for d in vm.disks:
                owners.setdefault(folder_of(d.file_name), vm.name)
    me = next((vm for vm in vms if vm.moref == appliance.moref), None)
    if me is None:
        return []
    return [ForeignDisk(d.file_name, d.key, owners[folder_of(d.file_name)]) for d in me.disks
            if folder_of(d.file_name) != appliance.folder and folder_of(d.file_name) in owners]


def detach_key(session: VSphereSession, appliance: ApplianceVm, key: int, file_name: str
               ) -> bool:
    """Detach the appliance VM's disk ``key`` if it still is ``file_name``; False when it
    was gone already."""
    now = [d for d in attached_disks(session, appliance, [file_name]) if d.key == key]
    detach(session, appliance, now)
    return bool(now)
