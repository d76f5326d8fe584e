"""Leftover snapshots of an appliance's own finished sessions: found by name, removed.

An appliance session's snapshot is named ``vmkeep-appliance-<appliance id>-session-<session
id>`` (``snapshot.session_snapshot_name``). A snapshot is this appliance's leftover when its
name carries this appliance's id and a session that is not running now. Never touched: another
appliance's snapshots, an offline ``vmkeep vsphere backup``'s (``vmkeep-offline-…``), an older
vmkeep's (``vmkeep-<time>``: the Snapshot Hunter's), a running session's, and anyone else's.

The snapshots are listed first and only then is ``running`` asked which sessions run: a
session that starts meanwhile takes its snapshot after the listing (its id is new), so it is
never taken for finished.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from pyVmomi import vmodl

from appliance.errors import VmkeepError
from appliance.vsphere.inventory import VmInfo, find_vm, list_vms
from appliance.vsphere.session import VSphereSession
from appliance.vsphere.snapshot import SnapshotError, SnapshotRef, remove_snapshot, snapshot_owner


@dataclass(frozen=True, slots=True)
class LeftoverSnapshot:
    vm_name: str
    vm_moref: str
    snapshot_moref: str
    snapshot_name: str
    session_id: str


@dataclass(frozen=True, slots=True)
class Removal:
    leftover: LeftoverSnapshot
    removed: bool
    message: str  # what an administrator reads: what was removed, or why not


def leftovers_of(vms: Iterable[VmInfo], appliance_id: str,
                 running: Collection[str]) -> tuple[LeftoverSnapshot, ...]:
    """This appliance's snapshots of sessions not in ``running``, children before parents
    (pure)."""
    out: list[LeftoverSnapshot] = []
    for vm in vms:
        for s in reversed(vm.snapshots):
            owner = snapshot_owner(s.name)
            if (owner is not None and owner.appliance_id == appliance_id
                    and owner.session_id not in running):
                out.append(LeftoverSnapshot(vm.name, vm.moref, s.moref, s.name,
                                            owner.session_id))
    return tuple(out)


def remove_leftovers(session: VSphereSession, appliance_id: str,
                     running: Callable[[], Collection[str]], *, vm: str | None = None,
                     timeout: float = 3600.0) -> tuple[Removal, ...]:
    """Remove this appliance's snapshots of finished sessions: of VM ``vm`` (name, instance
    UUID or moref), or of every VM. One failing does not stop the others."""
    vms = [find_vm(session, vm)] if vm is not None else list_vms(session)
    found = leftovers_of(vms, appliance_id, frozenset(running()))
    out: list[Removal] = []
    for lo in found:
        what = (f"snapshot {lo.snapshot_name} of VM {lo.vm_name!r}, left by session "
                f"{lo.session_id} of this appliance")
        ref = SnapshotRef(moref=lo.snapshot_moref, name=lo.snapshot_name, vm_moref=lo.vm_moref)
        try:
            remove_snapshot(session, ref)
        except SnapshotError as exc:
            if isinstance(exc.__cause__, vmodl.fault.ManagedObjectNotFound):
                out.append(Removal(lo, True, f"{what}: already gone"))
            else:
                out.append(Removal(lo, False, f"could not remove {what}: {exc}"))
            continue
        except VmkeepError as exc:
            out.append(Removal(lo, False, f"could not remove {what}: {exc}"))
            continue
        out.append(Removal(lo, True, f"removed {what}"))
    return tuple(out)
