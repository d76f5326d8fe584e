"""Snapshot lifecycle: create and always remove vmkeep's snapshot, enable Changed Block
Tracking.

Functions take a session and moref ids (a VM's, or a ``SnapshotRef``); what they return is
vmkeep's own frozen data, never a ``vim.*`` object.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pyVmomi import vim, vmodl

from appliance.errors import VmkeepError, VSphereError
from appliance.vsphere._vim import VsphereTaskError as VsphereTaskError
from appliance.vsphere._vim import fault_text, snapshot_object, vm_object, wait_for_task
from appliance.vsphere.session import VSphereSession

log = logging.getLogger(__name__)

Say = Callable[[str, str], None]  # (level: "info" | "warning", message)

PROGRESS_EVERY = 60.0  # seconds between progress lines of a long removal or consolidation
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
                    say: Say | None = None) -> None:
    """Remove ``ref`` (not its children); vSphere consolidates its disks. The task is followed
    to its end however long it takes (a removal given up half-way leaves a snapshot to the
    Hunter that vSphere is still removing); ``say`` is told its progress every
    ``PROGRESS_EVERY`` seconds."""
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
        wait_for_task(task, None, what=what, session=session, every=PROGRESS_EVERY,
                      progress=None if say is None else (lambda m: say("info", m)))
    except VsphereTaskError as exc:
        raise SnapshotError(str(exc)) from exc


def consolidate_if_needed(session: VSphereSession, vm_moref: str, say: Say) -> bool:
    """After a snapshot removal: when the VM's disks need consolidation
    (``runtime.consolidationNeeded``), consolidate them (ConsolidateVMDisks_Task, followed to
    its end). Says what it does; False, with a warning said, when they still need it."""
    vm = vm_object(session, vm_moref)
    try:
        if not session.call(lambda: bool(vm.runtime.consolidationNeeded)):
            return True
        name = _vm_name(session, vm)
    except (vmodl.MethodFault, SnapshotError) as exc:
        why = str(exc) if isinstance(exc, SnapshotError) else fault_text(exc)
        say("warning", f"could not check whether VM {vm_moref} needs its disks consolidated "
                       f"({why})")
        return False
    what = f"consolidating the disks of VM {name!r}"
    say("info", f"VM {name!r} needs its disks consolidated after the snapshot's removal: "
                f"{what}")
    try:
        task = session.call(lambda: vm.ConsolidateVMDisks_Task())
        wait_for_task(task, None, what=what, session=session, every=PROGRESS_EVERY,
                      progress=lambda m: say("info", m))
        still = session.call(lambda: bool(vm.runtime.consolidationNeeded))
    except vmodl.MethodFault as exc:
        why = f"{what} was refused ({fault_text(exc)})"
    except VsphereTaskError as exc:
        why = str(exc)
    else:
        if not still:
            say("info", f"consolidated the disks of VM {name!r}")
            return True
        why = f"{what} ended but vSphere still says they need it"
    say("warning", f"{why}: VM {name!r} still needs its disks consolidated; consolidate them "
                   "in vSphere or run the Snapshot Hunter")
    return False


@contextmanager
def backup_snapshot(session: VSphereSession, vm_moref: str, name: str | None = None,
                    description: str = DEFAULT_DESCRIPTION, *, quiesce: bool = False,
                    timeout: float = 3600.0, say: Say | None = None) -> Iterator[SnapshotRef]:
    """Create a snapshot, yield it, and always remove it — also when the body raises — then
    consolidate the VM's disks if the removal left them needing it.

    If removal fails after the body raised, the body's exception propagates (the removal
    failure is attached as its ``__context__``). Otherwise a failed removal is said as a
    warning with ``say`` (the snapshot is left to the appliance's clean-up and the Snapshot
    Hunter), or raised without it."""
    tell: Say = say or _log_say
    ref = create_snapshot(session, vm_moref, name, description, quiesce=quiesce,
                          timeout=timeout)
    try:
        yield ref
    except BaseException:
        # The body's error is the one to report; Snapshot Hunter finds a leftover snapshot.
        with suppress(VmkeepError):
            remove_snapshot(session, ref, say=say)
            consolidate_if_needed(session, vm_moref, tell)
        raise
    try:
        remove_snapshot(session, ref, say=say)
    except VmkeepError as exc:
        if say is None:
            raise
        say("warning", f"{exc}; the snapshot is left on the VM: this appliance removes it "
                       "before the VM's next backup, or the Snapshot Hunter does")
        return
    tell("info", f"snapshot {ref.name} removed")
    consolidate_if_needed(session, vm_moref, tell)


def _log_say(level: str, message: str) -> None:
    log.log(logging.WARNING if level == "warning" else logging.INFO, "%s", message)


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
