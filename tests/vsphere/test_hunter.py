"""Snapshot Hunter against vcsim: leftovers found, listed first, removed; others left alone."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.vsphere import hunter
from appliance.vsphere.hunter import (
    Action,
    Finding,
    FindingKind,
    HuntPlan,
    Status,
    describe,
    execute_hunt,
    plan_hunt,
)
from appliance.vsphere.inventory import find_vm
from appliance.vsphere.session import VSphereSession, connect, fetch_fingerprint
from appliance.vsphere.snapshot import create_snapshot, snapshot_name
from tests.vcsim import Vcsim
from tests.vsphere.vmenv import snapshot_names, vm_object

VM = "DC0_H0_VM0"


@pytest.fixture
def session(vcsim: Vcsim) -> Iterator[VSphereSession]:
    pin = fetch_fingerprint(vcsim.host, vcsim.port)
    with connect(vcsim.host, vcsim.port, vcsim.user, vcsim.password, fingerprint=pin) as s:
        yield s


def test_no_leftovers_is_an_empty_plan_and_execute_is_a_no_op(session: VSphereSession) -> None:
    plan = plan_hunt(session)
    assert plan.empty and plan.vms_checked == 4
    assert describe(plan) == ["Snapshot Hunter: nothing to fix (4 VMs checked)"]
    assert execute_hunt(session, plan).outcomes == ()
    assert all(not find_vm(session, v).snapshots for v in (VM, "DC0_H0_VM1"))


def test_leftover_is_listed_first_and_removed_user_snapshot_untouched(
        session: VSphereSession) -> None:
    vm = vm_object(session)
    create_snapshot(session, vm._moId, "before-upgrade", "the user's own")
    leftover = create_snapshot(session, vm._moId, snapshot_name())  # a crashed run: not removed
    other = create_snapshot(session, vm_object(session, "DC0_H0_VM1")._moId,
                            snapshot_name())

    plan = plan_hunt(session)
    assert [f.snapshot_moref for f in plan.findings[:2]] == [leftover.moref, other.moref]
    assert all(f.kind is FindingKind.LEFTOVER_SNAPSHOT for f in plan.findings[:2])
    assert all(f.snapshot_name != "before-upgrade" for f in plan.findings)
    lines = describe(plan)
    assert leftover.name in lines[1] and "remove snapshot" in lines[1]
    assert "before-upgrade" not in "\n".join(lines)

    result = execute_hunt(session, plan)
    assert result.ok
    assert {o.finding.snapshot_moref for o in result.fixed} == {leftover.moref, other.moref}
    assert snapshot_names(session) == ["before-upgrade"]
    assert snapshot_names(session, "DC0_H0_VM1") == []
    assert not [f for f in plan_hunt(session).findings
                if f.kind is not FindingKind.ORPHAN_SNAPSHOT_FILE]


def test_user_snapshot_removed_only_with_include_foreign(session: VSphereSession) -> None:
    user = create_snapshot(session, vm_object(session)._moId, "before-upgrade",
                           "the user's own")
    assert not [f for f in plan_hunt(session).findings if f.snapshot_moref == user.moref]

    plan = plan_hunt(session, include_foreign=True)
    mine = [f for f in plan.findings if f.snapshot_moref == user.moref]
    assert [f.kind for f in mine] == [FindingKind.FOREIGN_SNAPSHOT]
    assert "not vmkeep's" in describe(plan)[1]
    # A plan carried out without include_foreign does not touch it, even if handed the finding.
    refused = execute_hunt(session, dataclasses.replace(plan, include_foreign=False))
    assert [o.status for o in refused.outcomes] == [Status.FAILED]
    assert snapshot_names(session) == ["before-upgrade"]
    assert execute_hunt(session, plan).ok
    assert snapshot_names(session) == []


def test_executing_a_stale_plan_counts_a_vanished_snapshot_as_fixed(
        session: VSphereSession) -> None:
    vm = vm_object(session)
    create_snapshot(session, vm._moId, snapshot_name())
    plan = plan_hunt(session)
    assert execute_hunt(session, plan).ok
    again = execute_hunt(session, plan)
    assert again.ok and "already gone" in again.outcomes[0].detail


class _NeedsConsolidation:
    """The real vcsim VM, but saying its disks need consolidation (vcsim never sets it)."""

    def __init__(self, vm: Any) -> None:
        self._vm = vm
        self.runtime = type("Runtime", (), {"consolidationNeeded": True})()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._vm, name)


def _consolidation_plan(session: VSphereSession, monkeypatch: pytest.MonkeyPatch,
                        include_foreign: bool = False) -> HuntPlan:
    info = dataclasses.replace(find_vm(session, VM), consolidation_needed=True)
    real = vm_object(session)
    monkeypatch.setattr(hunter, "_vm_object", lambda s, moref: _NeedsConsolidation(real))
    findings = hunter.findings_for_vm(info, None, include_foreign=include_foreign)
    return HuntPlan(hunter.order_findings(findings), 1, include_foreign)


def test_failed_consolidation_escalates_to_remove_all(
        session: VSphereSession, monkeypatch: pytest.MonkeyPatch) -> None:
    create_snapshot(session, vm_object(session)._moId, snapshot_name())
    plan = _consolidation_plan(session, monkeypatch)
    assert [f.kind for f in plan.findings] == [FindingKind.LEFTOVER_SNAPSHOT,
                                              FindingKind.CONSOLIDATION_NEEDED]
    assert "if that fails, remove all snapshots" in describe(plan)[2]
    result = execute_hunt(session, plan)
    assert result.ok, result.outcomes
    # vcsim does not implement ConsolidateVMDisks_Task: the failure escalates to remove-all.
    assert "removed all snapshots instead" in result.outcomes[1].detail
    assert snapshot_names(session) == []


def test_remove_all_never_deletes_a_user_snapshot(
        session: VSphereSession, monkeypatch: pytest.MonkeyPatch) -> None:
    create_snapshot(session, vm_object(session)._moId, "before-upgrade")
    plan = _consolidation_plan(session, monkeypatch)
    (f,) = plan.findings
    assert f.action is Action.CONSOLIDATE and not f.remove_all_allowed
    assert "before-upgrade" in describe(plan)[1] and "stop" in describe(plan)[1]
    (outcome,) = execute_hunt(session, plan).outcomes
    assert outcome.status is Status.FAILED and "include_foreign" in outcome.detail
    assert snapshot_names(session) == ["before-upgrade"]


def test_remove_all_rechecks_for_user_snapshots_taken_since_the_plan(
        session: VSphereSession, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = _consolidation_plan(session, monkeypatch)
    assert plan.findings[0].remove_all_allowed
    create_snapshot(session, vm_object(session)._moId, "taken-meanwhile")
    (outcome,) = execute_hunt(session, plan).outcomes
    assert outcome.status is Status.FAILED and "taken-meanwhile" in outcome.detail
    assert snapshot_names(session) == ["taken-meanwhile"]


def test_orphan_snapshot_file_is_reported_not_touched(session: VSphereSession) -> None:
    vm = vm_object(session)
    ds_name, rel = str(vm.config.files.vmPathName)[1:].split("] ", 1)
    (ds,) = [d for d in vm.datastore if d.name == ds_name]
    orphan = Path(ds.info.url) / Path(rel).parent / f"{VM}-Snapshot9.vmsn"
    orphan.write_bytes(b"left by a crashed snapshot")
    vm.RefreshStorageInfo()  # vSphere notices files in the VM's folder on refresh

    plan = plan_hunt(session)
    (f,) = plan.findings
    assert f.kind is FindingKind.ORPHAN_SNAPSHOT_FILE and f.action is Action.REPORT_ONLY
    assert f.file_name and f.file_name.endswith("-Snapshot9.vmsn") and f.vm_name == VM
    assert "report only" in describe(plan)[1]
    assert [o.status for o in execute_hunt(session, plan).outcomes] == [Status.REPORTED]
    assert orphan.exists()


def test_snapshot_files_of_live_snapshots_are_not_orphans(session: VSphereSession) -> None:
    create_snapshot(session, vm_object(session)._moId, "before-upgrade")
    vm_object(session).RefreshStorageInfo()
    assert plan_hunt(session).empty


def test_describe_numbers_findings() -> None:
    f = Finding(FindingKind.CONSOLIDATION_NEEDED, "web", "vm-1", "disks need consolidation",
                Action.CONSOLIDATE, remove_all_allowed=True)
    lines = describe(HuntPlan((f,), 3))
    assert lines[0] == "Snapshot Hunter: 1 finding(s) on 3 VMs"
    assert lines[1].startswith("1. VM 'web' (vm-1): disks need consolidation -> consolidate")


def test_orphan_files_rule() -> None:
    lf = hunter.LayoutFile
    layout = hunter.FileLayout(
        (lf(1, "[ds] vm/disk.vmdk", "diskDescriptor"),
         lf(2, "[ds] vm/disk-000001.vmdk", "diskDescriptor"),
         lf(3, "[ds] vm/disk-000002-sesparse.vmdk", "diskExtent"),
         lf(4, "[ds] vm/vm.vmx", "config")), frozenset({1, 2}))
    assert [f.key for f in hunter.orphan_files(layout)] == [3]
    assert hunter.orphan_files(layout, has_snapshots=True) == []
