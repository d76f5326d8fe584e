"""Snapshot Hunter: find what crashed backups and failed consolidations leave behind, and fix it.

Plan, then execute. ``plan_hunt`` only reads; it returns frozen data listing each finding (the
VM, what is wrong, the planned action). ``describe`` turns a plan into lines for a dry run.
``execute_hunt`` carries a plan out and says, per finding, whether it was fixed or why not.

What is found, in the order it is reported:

0. disks of other VMs attached to the appliance's own VM (hot-add, ``vsphere.hotadd``) left
   by a crashed run → detach them (never delete: the files are the other VM's). Detached
   first, so that the snapshot they belong to can be removed. Found only when the appliance
   VM is known (``hotadd.find_appliance``: DMI or ``$VMKEEP_APPLIANCE_VM``); a disk of a VM
   a running session is backing up is left alone.
1. vmkeep snapshots (name starts with ``SNAPSHOT_PREFIX``) left behind by a crashed run →
   remove the snapshot (vSphere consolidates its disks). In the appliance, a snapshot whose
   name says it is this appliance's and belongs to a session still running is in use: it is
   left alone and listed apart (``HuntPlan.left_alone``: "in use by running session N"), and
   no remove-all is ever done on its VM. The offline ``vmkeep vsphere hunter`` knows no
   running session.
2. with ``include_foreign`` only: every other snapshot → remove it. Without it, snapshots that
   are not vmkeep's are never listed for removal and never touched.
3. VMs whose disks need consolidation (``runtime.consolidationNeeded``) → consolidate
   (ConsolidateVMDisks_Task); if that fails, escalate as Veeam does to remove-all
   (RemoveAllSnapshots_Task) — but only when the VM has no snapshot that is not vmkeep's
   (checked again at execute time), or with ``include_foreign``.
4. VMs whose relocation (``RelocateVM_Task``) is disabled (``disabledMethod``), as a backup
   killed with its appliance leaves them → enable it for vmkeep's source
   (``vsphere.relocation``; another source's disabling stays, and is reported). Not on a VM
   a running session of the appliance is backing up (``busy``) or has a snapshot on.
5. snapshot files in the VM's file layout (``layoutEx``) that no snapshot or disk chain
   references: a ``.vmsn``/memory file no snapshot owns, or a delta disk (``-000001.vmdk``)
   in no disk chain, looked for on VMs without snapshots only (see ``orphan_files``) →
   report only; vmkeep never deletes datastore files on a guess.
   This reads the layout vSphere already has (no datastore browsing), so a file vSphere has
   not noticed yet shows up only after the VM's storage info is refreshed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pyVmomi import vim, vmodl

from appliance.errors import VmkeepError
from appliance.vsphere import _vim, hotadd
from appliance.vsphere._vim import collect, wait_for_task
from appliance.vsphere.inventory import SnapshotInfo, VmInfo, list_vms
from appliance.vsphere.relocation import METHOD as RELOCATE
from appliance.vsphere.relocation import MethodsError, enable_relocation
from appliance.vsphere.session import VSphereSession
from appliance.vsphere.snapshot import (
    SNAPSHOT_PREFIX,
    SnapshotError,
    SnapshotRef,
    remove_snapshot,
    snapshot_owner,
)


class FindingKind(StrEnum):
    ATTACHED_DISK = "attached_disk"  # another VM's disk on the appliance VM (hot-add)
    LEFTOVER_SNAPSHOT = "leftover_snapshot"  # ours, left by a crashed run
    FOREIGN_SNAPSHOT = "foreign_snapshot"  # not ours; only with include_foreign
    CONSOLIDATION_NEEDED = "consolidation_needed"
    ORPHAN_SNAPSHOT_FILE = "orphan_snapshot_file"
    SNAPSHOT_IN_USE = "snapshot_in_use"  # a running session's: left alone
    RELOCATION_DISABLED = "relocation_disabled"  # RelocateVM_Task disabled, no backup runs


class Action(StrEnum):
    DETACH_DISK = "detach_disk"
    REMOVE_SNAPSHOT = "remove_snapshot"
    CONSOLIDATE = "consolidate"  # escalates to remove-all when allowed
    REPORT_ONLY = "report_only"
    LEAVE = "leave"  # in use by a running session
    ENABLE_RELOCATION = "enable_relocation"


class Status(StrEnum):
    FIXED = "fixed"
    FAILED = "failed"
    REPORTED = "reported"  # report-only findings: nothing was changed


@dataclass(frozen=True, slots=True)
class Finding:
    kind: FindingKind
    vm_name: str
    vm_moref: str
    what: str
    action: Action
    snapshot_moref: str | None = None
    snapshot_name: str | None = None
    file_name: str | None = None
    # For CONSOLIDATE: may a failed consolidation escalate to remove-all? If not, why not.
    remove_all_allowed: bool = False
    remove_all_blocked_by: tuple[str, ...] = ()  # names of snapshots that are not vmkeep's
    in_use_by: str = ""  # the running session whose snapshot is on the VM (never remove-all)
    device_key: int = 0  # ATTACHED_DISK: the disk's key on the appliance VM

    @property
    def planned(self) -> str:
        if self.action is Action.REMOVE_SNAPSHOT:
            return f"remove snapshot {self.snapshot_name!r}"
        if self.action is Action.DETACH_DISK:
            return "detach it from the appliance VM (its file is kept)"
        if self.action is Action.LEAVE:
            return "leave it alone"
        if self.action is Action.ENABLE_RELOCATION:
            return "enable relocation (for vmkeep's source)"
        if self.action is Action.CONSOLIDATE:
            if self.in_use_by:
                return (f"consolidate disks; if that fails, stop (running session "
                        f"{self.in_use_by} has a snapshot on the VM)")
            if self.remove_all_allowed:
                return "consolidate disks; if that fails, remove all snapshots"
            if self.remove_all_blocked_by:
                names = ", ".join(repr(n) for n in self.remove_all_blocked_by)
                return (f"consolidate disks; if that fails, stop (remove-all would delete "
                        f"snapshots that are not vmkeep's: {names})")
            return "consolidate disks"
        return "report only (check and remove by hand)"


@dataclass(frozen=True, slots=True)
class HuntPlan:
    findings: tuple[Finding, ...]
    vms_checked: int
    include_foreign: bool = False
    left_alone: tuple[Finding, ...] = ()  # snapshots in use by running sessions

    @property
    def empty(self) -> bool:
        return not self.findings


@dataclass(frozen=True, slots=True)
class Outcome:
    finding: Finding
    status: Status
    detail: str


@dataclass(frozen=True, slots=True)
class HuntResult:
    outcomes: tuple[Outcome, ...]

    @property
    def fixed(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.status is Status.FIXED)

    @property
    def failed(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.status is Status.FAILED)

    @property
    def ok(self) -> bool:
        return not self.failed


# -- layout (pure data read from layoutEx) ---------------------------------------------------

SNAPSHOT_FILE_TYPES = frozenset({"snapshotData", "snapshotMemory"})
DISK_FILE_TYPES = frozenset({"diskDescriptor", "diskExtent"})
_DELTA_DISK = re.compile(r"-\d{6}(-delta|-sesparse)?\.vmdk$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class LayoutFile:
    key: int
    name: str
    type: str


@dataclass(frozen=True, slots=True)
class FileLayout:
    """What of ``layoutEx`` the hunter needs: the files and the keys something references."""

    files: tuple[LayoutFile, ...]
    referenced_keys: frozenset[int]
    snapshot_count: int = 0  # entries in layoutEx.snapshot


def _file_layout(layout_ex: Any) -> FileLayout | None:
    if layout_ex is None:
        return None
    files = tuple(LayoutFile(int(f.key), str(f.name or ""), str(f.type or ""))
                  for f in (layout_ex.file or []))
    refs: set[int] = set()

    def chain_keys(disks: Iterable[Any]) -> None:
        for d in disks or []:
            for unit in d.chain or []:
                refs.update(int(k) for k in (unit.fileKey or []))

    chain_keys(layout_ex.disk)
    for snap in layout_ex.snapshot or []:
        refs.add(int(snap.dataKey))
        if snap.memoryKey is not None and int(snap.memoryKey) >= 0:
            refs.add(int(snap.memoryKey))
        chain_keys(snap.disk)
    return FileLayout(files, frozenset(refs), len(layout_ex.snapshot or []))


def orphan_files(layout: FileLayout, *, has_snapshots: bool = False) -> list[LayoutFile]:
    """Snapshot files no snapshot owns, and delta disks in no disk chain.

    Conservative: only on a VM with no snapshot at all, where every snapshot file is an
    orphan whatever the file keys say. (vcsim renumbers layoutEx file keys on a storage
    refresh without updating the snapshots' keys, so key matching alone gives false alarms;
    deleting nothing, we prefer missing an orphan to crying wolf.)"""
    if has_snapshots or layout.snapshot_count:
        return []
    out = []
    for f in layout.files:
        if f.key in layout.referenced_keys:
            continue
        if f.type in SNAPSHOT_FILE_TYPES or (
                f.type in DISK_FILE_TYPES and _DELTA_DISK.search(f.name)):
            out.append(f)
    return out


def _relocation_disabled(session: VSphereSession) -> frozenset[str]:
    """The morefs of the VMs whose ``disabledMethod`` lists ``RelocateVM_Task``."""
    return frozenset(str(obj._moId)
                     for obj, props in collect(session, session.content.rootFolder,
                                               vim.VirtualMachine, ["disabledMethod"])
                     if RELOCATE in [str(m) for m in props.get("disabledMethod") or []])


def _layouts(session: VSphereSession) -> dict[str, FileLayout | None]:
    """``layoutEx`` of every VM, by moref, in one PropertyCollector pass."""
    return {str(obj._moId): _file_layout(props.get("layoutEx"))
            for obj, props in collect(session, session.content.rootFolder,
                                      vim.VirtualMachine, ["layoutEx"])}


# -- planning ---------------------------------------------------------------------------------

def is_ours(snapshot_name: str) -> bool:
    return snapshot_name.startswith(SNAPSHOT_PREFIX)


def _snap_what(s: SnapshotInfo, ours: bool, in_use_by: str = "") -> str:
    when = f", taken {s.created:%Y-%m-%d %H:%M:%S %Z}".rstrip() if s.created else ""
    if in_use_by:
        return f"vmkeep snapshot {s.name!r} ({s.moref}{when}) in use by running session " \
            f"{in_use_by}"
    if ours:
        return f"vmkeep snapshot {s.name!r} ({s.moref}{when}) left behind by a crashed run"
    return f"snapshot {s.name!r} ({s.moref}{when}) is not vmkeep's (included on request)"


def findings_for_vm(vm: VmInfo, layout: FileLayout | None, *,
                    include_foreign: bool = False,
                    in_use: Mapping[str, str] | None = None,
                    relocation_disabled: bool = False) -> list[Finding]:
    """The findings for one VM, in report order (pure: no vSphere calls). ``in_use`` maps the
    names of snapshots of running sessions to the session's id: they are left alone
    (``Action.LEAVE``). ``relocation_disabled``: the VM's ``disabledMethod`` lists
    ``RelocateVM_Task`` and no running session is backing it up."""
    in_use = in_use or {}
    out: list[Finding] = []
    # Children before parents, so each removal leaves a valid tree either way.
    snaps = list(reversed(vm.snapshots))
    for s in snaps:
        if s.name in in_use:
            out.append(Finding(FindingKind.SNAPSHOT_IN_USE, vm.name, vm.moref,
                               _snap_what(s, True, in_use[s.name]), Action.LEAVE,
                               snapshot_moref=s.moref, snapshot_name=s.name,
                               in_use_by=in_use[s.name]))
        elif is_ours(s.name):
            out.append(Finding(FindingKind.LEFTOVER_SNAPSHOT, vm.name, vm.moref,
                               _snap_what(s, True), Action.REMOVE_SNAPSHOT,
                               snapshot_moref=s.moref, snapshot_name=s.name))
    if include_foreign:
        for s in snaps:
            if not is_ours(s.name):
                out.append(Finding(FindingKind.FOREIGN_SNAPSHOT, vm.name, vm.moref,
                                   _snap_what(s, False), Action.REMOVE_SNAPSHOT,
                                   snapshot_moref=s.moref, snapshot_name=s.name))
    if vm.consolidation_needed:
        foreign = tuple(s.name for s in vm.snapshots if not is_ours(s.name))
        running = next((in_use[s.name] for s in vm.snapshots if s.name in in_use), "")
        allowed = (include_foreign or not foreign) and not running
        out.append(Finding(FindingKind.CONSOLIDATION_NEEDED, vm.name, vm.moref,
                           "disks need consolidation", Action.CONSOLIDATE,
                           remove_all_allowed=allowed,
                           remove_all_blocked_by=() if allowed else foreign,
                           in_use_by=running))
    if relocation_disabled and not any(s.name in in_use for s in vm.snapshots):
        out.append(Finding(FindingKind.RELOCATION_DISABLED, vm.name, vm.moref,
                           f"relocation ({RELOCATE}) is disabled and no backup is running",
                           Action.ENABLE_RELOCATION))
    if layout is not None:
        for f in orphan_files(layout, has_snapshots=bool(vm.snapshots)):
            out.append(Finding(FindingKind.ORPHAN_SNAPSHOT_FILE, vm.name, vm.moref,
                               f"file {f.name} ({f.type}) is in no snapshot or disk chain",
                               Action.REPORT_ONLY, file_name=f.name))
    return out


_ORDER = {FindingKind.ATTACHED_DISK: -1, FindingKind.LEFTOVER_SNAPSHOT: 0,
          FindingKind.FOREIGN_SNAPSHOT: 1,
          FindingKind.CONSOLIDATION_NEEDED: 2, FindingKind.RELOCATION_DISABLED: 3,
          FindingKind.ORPHAN_SNAPSHOT_FILE: 4, FindingKind.SNAPSHOT_IN_USE: 5}


def order_findings(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    """Disks attached by hot-add first, then vmkeep's leftover snapshots, then by kind;
    stable within a kind (VM order)."""
    return tuple(sorted(findings, key=lambda f: _ORDER[f.kind]))


def in_use_snapshots(vms: Iterable[VmInfo], appliance_id: str,
                     running: Collection[str]) -> dict[str, str]:
    """Snapshot name → session id for the snapshots of appliance ``appliance_id``'s sessions
    in ``running`` (pure)."""
    out: dict[str, str] = {}
    for vm in vms:
        for s in vm.snapshots:
            owner = snapshot_owner(s.name)
            if (owner is not None and owner.appliance_id == appliance_id
                    and owner.session_id in running):
                out[s.name] = owner.session_id
    return out


def attached_disk_findings(appliance: hotadd.ApplianceVm, vms: Sequence[VmInfo],
                           in_use: Mapping[str, str], busy: Collection[str]
                           ) -> list[Finding]:
    """Disks of other VMs on the appliance VM (pure); a disk of a VM that a running session
    is backing up (``busy``, or a snapshot of its in ``in_use``) is left alone."""
    out = []
    running = {vm.name: in_use[s.name] for vm in vms for s in vm.snapshots if s.name in in_use}
    for d in hotadd.foreign_disks(appliance, vms):
        what = (f"disk {d.file_name} of VM {d.owner!r} is attached to the appliance VM "
                f"(key {d.key})")
        if d.owner in running or d.owner in busy:
            out.append(Finding(FindingKind.ATTACHED_DISK, appliance.name, appliance.moref,
                               f"{what}, in use by a running backup", Action.LEAVE,
                               file_name=d.file_name, device_key=d.key,
                               in_use_by=running.get(d.owner, "")))
        else:
            out.append(Finding(FindingKind.ATTACHED_DISK, appliance.name, appliance.moref,
                               f"{what}, left by a crashed hot-add run", Action.DETACH_DISK,
                               file_name=d.file_name, device_key=d.key))
    return out


def _appliance_vm(session: VSphereSession, name: str) -> hotadd.ApplianceVm | None:
    try:
        return hotadd.find_appliance(session, name or None)
    except hotadd.HotaddError:
        return None  # not in a VM of this vCenter, or not told which: nothing attached


def plan_hunt(session: VSphereSession, *, include_foreign: bool = False,
              appliance_id: str | None = None,
              running: Callable[[], Collection[str]] | None = None,
              busy: Callable[[], Collection[str]] | None = None,
              appliance_vm: str = "") -> HuntPlan:
    """Look at every VM and plan what to fix. Reads only. With ``appliance_id`` and
    ``running`` (the appliance's running sessions, asked after the VMs are listed: a session
    starting meanwhile takes its snapshot later), the snapshots of running sessions of that
    appliance are left alone; ``busy`` names the VMs the appliance is backing up now (their
    relocation is the backup's to enable). ``appliance_vm`` names the appliance's own VM
    (hot-add; else its BIOS UUID or ``$VMKEEP_APPLIANCE_VM`` finds it, if it can)."""
    vms = list_vms(session)
    layouts = _layouts(session)
    disabled = _relocation_disabled(session)
    busy_now = frozenset(busy()) if busy is not None else frozenset()
    in_use = (in_use_snapshots(vms, appliance_id, frozenset(running()))
              if appliance_id is not None and running is not None else {})
    appliance = _appliance_vm(session, appliance_vm)
    findings: list[Finding] = (attached_disk_findings(appliance, vms, in_use, busy_now)
                               if appliance is not None else [])
    for vm in vms:
        findings += findings_for_vm(
            vm, layouts.get(vm.moref), include_foreign=include_foreign, in_use=in_use,
            relocation_disabled=vm.moref in disabled and vm.name not in busy_now)
    return HuntPlan(order_findings(f for f in findings if f.action is not Action.LEAVE),
                    vms_checked=len(vms), include_foreign=include_foreign,
                    left_alone=tuple(f for f in findings if f.action is Action.LEAVE))


def describe(plan: HuntPlan) -> list[str]:
    """Human lines for a dry run, one per finding, in plan order; then what is left alone."""
    left = [f"VM {f.vm_name!r} ({f.vm_moref}): {f.what} -> {f.planned}"
            for f in plan.left_alone]
    if plan.empty:
        return [f"Snapshot Hunter: nothing to fix ({plan.vms_checked} VMs checked)", *left]
    lines = [f"Snapshot Hunter: {len(plan.findings)} finding(s) on {plan.vms_checked} VMs"
             + (" (snapshots that are not vmkeep's included)" if plan.include_foreign else "")]
    for n, f in enumerate(plan.findings, 1):
        lines.append(f"{n}. VM {f.vm_name!r} ({f.vm_moref}): {f.what} -> {f.planned}")
    return lines + left


# -- execution --------------------------------------------------------------------------------

def _vm_object(session: VSphereSession, moref: str) -> Any:
    return _vim.vm_object(session, moref)


def _fault_text(exc: BaseException) -> str:
    msg = getattr(exc, "msg", None) or str(exc)
    return " ".join(f"{type(exc).__name__}: {msg}".split()) if msg else type(exc).__name__


def _live_snapshot_names(vm: Any) -> list[str]:
    names: list[str] = []

    def walk(trees: Sequence[Any] | None) -> None:
        for t in trees or []:
            names.append(str(t.name or ""))
            walk(t.childSnapshotList)

    info = vm.snapshot
    if info is not None:
        walk(info.rootSnapshotList)
    return names


def _remove(session: VSphereSession, f: Finding, timeout: float) -> Outcome:
    assert f.snapshot_moref is not None and f.snapshot_name is not None
    ref = SnapshotRef(moref=f.snapshot_moref, name=f.snapshot_name, vm_moref=f.vm_moref)
    try:
        remove_snapshot(session, ref)
    except SnapshotError as exc:
        if isinstance(exc.__cause__, vmodl.fault.ManagedObjectNotFound):
            return Outcome(f, Status.FIXED, f"snapshot {f.snapshot_name!r} was already gone")
        return Outcome(f, Status.FAILED, str(exc))
    return Outcome(f, Status.FIXED, f"removed snapshot {f.snapshot_name!r}")


def _consolidate(session: VSphereSession, f: Finding, include_foreign: bool,
                 timeout: float) -> Outcome:
    vm = _vm_object(session, f.vm_moref)
    try:
        # Removing a leftover snapshot earlier in the plan may have consolidated already.
        if not session.call(lambda: bool(vm.runtime.consolidationNeeded)):
            return Outcome(f, Status.FIXED, "consolidation is no longer needed")
    except vmodl.MethodFault as exc:
        return Outcome(f, Status.FAILED, f"reading VM {f.vm_name!r} failed ({_fault_text(exc)})")
    what = f"consolidating the disks of VM {f.vm_name!r}"
    try:
        task = session.call(lambda: vm.ConsolidateVMDisks_Task())
        wait_for_task(task, timeout, what=what)
        return Outcome(f, Status.FIXED, "consolidated the disks")
    except (vmodl.MethodFault, VmkeepError) as exc:
        why = str(exc) if isinstance(exc, VmkeepError) else f"{what} was refused " \
            f"({_fault_text(exc)})"
    if f.in_use_by:
        return Outcome(f, Status.FAILED, f"{why}; not removing all snapshots: running session "
                                         f"{f.in_use_by} has a snapshot on the VM")
    if not (f.remove_all_allowed or include_foreign):
        names = ", ".join(repr(n) for n in f.remove_all_blocked_by)
        return Outcome(f, Status.FAILED,
                       f"{why}; not removing all snapshots: {names} are not vmkeep's "
                       "(run with include_foreign to allow it)")
    try:
        live_foreign = [n for n in session.call(lambda: _live_snapshot_names(vm))
                        if not is_ours(n)]
    except vmodl.MethodFault as exc:
        return Outcome(f, Status.FAILED,
                       f"{why}; reading its snapshots failed ({_fault_text(exc)})")
    if live_foreign and not include_foreign:
        names = ", ".join(repr(n) for n in live_foreign)
        return Outcome(f, Status.FAILED,
                       f"{why}; not removing all snapshots: {names} are not vmkeep's "
                       "(taken since the plan; run with include_foreign to allow it)")
    what2 = f"removing all snapshots of VM {f.vm_name!r}"
    try:
        task = session.call(lambda: vm.RemoveAllSnapshots_Task(consolidate=True))
        wait_for_task(task, timeout, what=what2)
    except vmodl.MethodFault as exc:
        return Outcome(f, Status.FAILED, f"{why}; {what2} was refused ({_fault_text(exc)})")
    except VmkeepError as exc:
        return Outcome(f, Status.FAILED, f"{why}; {exc}")
    return Outcome(f, Status.FIXED, f"{why}; removed all snapshots instead")


def _enable_relocation(session: VSphereSession, f: Finding) -> Outcome:
    try:
        enable_relocation(session, f.vm_moref)
        vm = _vm_object(session, f.vm_moref)
        still = RELOCATE in [str(m) for m in session.call(lambda: vm.disabledMethod) or []]
    except (MethodsError, vmodl.MethodFault) as exc:
        why = str(exc) if isinstance(exc, MethodsError) else _fault_text(exc)
        return Outcome(f, Status.FAILED, f"enabling relocation failed ({why})")
    if still:
        return Outcome(f, Status.REPORTED, "enabled for vmkeep's source; relocation stays "
                                           "disabled by another source (not vmkeep's)")
    return Outcome(f, Status.FIXED, "enabled relocation")


def _detach(session: VSphereSession, f: Finding) -> Outcome:
    assert f.file_name is not None
    app = hotadd.ApplianceVm(f.vm_moref, f.vm_name, "", False)
    try:
        if not hotadd.detach_key(session, app, f.device_key, f.file_name):
            return Outcome(f, Status.FIXED, f"{f.file_name} was already detached")
    except (hotadd.HotaddError, vmodl.MethodFault) as exc:
        why = str(exc) if isinstance(exc, hotadd.HotaddError) else _fault_text(exc)
        return Outcome(f, Status.FAILED, f"detaching {f.file_name} failed ({why})")
    return Outcome(f, Status.FIXED, f"detached {f.file_name} from the appliance VM")


def execute_hunt(session: VSphereSession, plan: HuntPlan, *,
                 timeout: float = 3600.0) -> HuntResult:
    """Carry out ``plan`` in order; one finding failing does not stop the others."""
    outcomes: list[Outcome] = []
    for f in plan.findings:
        if f.action is Action.REMOVE_SNAPSHOT:
            if f.kind is FindingKind.FOREIGN_SNAPSHOT and not plan.include_foreign:
                outcomes.append(Outcome(f, Status.FAILED, "snapshot is not vmkeep's and "
                                        "include_foreign was not given; left alone"))
                continue
            outcomes.append(_remove(session, f, timeout))
        elif f.action is Action.DETACH_DISK:
            outcomes.append(_detach(session, f))
        elif f.action is Action.CONSOLIDATE:
            outcomes.append(_consolidate(session, f, plan.include_foreign, timeout))
        elif f.action is Action.ENABLE_RELOCATION:
            outcomes.append(_enable_relocation(session, f))
        else:
            outcomes.append(Outcome(f, Status.REPORTED, "reported only; nothing changed"))
    return HuntResult(tuple(outcomes))
