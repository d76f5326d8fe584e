"""Snapshots in long jobs against the strict simulator: snapshot and CBT calls survive an
expired session, a removal that leaves consolidation needed is consolidated, a slow removal is
followed to its end, a failed removal is a warning."""

from __future__ import annotations

import pytest

from appliance.vsphere import cbt, hunter, relocation, snapshot
from appliance.vsphere.inventory import find_vm, find_vm_moref
from appliance.vsphere.session import connect
from tests.vcsim import Vcsim
from tests.vsphere.vmenv import VM, Env, warnings_of

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


@pytest.mark.parametrize("vcsim", [{"VCSIM_CONSOLIDATION_NEEDED": "1",
                                    "VCSIM_TASK_DELAY": "ConsolidateVMDisks=1s"}],
                         indirect=True)
def test_a_removal_that_leaves_consolidation_needed_is_consolidated(env: Env) -> None:
    e = env
    r = e.backup()
    assert r.status == "success", e.logs
    assert e.snapshots() == 0
    assert e.vm.runtime.consolidationNeeded is False
    said = [m for _, m in e.logs]
    assert any("needs its disks consolidated" in m for m in said), said
    assert any(m == f"consolidated the disks of VM {VM!r}" for m in said), said


@pytest.mark.parametrize("vcsim", [{"VCSIM_CONSOLIDATION_NEEDED": "1",
                                    "VCSIM_TASK_FAIL": "ConsolidateVMDisks:1"}],
                         indirect=True)
def test_a_failed_consolidation_is_a_warning_of_the_vms_backup(env: Env) -> None:
    e = env
    r = e.backup()
    assert r.status == "warning" and r.point_id, e.logs
    assert e.vm.runtime.consolidationNeeded is True
    [w] = [w for w in warnings_of(e) if "relocation" not in w]
    assert "still needs its disks consolidated" in w and "injected failure" in w, w


@pytest.mark.parametrize("vcsim", [{"VCSIM_TASK_DELAY": "RemoveSnapshot=3s"}], indirect=True)
def test_a_slow_removal_is_followed_to_its_end_with_progress(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    e = env
    monkeypatch.setattr(snapshot, "PROGRESS_EVERY", 0.5)
    r = e.backup()
    assert r.status == "success", e.logs
    assert e.snapshots() == 0
    progress = [m for lvl, m in e.logs if "still running after" in m]
    assert progress and all(m.startswith("removing snapshot") for m in progress), e.logs
    assert any("% done" in m for m in progress), progress


@pytest.mark.parametrize("vcsim", [{"VCSIM_TASK_FAIL": "RemoveSnapshot:1"}], indirect=True)
def test_a_failed_removal_is_a_warning_and_the_snapshot_is_left(env: Env) -> None:
    e = env
    r = e.backup()
    assert r.status == "warning" and r.point_id, e.logs
    assert e.snapshots() == 1
    [w] = [w for w in warnings_of(e) if "relocation" not in w]
    assert "injected failure" in w and "left on the VM" in w and "Snapshot Hunter" in w, w
    assert e.restored(r.point_id, 0) == e.content(0)


@pytest.mark.parametrize("vcsim", [{"VCSIM_METHOD_DISABLING": "1"}], indirect=True)
def test_relocation_is_disabled_during_the_backup_and_enabled_after(env: Env) -> None:
    e = env
    seen: list[list[str]] = []
    r = e.backup(before_read=lambda: seen.append(list(e.vm.disabledMethod)))
    assert r.status == "success", e.logs
    assert seen == [["RelocateVM_Task"]]
    assert list(e.vm.disabledMethod) == []
    assert not warnings_of(e), e.logs


def test_a_server_without_disable_methods_backs_up_without_a_warning(env: Env) -> None:
    e = env
    r = e.backup()
    assert r.status == "success" and not warnings_of(e), e.logs
    assert any("not disabled" in m and "has no DisableMethods" in m for _, m in e.logs), e.logs


RESTRICTED = {"VCSIM_METHOD_DISABLING": "1", "VCSIM_RESTRICTED_USER": "backup:b4ckup-secret",
              "VCSIM_RESTRICTED_PRIVILEGES": "System.View,System.Read"}


@pytest.mark.parametrize("vcsim", [RESTRICTED], indirect=True)
def test_an_account_without_the_privilege_gets_a_logged_warning(vcsim: Vcsim) -> None:
    said: list[tuple[str, str]] = []
    warned: list[str] = []
    ran = False
    with connect(vcsim.host, vcsim.port, "backup", "b4ckup-secret", fingerprint=None,
                 insecure=True) as s:
        moref = find_vm_moref(s, find_vm(s, VM).instance_uuid)
        assert moref
        with relocation.relocation_disabled(s, moref, VM, lambda lvl, m: said.append((lvl, m)),
                                            warned.append) as disabled:
            ran = True
    assert ran and not disabled and not warned
    [(level, msg)] = said
    assert level == "warning" and "NoPermission" in msg and "Global.DisableMethods" in msg, msg


@pytest.mark.parametrize("vcsim", [{"VCSIM_METHOD_DISABLING": "1"}], indirect=True)
def test_the_hunter_enables_relocation_vmkeep_left_disabled(env: Env) -> None:
    e = env
    moref = _moref(e)
    relocation.disable_relocation(e.session, moref)
    assert list(e.vm.disabledMethod) == ["RelocateVM_Task"]
    busy = hunter.plan_hunt(e.session, busy=lambda: {VM})
    assert not [f for f in busy.findings if f.vm_moref == moref]  # a backup runs on it
    plan = hunter.plan_hunt(e.session)
    [f] = [f for f in plan.findings if f.vm_moref == moref]
    assert f.kind is hunter.FindingKind.RELOCATION_DISABLED, f
    assert "enable relocation" in hunter.describe(plan)[1]
    [o] = hunter.execute_hunt(e.session, plan).outcomes
    assert o.status is hunter.Status.FIXED, o
    assert list(e.vm.disabledMethod) == []
    assert hunter.plan_hunt(e.session).empty


@pytest.mark.parametrize("vcsim", [{"VCSIM_METHOD_DISABLING": "1", **IDLE}], indirect=True)
def test_expired_session_then_disable_methods_logs_in_again(env: Env) -> None:
    e = env
    moref = _moref(e)
    _expire(e)
    relocation.disable_relocation(e.session, moref)
    _expire(e)
    relocation.enable_relocation(e.session, moref)
    assert list(e.vm.disabledMethod) == []
