"""The vCenter privileges vmkeep's account needs, per purpose (pure: no vSphere call).

One table, ``PRIVILEGES``: each privilege id (as the vSphere API names it), the purposes that
need it (``backup``, ``restore``, ``hunter``), what vmkeep does with it, and where that
requirement is written down (``SOURCES``). docs/VSPHERE.md lists exactly these privileges
(tests/test_vsphere_privileges.py checks), and ``vmkeep vcenter check`` asks vCenter which of
them the account lacks (``privilege_check``).

Privileges are checked on the root folder: a role for a backup product is granted there (or
on a datacenter) and propagated, and some (``Global.*``, ``Provisioning.GetVmFiles``) are only
effective at the root. A role granted lower down (a VM folder only) may hold a privilege on
the VMs that the root-folder check reports as missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

Purpose = Literal["backup", "restore", "hunter"]
PURPOSES: Final[tuple[Purpose, ...]] = ("backup", "restore", "hunter")
Transport = Literal["host", "vcenter", "direct", "hotadd"]
ALL_TRANSPORTS: Final[tuple[Transport, ...]] = ("host", "vcenter", "direct", "hotadd")
_HTTP: Final[tuple[Transport, ...]] = ("host", "vcenter")
_HOTADD: Final[tuple[Transport, ...]] = ("hotadd",)


@dataclass(frozen=True, slots=True)
class Source:
    """Where a requirement is written down."""

    title: str
    url: str


SOURCES: Final[Mapping[str, Source]] = MappingProxyType({
    "vddk": Source("VDDK Programming Guide 8.0, \"Credentials and Privileges for VMDK Access\"",
                   "https://docs.vmware.com/en/VMware-vSphere/8.0/vsphere-vddk-programming-"
                   "guide/GUID-8301C6CF-37C2-42CC-B4C5-BB1DD28F79C9.html"),
    "http": Source("vSphere Web Services SDK Programming Guide, \"Privilege Requirements for "
                   "HTTP Access\"",
                   "https://vdc-download.vmware.com/vmwb-repository/dcr-public/5c1c7b8c-0d1b-"
                   "4037-af84-5f43787eb378/fab98b61-56a7-4608-992f-818d3b40e4ae/GUID-D8AF2F09-"
                   "09B8-47AD-9F10-BA80F8A2BA6A.html"),
    "api": Source("vSphere API reference (\"Required privileges\" of each method)",
                  "https://developer.broadcom.com/xapis/virtual-infrastructure-json-api/"
                  "latest/"),
    "security": Source("vSphere Security, \"Defined Privileges\" and \"Required Privileges "
                       "for Common Tasks\"",
                       "https://docs.vmware.com/en/VMware-vSphere/7.0/com.vmware.vsphere."
                       "security.doc/GUID-31C6CD2D-41CA-4646-994A-C61AD5FF1880.html"),
})


@dataclass(frozen=True, slots=True)
class Privilege:
    """One privilege: who needs it, for what, and who says so."""

    id: str  # as the API names it: VirtualMachine.State.CreateSnapshot
    label: str  # as the vSphere Client shows it
    purposes: tuple[Purpose, ...]
    used_for: str  # what vmkeep does with it
    sources: tuple[str, ...]  # keys of SOURCES
    transports: tuple[Transport, ...] = ALL_TRANSPORTS  # backup: the transports needing it


PRIVILEGES: Final[tuple[Privilege, ...]] = (
    Privilege("System.Anonymous", "(in every role)", ("backup", "restore", "hunter"),
              "log in; SessionManager.AcquireGenericServiceTicket (the host transport's "
              "tickets)", ("api",)),
    Privilege("System.View", "(in every role)", ("backup", "restore", "hunter"),
              "see the inventory; /folder on the root folder; "
              "AuthorizationManager.HasPrivilegeOnEntities", ("api", "http")),
    Privilege("System.Read", "(in every role)", ("backup", "restore", "hunter"),
              "read VMs, hosts, datastores and snapshots (property collector)", ("api",)),
    Privilege("VirtualMachine.State.CreateSnapshot", "Virtual machine > Snapshot management "
              "> Create snapshot", ("backup",), "CreateSnapshot_Task (the backup's snapshot)",
              ("vddk",)),
    Privilege("VirtualMachine.State.RemoveSnapshot", "Virtual machine > Snapshot management "
              "> Remove snapshot", ("backup", "hunter"),
              "RemoveSnapshot_Task, RemoveAllSnapshots_Task, ConsolidateVMDisks_Task",
              ("vddk", "api")),
    Privilege("VirtualMachine.Config.ChangeTracking", "Virtual machine > Change Configuration "
              "> Toggle disk change tracking", ("backup", "restore"),
              "turn Changed Block Tracking on (job --enable-cbt); reset it after a restore "
              "over the original VM", ("vddk",)),
    Privilege("VirtualMachine.Provisioning.DiskRandomRead", "Virtual machine > Provisioning > "
              "Allow read-only disk access", ("backup",),
              "QueryChangedDiskAreas (what CBT says changed)", ("vddk", "api")),
    Privilege("VirtualMachine.Provisioning.GetVmFiles", "Virtual machine > Provisioning > "
              "Allow virtual machine download", ("backup",),
              "read the VM's disk files over HTTPS", ("vddk", "security"), _HTTP),
    Privilege("Datastore.Browse", "Datastore > Browse datastore", ("backup", "restore"),
              "/folder requests (dcPath, dsName): read a disk's files, write a restored one",
              ("http",), _HTTP),
    Privilege("Datastore.FileManagement", "Datastore > Low level file operations",
              ("backup", "restore"),
              "/folder requests (dcPath, dsName); a restore's PUT of a disk's bytes",
              ("http",), _HTTP),
    Privilege("Datastore.AllocateSpace", "Datastore > Allocate space", ("backup", "restore"),
              "the snapshot's delta disks; a restored VM's disks", ("vddk", "security")),
    Privilege("Global.DisableMethods", "Global > Disable methods", ("backup",),
              "AuthorizationManager.DisableMethods: no Storage vMotion (RelocateVM_Task) "
              "while a backup reads the disks", ("vddk",)),
    Privilege("Global.EnableMethods", "Global > Enable methods", ("backup", "hunter"),
              "AuthorizationManager.EnableMethods: relocation allowed again after the "
              "backup, or by the Hunter after a crash", ("vddk",)),
    Privilege("VirtualMachine.Inventory.Create", "Virtual machine > Edit Inventory > Create "
              "new", ("restore",), "ImportVApp creates the new VM (restore to a new VM)",
              ("api", "security")),
    Privilege("VApp.Import", "vApp > Import", ("restore",),
              "ResourcePool.ImportVApp: a restore to a new VM imports it through an NFC lease "
              "(its disks sent to the host as streamOptimized VMDKs)", ("api", "security")),
    Privilege("VirtualMachine.Inventory.Delete", "Virtual machine > Edit Inventory > Remove",
              ("restore",), "Destroy_Task: a new VM whose restore failed is deleted again",
              ("security",)),
    Privilege("Resource.AssignVMToPool", "Resource > Assign virtual machine to resource pool",
              ("restore",), "ImportVApp's resource pool", ("api", "security")),
    Privilege("Network.Assign", "Network > Assign network", ("restore",),
              "the restored VM's NICs on their recorded networks", ("api", "security")),
    Privilege("VirtualMachine.Config.AddNewDisk", "Virtual machine > Change Configuration > "
              "Add new disk", ("restore",),
              "the new VM's disks; restore-disk adds a disk to a VM", ("api", "vddk")),
    Privilege("VirtualMachine.Config.AdvancedConfig", "Virtual machine > Change "
              "Configuration > Advanced configuration", ("restore",),
              "the new VM's extraConfig keys (disk.EnableUUID, …), recreated from the point",
              ("api",)),
    Privilege("VirtualMachine.Config.AddExistingDisk", "Virtual machine > Change "
              "Configuration > Add existing disk", ("backup", "restore"),
              "hot-add: attaching the snapshot's disks (a restore: the VM's own disks) to the "
              "appliance's VM", ("vddk", "api"), _HOTADD),
    Privilege("VirtualMachine.Config.RemoveDisk", "Virtual machine > Change Configuration > "
              "Remove disk", ("backup", "restore", "hunter"),
              "restore-disk removes the disk it added when writing fails; hot-add detaches "
              "the disks it attached (the Hunter: those a crashed run left)", ("vddk",),
              _HOTADD),
    Privilege("VirtualMachine.Config.DiskExtend", "Virtual machine > Change Configuration > "
              "Extend virtual disk", ("restore",),
              "a restore over the original VM grows a disk smaller than the backup's",
              ("security",)),
    Privilege("VirtualMachine.Interact.PowerOff", "Virtual machine > Interaction > Power off",
              ("restore",), "a restore over the original VM powers it off first",
              ("security",)),
    Privilege("VirtualMachine.Interact.PowerOn", "Virtual machine > Interaction > Power on",
              ("restore",), "restore-vm --power-on", ("security",)),
    Privilege("VirtualMachine.Provisioning.PutVmFiles", "Virtual machine > Provisioning > "
              "Allow virtual machine files upload", ("restore",),
              "write the restored disks' bytes over HTTPS (over the original VM, restore-disk)",
              ("security",)),
)

BY_ID: Final[Mapping[str, Privilege]] = MappingProxyType({p.id: p for p in PRIVILEGES})


def required(purpose: Purpose) -> tuple[str, ...]:
    """The privilege ids ``purpose`` needs, in the table's order."""
    return tuple(p.id for p in PRIVILEGES if purpose in p.purposes)


def all_ids() -> tuple[str, ...]:
    """Every privilege id of the table, once each."""
    return tuple(p.id for p in PRIVILEGES)


def transport_note(privilege_id: str) -> str:
    """"" when every transport needs it, else which ones do ("host, vcenter")."""
    p = BY_ID[privilege_id]
    return "" if p.transports == ALL_TRANSPORTS else ", ".join(p.transports)
