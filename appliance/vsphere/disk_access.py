"""Whether vmkeep can read a disk's bytes as a file, decided before any snapshot (pure: no
vSphere call; the facts come from ``inventory.VmInfo``).

vmkeep reads a disk's flat data file through the datastore's ``/folder`` (or, with the
"direct" transport, a mounted folder). That works only where the disk *is* a file holding
plain bytes. ``DATASTORE_KINDS`` is the rule, by the datastore's ``summary.type`` (vSphere
API: ``HostFileSystemVolumeFileSystemType``):

- **VMFS, NFS, NFS41**: disks are a descriptor ``.vmdk`` and a ``-flat.vmdk`` extent file:
  readable.
- **OTHER**: vSphere's own catch-all for a file-system volume of no listed kind (the local
  folder datastores ``HostDatastoreSystem.CreateLocalDatastore`` makes, as the simulator's
  are): files, readable; a disk that is not a plain file there fails its read by name.
- **vsan, vsanD** (vSAN, vSAN Direct) and **VVOL** (Virtual Volumes): a disk is an object
  (a vSAN object, a virtual volume on the array); the ``.vmdk`` descriptor names the
  object, and there is no ``-flat`` file to read or write (``/folder`` answers 404, a PUT
  makes a stray file). Reading them needs VDDK (NBD(SSL) or hot-add).
- **PMEM**: persistent-memory datastores are host memory, not a file system the datastore
  browser or ``/folder`` serves.
- **VFFS** (flash read cache), **vfat** (ESXi's boot and scratch partitions) and **CIFS**
  (in the API's list, never mountable as an ESXi datastore) hold no VM disks vmkeep could
  read.
- Anything else, or no type at all: unknown, refused (a new kind of storage is not assumed
  to be files).

Encrypted disks (``backing.keyId``) and VMs (``config.keyId``, VM encryption) are refused
too: their files hold ciphertext that only the ESXi host with the key can read; a backup
of the file would store ciphertext that no restore can use. Through hot-add
(``hotadd=True``) they are read: the host decrypts a disk for the (encrypted) VM it is
attached to, the appliance's.

A refused disk fails its VM before the snapshot unless the job excludes it
(``--exclude-disk``); a restore refuses such a target before it creates or changes anything
(``write_refusal``). Disks vmkeep leaves out with a warning (independent, raw device
mappings, bases that are deltas, non-flat backings) stay skipped, as after the snapshot
(``jobs.vm_backup.refusal``): they are never read, so they are not refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from appliance.vsphere.inventory import DiskInfo, VmInfo

DiskStatus = Literal["readable", "refused", "skipped", "excluded"]
INDEPENDENT_MODES: Final = ("independent_persistent", "independent_nonpersistent")
_VDDK = "it needs a VDDK transport (NBD or hot-add), which vmkeep does not have yet"


@dataclass(frozen=True, slots=True)
class DatastoreKind:
    """One ``summary.type``: whether its disks are files vmkeep can read, and why."""

    type: str
    name: str  # as an administrator knows it
    by_file: bool
    why: str  # what its disks are; for a refused kind, why they cannot be read by file


DATASTORE_KINDS: Final[Mapping[str, DatastoreKind]] = MappingProxyType({k.type: k for k in (
    DatastoreKind("VMFS", "VMFS", True, "disks are files (descriptor and -flat extent)"),
    DatastoreKind("NFS", "NFS 3", True, "disks are files (descriptor and -flat extent)"),
    DatastoreKind("NFS41", "NFS 4.1", True, "disks are files (descriptor and -flat extent)"),
    DatastoreKind("OTHER", "other file system", True,
                  "vSphere's type for a file-system volume of no listed kind (a local "
                  "folder datastore): disks are files"),
    DatastoreKind("vsan", "vSAN", False,
                  f"its disks are vSAN objects, not files: {_VDDK}"),
    DatastoreKind("vsanD", "vSAN Direct", False,
                  f"its disks are vSAN objects, not files: {_VDDK}"),
    DatastoreKind("VVOL", "vVols", False,
                  f"its disks are virtual volumes on the storage array, not files: {_VDDK}"),
    DatastoreKind("PMEM", "persistent memory", False,
                  f"its disks live in host memory, not in files /folder serves: {_VDDK}"),
    DatastoreKind("VFFS", "virtual flash", False,
                  "a flash read cache volume holds no virtual disk vmkeep can read"),
    DatastoreKind("vfat", "vfat", False,
                  "an ESXi boot or scratch partition holds no virtual disk vmkeep can read"),
    DatastoreKind("CIFS", "CIFS", False,
                  "ESXi does not mount CIFS datastores: vmkeep cannot tell what the disk is"),
)})


def datastore_refusal(ds_type: str, datastore: str) -> str:
    """Why disks on datastore ``datastore`` of ``summary.type`` ``ds_type`` cannot be read
    or written as files ("" when they can)."""
    kind = DATASTORE_KINDS.get(ds_type)
    if kind is None:
        shown = repr(ds_type) if ds_type else "no type"
        return (f"datastore {datastore!r} is of an unknown type ({shown}): vmkeep reads "
                "only VMFS, NFS and NFS 4.1 datastores by file and assumes nothing of others")
    if kind.by_file:
        return ""
    return f"datastore {datastore!r} is a {kind.name} datastore ({kind.type}): {kind.why}"


def write_refusal(datastore: str, ds_type: str, *, encrypted: bool = False) -> str:
    """Why a restore cannot write a disk's bytes as a file on ``datastore`` (of
    ``summary.type`` ``ds_type``), or into an existing disk that is ``encrypted`` ("" when
    it can): a PUT to an object datastore makes a stray file and leaves the disk empty, and
    plain bytes written into an encrypted disk's file are garbage to the host."""
    if encrypted:
        return ("it is encrypted (backing.keyId): plain bytes written into its file would "
                "be read as ciphertext")
    return datastore_refusal(ds_type, datastore)


@dataclass(frozen=True, slots=True)
class DiskVerdict:
    """What a backup will do with one disk: read it, refuse it (the VM fails before its
    snapshot), skip it with a warning, or leave it out as the job says."""

    index: int
    key: int
    file_name: str
    datastore: str
    datastore_type: str
    status: DiskStatus
    reason: str  # "" when readable


def _skip_reason(disk: DiskInfo) -> str:
    """Why the disk is left out with a warning (as ``vm_backup.refusal`` says after the
    snapshot), "" when it is not."""
    if disk.disk_mode in INDEPENDENT_MODES:
        return (f"it is in {disk.disk_mode} mode: snapshots do not freeze independent disks; "
                "back it up with an in-guest agent or make it dependent (persistent)")
    if "RawDisk" in disk.backing_type:
        return ("it is a raw device mapping: it needs a SAN transport reading the LUN (or an "
                "in-guest agent)")
    if disk.parent_file_name:
        return (f"its base is a delta of {disk.parent_file_name} (the VM has snapshots of its "
                "own): it needs a VDDK/NBD transport that reads the whole chain; consolidate "
                "or remove the VM's snapshots to back it up by file")
    if disk.backing_type != "FlatVer2":
        return (f"it has a {disk.backing_type} backing (not a flat VMDK): it needs a VDDK/NBD "
                "transport")
    if not disk.file_name:
        return "it has no backing file"
    return ""


def _refusal(vm: VmInfo, disk: DiskInfo, hotadd: bool) -> str:
    if hotadd:  # the host decrypts for the VM it is attached to; no file is read here
        return datastore_refusal(disk.datastore_type, disk.datastore_name)
    if vm.encrypted:
        return ("its VM is encrypted (config.keyId, VM encryption): its files hold "
                "ciphertext only the ESXi host with the key reads; decrypt the VM or exclude "
                "the disk")
    if disk.encrypted:
        return ("it is encrypted (backing.keyId): its file holds ciphertext only the ESXi "
                "host with the key reads; decrypt it (VM storage policy without encryption) "
                "or exclude it")
    return datastore_refusal(disk.datastore_type, disk.datastore_name)


def disk_verdicts(vm: VmInfo, exclude: frozenset[int] = frozenset(), *,
                  hotadd: bool = False) -> tuple[DiskVerdict, ...]:
    """Each disk of ``vm`` in disk-number order: excluded (its number is in ``exclude``),
    skipped (independent, RDM, delta base, not flat), refused (encrypted unless read
    through ``hotadd``, or on a datastore that is not read by file: ``DATASTORE_KINDS``)
    or readable."""
    out = []
    for d in vm.disks:
        status: DiskStatus = "readable"
        reason = ""
        if d.index in exclude:
            status, reason = "excluded", "excluded by the job"
        elif why := _skip_reason(d):
            status, reason = "skipped", why
        elif why := _refusal(vm, d, hotadd):
            status, reason = "refused", why
        out.append(DiskVerdict(d.index, d.key, d.file_name, d.datastore_name,
                               d.datastore_type, status, reason))
    return tuple(out)


def refusal_message(vm: VmInfo, verdicts: tuple[DiskVerdict, ...]) -> str:
    """The error that fails ``vm`` before its snapshot, naming each refused disk and why;
    "" when no disk is refused."""
    refused = [v for v in verdicts if v.status == "refused"]
    if not refused:
        return ""
    each = "; ".join(f"disk {v.index} ({v.file_name or 'no file'}): {v.reason}"
                     for v in refused)
    numbers = " ".join(f"--exclude-disk {vm.name}:{v.index}" for v in refused)
    return (f"VM {vm.name!r} cannot be backed up by file, so no snapshot was taken: {each}. "
            f"Leave the disk(s) out (a job's {numbers}) to back up the rest")
