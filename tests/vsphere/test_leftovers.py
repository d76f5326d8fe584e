"""Leftover snapshots of the appliance's own finished sessions, against vcsim: named by
appliance and session, removed; another appliance's, an offline backup's, a running
session's and the user's own are kept."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from appliance.vsphere.inventory import find_vm
from appliance.vsphere.leftovers import remove_leftovers
from appliance.vsphere.session import VSphereSession, connect
from appliance.vsphere.snapshot import (
    create_snapshot,
    session_snapshot_name,
    snapshot_name,
    snapshot_owner,
)
from tests.vcsim import Vcsim
from tests.vsphere.vmenv import snapshot_names, vm_object

VM, VM1 = "DC0_H0_VM0", "DC0_H0_VM1"
ME, OTHER = "0123456789ab", "ba9876543210"
ENDED, RUNNING = "20261206T010000Z-aaaaaa", "20261206T020000Z-bbbbbb"


@pytest.fixture
def session(vcsim: Vcsim) -> Iterator[VSphereSession]:
    with connect(vcsim.host, vcsim.port, vcsim.user, vcsim.password, fingerprint=None,
                 insecure=True) as s:
        yield s


def test_a_snapshot_name_says_whose_it_is() -> None:
    name = session_snapshot_name(ME, ENDED)
    assert name.startswith("vmkeep-") and ME in name and ENDED in name
    owner = snapshot_owner(name)
    assert owner is not None and (owner.appliance_id, owner.session_id) == (ME, ENDED)
    offline = snapshot_name()
    assert offline.startswith("vmkeep-offline-")
    assert snapshot_owner(offline) is None  # an offline backup's: no appliance owns it
    assert snapshot_owner("vmkeep-20260101T000000Z") is None  # an older vmkeep's
    assert snapshot_owner("before-upgrade") is None


def test_only_this_appliances_finished_sessions_snapshots_are_removed(
        session: VSphereSession) -> None:
    vm = vm_object(session)
    create_snapshot(session, vm._moId, "before-upgrade", "the user's own")
    ended = create_snapshot(session, vm._moId, session_snapshot_name(ME, ENDED))
    create_snapshot(session, vm._moId, session_snapshot_name(ME, RUNNING))
    create_snapshot(session, vm._moId, session_snapshot_name(OTHER, ENDED))
    create_snapshot(session, vm._moId, "vmkeep-offline-20260101T000000Z")
    create_snapshot(session, vm_object(session, VM1)._moId,
                    session_snapshot_name(ME, ENDED))
    kept = [n for n in snapshot_names(session) if n != ended.name]

    # Before one VM's backup: that VM only.
    uuid = find_vm(session, VM).instance_uuid
    removals = remove_leftovers(session, ME, lambda: frozenset({RUNNING}), vm=uuid)
    assert [(r.leftover.vm_name, r.leftover.snapshot_name, r.leftover.session_id, r.removed)
            for r in removals] == [(VM, ended.name, ENDED, True)]
    assert ended.name in removals[0].message and ENDED in removals[0].message
    assert snapshot_names(session) == kept
    assert snapshot_names(session, VM1) == [session_snapshot_name(ME, ENDED)]

    # At start: every VM.
    removals = remove_leftovers(session, ME, lambda: frozenset({RUNNING}))
    assert [(r.leftover.vm_name, r.removed) for r in removals] == [(VM1, True)]
    assert snapshot_names(session, VM1) == []
    assert snapshot_names(session) == kept
    assert remove_leftovers(session, ME, lambda: frozenset({RUNNING})) == ()


def test_a_session_that_starts_while_looking_keeps_its_snapshot(
        session: VSphereSession) -> None:
    """Which sessions run is asked after the snapshots are listed: a session that starts
    (and takes its snapshot) meanwhile is not in the answer, and its snapshot is not in the
    listing either."""
    vm = vm_object(session)
    late = session_snapshot_name(ME, RUNNING)

    def running() -> frozenset[str]:
        # a session starts now; the answer was computed before
        create_snapshot(session, vm._moId, late)
        return frozenset()

    assert remove_leftovers(session, ME, running) == ()
    assert snapshot_names(session) == [late]
