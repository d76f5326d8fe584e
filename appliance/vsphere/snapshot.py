"""Snapshot lifecycle: create and always remove vmkeep's snapshot, enable Changed Block
Tracking.

Functions take a session and moref ids (a VM's, or a ``SnapshotRef``); what they return is
vmkeep's own frozen data, never a ``vim.*`` object.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pyVmomi import vim, vmodl

from appliance.errors import VmkeepError, VSphereError
from appliance.vsphere._vim import VsphereTaskError as VsphereTaskError
from appliance.vsphere._vim import fault_text, snapshot_object, vm_object, wait_for_task
from appliance.vsphere.session import VSphereSession

SNAPSHOT_PREFIX = "vmkeep-"
OFFLINE_PREFIX = SNAPSHOT_PREFIX + "offline-"
_SESSION_NAME = re.compile(r"vmkeep-appliance-([0-9a-f]{12})-session-([0-9A-Za-z_-]+)")
DEFAULT_DESCRIPTION = "Temporary snapshot taken by vmkeep for a backup; removed when it ends."


class SnapshotError(VSphereError):
    """A snapshot could not be created, found or removed."""

    code = "snapshot"


@dataclass(frozen=True, slots=True)
class SnapshotRef:
    """A snapshot vmkeep made: its managed object id and name."""

    moref: str
    name: str
    vm_moref: str


@dataclass(frozen=True, slots=True)
class SnapshotOwner:
    """Whose a vmkeep snapshot is: the appliance and the session that took it."""

    appliance_id: str
    session_id: str


def snapshot_name(now: datetime | None = None) -> str:
    """The snapshot name of an offline backup (``vmkeep vsphere backup``), e.g.
    ``vmkeep-offline-20240131T120000Z``: no appliance ever removes it."""
    return OFFLINE_PREFIX + (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def session_snapshot_name(appliance_id: str, session_id: str) -> str:
    """The snapshot name of an appliance session's backup, e.g.
    ``vmkeep-appliance-0123456789ab-session-20240131T120000Z-1a2b3c``."""
    name = f"{SNAPSHOT_PREFIX}appliance-{appliance_id}-session-{session_id}"
    if not _SESSION_NAME.fullmatch(name):
        raise ValueError(f"appliance id {appliance_id!r} or session id {session_id!r} cannot "
                         "name a snapshot")
    return name


def snapshot_owner(name: str) -> SnapshotOwner | None:
    """The appliance and session a snapshot name carries; None for an offline backup's, an
    older vmkeep's (``vmkeep-20240131T120000Z``) and any other snapshot."""
    m = _SESSION_NAME.fullmatch(name)
    return SnapshotOwner(m.group(1), m.group(2)) if m else None


def create_snapshot(session: VSphereSession, vm_moref: str, name: str | None = None,
                    description: str = DEFAULT_DESCRIPTION, *, quiesce: bool = False,
                    timeout: float = 3600.0) -> SnapshotRef:
    """Take a disk-only snapshot of the VM ``vm_moref``. Every call goes through
    ``session.call``: an expired session is logged in again."""
    name = name or snapshot_name()
    vm = vm_object(session, vm_moref)
    vm_name = _vm_name(session, vm)
    try:
        task = session.call(lambda: vm.CreateSnapshot_Task(
            name=name, description=description, memory=False, quiesce=quiesce))
    except vmodl.MethodFault as exc:
        raise SnapshotError(f"creating snapshot {name!r} of VM {vm_name!r} was refused "
                            f"({fault_text(exc)})") from exc
    try:
        snap = wait_for_task(task, timeout, what=f"creating snapshot {name!r} of VM {vm_name!r}",
                             session=session)
    except VsphereTaskError as exc:
        raise SnapshotError(str(exc)) from exc
    if snap is None:
        raise SnapshotError(f"creating snapshot {name!r} of VM {vm_name!r} returned no snapshot")
    return SnapshotRef(moref=str(snap._moId), name=name, vm_moref=vm_moref)


def _vm_name(session: VSphereSession, vm: Any) -> str:
    try:
        return str(session.call(lambda: vm.name))
    except vmodl.fault.ManagedObjectNotFound as exc:
        raise SnapshotError(f"VM {vm._moId} no longer exists") from exc
    except vmodl.MethodFault as exc:
        raise SnapshotError(f"reading VM {vm._moId} failed ({fault_text(exc)})") from exc


def remove_snapshot(session: VSphereSession, ref: SnapshotRef, *,
                    timeout: float = 3600.0) -> None:
    """Remove ``ref`` (not its children); vSphere consolidates its disks."""
    vm = vm_object(session, ref.vm_moref)
    snap = snapshot_object(session, ref.moref)
    vm_name = _vm_name(session, vm)
    what = f"removing snapshot {ref.name!r} ({ref.moref}) of VM {vm_name!r}"
    try:
        task = session.call(lambda: snap.RemoveSnapshot_Task(removeChildren=False,
                                                              consolidate=True))
    except vmodl.fault.ManagedObjectNotFound as exc:
        raise SnapshotError(f"{what}: the snapshot no longer exists") from exc
    except vmodl.MethodFault as exc:
        raise SnapshotError(f"{what} was refused ({fault_text(exc)})") from exc
    try:
        wait_for_task(task, timeout, what=what, session=session)
    except VsphereTaskError as exc:
        raise SnapshotError(str(exc)) from exc


@contextmanager
def backup_snapshot(session: VSphereSession, vm_moref: str, name: str | None = None,
                    description: str = DEFAULT_DESCRIPTION, *, quiesce: bool = False,
                    timeout: float = 3600.0) -> Iterator[SnapshotRef]:
    """Create a snapshot, yield it, and always remove it — also when the body raises.

    If removal fails after the body raised, the body's exception propagates (the removal
    failure is attached as its ``__context__``); otherwise the removal error is raised."""
    ref = create_snapshot(session, vm_moref, name, description, quiesce=quiesce,
                          timeout=timeout)
    try:
        yield ref
    except BaseException:
        # The body's error is the one to report; Snapshot Hunter finds a leftover snapshot.
        with suppress(VmkeepError):
            remove_snapshot(session, ref, timeout=timeout)
        raise
    remove_snapshot(session, ref, timeout=timeout)


def enable_cbt(session: VSphereSession, vm_moref: str, *, timeout: float = 600.0) -> bool:
    """Turn on Changed Block Tracking when it is off. Returns True when it was changed."""
    vm = vm_object(session, vm_moref)
    if session.call(lambda: bool(getattr(vm.config, "changeTrackingEnabled", False))):
        return False
    spec = vim.vm.ConfigSpec(changeTrackingEnabled=True)  # type: ignore[no-untyped-call]
    what = f"enabling Changed Block Tracking on VM {_vm_name(session, vm)!r}"
    try:
        task = session.call(lambda: vm.ReconfigVM_Task(spec=spec))
    except vmodl.MethodFault as exc:
        raise VsphereTaskError(f"{what} was refused ({fault_text(exc)})") from exc
    wait_for_task(task, timeout, what=what, session=session)
    return True
