"""The VM test environment shared by the backup and restore tests: DC0_H0_VM0 with a second
disk and non-trivial content in both, a local repository and an in-memory catalog. The
``env`` fixture that builds it is in conftest.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyVmomi import vim

from appliance.jobs.backup import BackupOptions
from appliance.jobs.restore import restore_disk
from appliance.jobs.vm_backup import VmBackupResult, backup_vm
from appliance.repository.repo import Repository
from appliance.vsphere.cbt import flat_file_of, split_datastore_path
from appliance.vsphere.inventory import find_vm
from appliance.vsphere.session import VSphereSession
from catalog.store import Catalog
from tests.helpers import in_ws, session_first

VM = "DC0_H0_VM0"
BS = 256 << 10
DISK1_KB = 8 * 1024  # 8 MiB second disk
OPTIONS = BackupOptions(block_size=BS)


@dataclass
class Env:
    session: VSphereSession
    repo: Repository
    cat: Catalog
    vm: Any
    datastores: dict[str, str]
    logs: list[tuple[str, str]]
    tmp: Path

    def log(self, level: str, msg: str) -> None:
        self.logs.append((level, msg))

    def backup(self, **kw: Any) -> VmBackupResult:
        args: dict[str, Any] = {"enable_cbt_consent": True, "log": self.log}
        args.update(kw)
        return in_ws(self.repo, self.cat, session_first(backup_vm, self.session),
                     VM, OPTIONS, **args)

    def disks(self) -> list[Any]:
        ds = [d for d in self.vm.config.hardware.device
              if isinstance(d, vim.vm.device.VirtualDisk)]
        ctrl = {d.key: d.busNumber for d in self.vm.config.hardware.device
                if isinstance(d, vim.vm.device.VirtualController)}
        return sorted(ds, key=lambda d: (ctrl[d.controllerKey], d.unitNumber))

    def live(self, index: int) -> Path:
        ds, path = split_datastore_path(self.disks()[index].backing.fileName)
        return Path(self.datastores[ds]) / flat_file_of(path)

    def content(self, index: int) -> bytes:
        """The VM's current disk content (what a restore of a point taken now must give)."""
        size = self.disks()[index].capacityInKB * 1024
        data = self.live(index).read_bytes()
        return data[:size] + bytes(max(0, size - len(data)))

    def snapshots(self) -> int:
        def count(nodes: Any) -> int:
            return sum(1 + count(n.childSnapshotList) for n in nodes or [])
        return count(self.vm.snapshot.rootSnapshotList) if self.vm.snapshot else 0

    def restored(self, point: str, index: int) -> bytes:
        out = self.tmp / f"r-{point}-{index}.img"
        in_ws(self.repo, self.cat, restore_disk, point, index, out)
        return out.read_bytes()


def write(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b" if path.exists() else "wb") as f:
        f.seek(offset)
        f.write(data)


def _add_disk(unit: int, kb: int) -> Any:
    disk = vim.vm.device.VirtualDisk(  # type: ignore[no-untyped-call]
        key=-1, controllerKey=202, unitNumber=unit, capacityInKB=kb,
        backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(  # type: ignore[no-untyped-call]
            diskMode="persistent", thinProvisioned=True, fileName=""))
    return vim.vm.device.VirtualDeviceSpec(  # type: ignore[no-untyped-call]
        operation="add", fileOperation="create", device=disk)


def warnings_of(e: Env) -> list[str]:
    return [m for lvl, m in e.logs if lvl == "warning"]


def vm_object(session: VSphereSession, name: str = VM) -> Any:
    """The pyVmomi object of VM ``name`` (tests may walk vim objects; the product may not)."""
    return session.content.searchIndex.FindByUuid(
        None, find_vm(session, name).instance_uuid, True, True)


def snapshot_names(session: VSphereSession, name: str = VM) -> list[str]:
    return [s.name for s in find_vm(session, name).snapshots]
