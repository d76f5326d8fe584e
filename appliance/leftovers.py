"""What the appliance's own finished sessions left on VMs, cleaned up by the appliance.

Each session names its snapshots with the appliance's id and its own id
(``vsphere.snapshot.session_snapshot_name``). A session that did not end normally (the
appliance was killed, a removal failed) leaves its snapshot; the appliance removes the
snapshots of its sessions that are not running:

- at start, on every vCenter (``clean_at_start``, in a thread of its own: an unreachable
  vCenter does not delay the start), said in the appliance's log and in the log of the session
  that left it; what is not removed is left to the alerts, which look at once afterwards;
- before each VM's backup, on that VM (``clean_before_backup``), said in the session.

Never another appliance's snapshots, an offline ``vmkeep vsphere backup``'s, or a running
session's (``running`` is asked after the snapshots are listed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import UTC, datetime

from appliance.errors import VmkeepError
from appliance.home import appliance_id
from appliance.registry import Registry
from appliance.vsphere.leftovers import Removal, remove_leftovers
from appliance.vsphere.session import VSphereSession, connect
from catalog.models import LogRow

log = logging.getLogger("appliance.leftovers")

Running = Callable[[], Collection[str]]


def _tell_session(registry: Registry, removal: Removal) -> None:
    """Add the removal to the log of the (finished) session that left the snapshot."""
    sid = removal.leftover.session_id
    with registry.catalog() as cat:
        if not any(row.id == sid for row in cat.sessions()):
            return
        seq = len(cat.log(sid))
        cat.add_log([LogRow(sid, seq, datetime.now(UTC),
                            "info" if removal.removed else "warning",
                            f"{removal.leftover.vm_name}: {removal.message} (at the "
                            "appliance's start)")])


def clean_at_start(registry: Registry, running: Running) -> list[Removal]:
    """Remove this appliance's snapshots of finished sessions on every vCenter; log each."""
    me = appliance_id(registry.home)
    done: list[Removal] = []
    for vc in registry.vcenters.all():
        try:
            with connect(vc.host, vc.port, vc.user, registry.vcenters.password(vc.name),
                         fingerprint=vc.fingerprint, insecure=vc.insecure) as session:
                removals = remove_leftovers(session, me, running)
        except VmkeepError as exc:
            log.warning("could not look for leftover snapshots on vCenter %s: %s; the next "
                        "backup of each VM removes them", vc.name, exc)
            continue
        for r in removals:
            if r.removed:
                log.info("vCenter %s: %s", vc.name, r.message)
            else:
                log.warning("vCenter %s: %s", vc.name, r.message)
            try:
                _tell_session(registry, r)
            except VmkeepError as exc:
                log.warning("could not add to the log of session %s: %s",
                            r.leftover.session_id, exc)
        done += removals
    return done


def clean_before_backup(registry: Registry, session: VSphereSession, vm: str,
                        running: Running, say: Callable[[str, str], None]) -> bool:
    """Remove this appliance's snapshots of finished sessions on ``vm`` before its backup;
    ``say(level, message)`` tells the session. False when one is left (a warning)."""
    try:
        removals = remove_leftovers(session, appliance_id(registry.home), running, vm=vm)
    except VmkeepError as exc:
        say("warning", f"could not look for leftover snapshots: {exc}")
        return False
    for r in removals:
        say("info" if r.removed else "warning", r.message)
    return all(r.removed for r in removals)
