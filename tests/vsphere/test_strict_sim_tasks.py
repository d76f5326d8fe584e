"""The simulator's strict switches for tasks, sessions and authorization
(scripts/vcsim/overlay/simulator/vmkeep_tasks.go, vmkeep_authz.go), checked directly with
pyVmomi and httpx: slow and failing tasks, consolidation left needed, sessions that expire,
methods disabled and enabled by source, a restricted account's privileges. Each test starts a
simulator with its switches (and, where it matters, one without them). Tests never sleep:
they poll with deadlines (tests.helpers.poll)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVim.task import WaitForTask
from pyVmomi import vim, vmodl

from tests.helpers import poll
from tests.vsphere.test_strict_sim import VM, Sim, Start, start

__all__ = ["start"]  # the fixture, shared with test_strict_sim.py


def _snapshot(vm: Any, name: str = "s1") -> Any:
    return vm.CreateSnapshot_Task(name=name, description="", memory=False, quiesce=False)


def _snapshots(vm: Any) -> Any:
    """vm.snapshot (typed Any, so that asserting it is None narrows nothing)."""
    return vm.snapshot


def _state(task: Any) -> str:
    return str(task.info.state)


def _done(task: Any, timeout: float = 30.0) -> Any:
    """Wait (polling) until the task has ended; its info."""
    return poll(lambda: f"task {task.info.name} to end (now {_state(task)})",
                lambda: task.info if _state(task) in ("success", "error") else None,
                timeout=timeout)


# --- 1. Tasks: delays, progress, injected failures, consolidation ---------------------------

def test_tasks_complete_at_once_by_default(start: Start) -> None:
    s = start()
    vm = s.obj(vim.VirtualMachine, VM)
    task = _snapshot(vm)
    assert _state(task) == "success"  # already, when the method answers
    assert vm.snapshot.currentSnapshot == task.info.result
    assert _state(vm.ReconfigVM_Task(vim.vm.ConfigSpec(annotation="x"))) == "success"  # type: ignore[no-untyped-call]
    task = vm.snapshot.currentSnapshot.RemoveSnapshot_Task(removeChildren=False)
    assert _state(task) == "success" and vm.snapshot is None
    assert not vm.runtime.consolidationNeeded


# The delays where a test reads a task as running right after starting it are long enough
# (4 s) for that read to come first on a loaded two-core CI machine.


def test_a_delayed_snapshot_stays_running_with_progress(start: Start) -> None:
    s = start({"VCSIM_TASK_DELAY": "CreateSnapshot=4s,RemoveSnapshot_Task=4s"})
    vm = s.obj(vim.VirtualMachine, VM)
    t0 = time.monotonic()
    task = _snapshot(vm)
    assert _state(task) == "running"
    assert _snapshots(vm) is None  # not taken yet
    poll("progress while running",
         lambda: _state(task) == "running" and (task.info.progress or 0) >= 10)
    info = _done(task)
    assert info.state == "success" and time.monotonic() - t0 >= 3.9
    snap = vm.snapshot.currentSnapshot
    assert snap == info.result and snap is not None

    task = snap.RemoveSnapshot_Task(removeChildren=False)
    assert _state(task) == "running"
    assert vm.snapshot.currentSnapshot == snap  # still there while the task runs
    assert _done(task).state == "success"
    assert vm.snapshot is None


def test_a_delayed_reconfigure_changes_the_vm_at_its_end(start: Start) -> None:
    s = start({"VCSIM_TASK_DELAY": "reconfigvm=4s"})
    vm = s.obj(vim.VirtualMachine, VM)
    before = vm.config.annotation
    task = vm.ReconfigVM_Task(vim.vm.ConfigSpec(annotation="changed"))  # type: ignore[no-untyped-call]
    assert _state(task) == "running" and vm.config.annotation == before
    assert _done(task).state == "success"
    assert vm.config.annotation == "changed"
    assert _state(_snapshot(vm)) == "success"  # other kinds are not delayed


def test_the_nth_task_of_a_kind_fails_without_effect(start: Start) -> None:
    s = start({"VCSIM_TASK_FAIL": "CreateSnapshot:2,ReconfigVM:1,CreateSnapshot:3"})
    vm = s.obj(vim.VirtualMachine, VM)
    WaitForTask(_snapshot(vm, "a"))  # type: ignore[no-untyped-call]
    for name in ("b", "c"):
        task = _snapshot(vm, name)
        with pytest.raises(vim.fault.GenericVmConfigFault) as exc:
            WaitForTask(task)  # type: ignore[no-untyped-call]
        assert "injected failure" in exc.value.reason
        assert "injected failure" in task.info.error.msg
    WaitForTask(_snapshot(vm, "d"))  # type: ignore[no-untyped-call]
    names = [t.name for t in vm.snapshot.rootSnapshotList]
    names += [c.name for t in vm.snapshot.rootSnapshotList for c in t.childSnapshotList]
    assert names == ["a", "d"]

    before = vm.config.annotation
    with pytest.raises(vim.fault.GenericVmConfigFault):
        WaitForTask(vm.ReconfigVM_Task(vim.vm.ConfigSpec(annotation="x")))  # type: ignore[no-untyped-call]
    assert vm.config.annotation == before
    WaitForTask(vm.ReconfigVM_Task(vim.vm.ConfigSpec(annotation="y")))  # type: ignore[no-untyped-call]
    assert vm.config.annotation == "y"


def test_a_delayed_failure_fails_at_the_delays_end(start: Start) -> None:
    s = start({"VCSIM_TASK_DELAY": "RemoveSnapshot=4s", "VCSIM_TASK_FAIL": "RemoveSnapshot:1"})
    vm = s.obj(vim.VirtualMachine, VM)
    WaitForTask(_snapshot(vm))  # type: ignore[no-untyped-call]
    snap = vm.snapshot.currentSnapshot
    task = snap.RemoveSnapshot_Task(removeChildren=False)
    assert _state(task) == "running"
    info = _done(task)
    assert info.state == "error" and isinstance(info.error, vim.fault.GenericVmConfigFault)
    assert vm.snapshot.currentSnapshot == snap  # not removed
    WaitForTask(snap.RemoveSnapshot_Task(removeChildren=False))  # type: ignore[no-untyped-call]
    assert vm.snapshot is None


def test_a_delayed_task_whose_object_went_away_fails_cleanly(start: Start) -> None:
    s = start({"VCSIM_TASK_DELAY": "RemoveSnapshot=1s"})
    vm = s.obj(vim.VirtualMachine, VM)
    WaitForTask(_snapshot(vm))  # type: ignore[no-untyped-call]
    snap = vm.snapshot.currentSnapshot
    first = snap.RemoveSnapshot_Task(removeChildren=False)
    second = snap.RemoveSnapshot_Task(removeChildren=False)
    # Both end after the same delay, in either order: one removes the snapshot, the other
    # finds it gone.
    infos = sorted((_done(first), _done(second)), key=lambda i: i.state != "success")
    assert [i.state for i in infos] == ["success", "error"]
    assert isinstance(infos[1].error, vmodl.fault.SystemError)
    assert vm.name == VM  # the simulator is still there


def test_removal_can_leave_consolidation_needed(start: Start) -> None:
    default = start()
    vm = default.obj(vim.VirtualMachine, VM)
    with pytest.raises(vmodl.fault.MethodNotFound):
        vm.ConsolidateVMDisks_Task()  # upstream has no such method

    s = start({"VCSIM_CONSOLIDATION_NEEDED": "1", "VCSIM_TASK_DELAY": "ConsolidateVMDisks=4s"})
    vm = s.obj(vim.VirtualMachine, VM)
    assert not vm.runtime.consolidationNeeded
    WaitForTask(_snapshot(vm))  # type: ignore[no-untyped-call]
    WaitForTask(vm.snapshot.currentSnapshot.RemoveSnapshot_Task(  # type: ignore[no-untyped-call]
        removeChildren=False))
    assert vm.runtime.consolidationNeeded is True
    assert vm.summary.runtime.consolidationNeeded is True
    task = vm.ConsolidateVMDisks_Task()
    assert _state(task) == "running" and vm.runtime.consolidationNeeded is True
    assert _done(task).state == "success"
    assert vm.runtime.consolidationNeeded is False
    assert vm.summary.runtime.consolidationNeeded is False

    WaitForTask(_snapshot(vm))
    WaitForTask(vm.RemoveAllSnapshots_Task())
    assert vm.runtime.consolidationNeeded is True


def test_a_consolidation_can_fail(start: Start) -> None:
    s = start({"VCSIM_CONSOLIDATION_NEEDED": "1", "VCSIM_TASK_FAIL": "ConsolidateVMDisks:1"})
    vm = s.obj(vim.VirtualMachine, VM)
    WaitForTask(_snapshot(vm))  # type: ignore[no-untyped-call]
    WaitForTask(vm.snapshot.currentSnapshot.RemoveSnapshot_Task(  # type: ignore[no-untyped-call]
        removeChildren=False))
    with pytest.raises(vim.fault.GenericVmConfigFault):
        WaitForTask(vm.ConsolidateVMDisks_Task())  # type: ignore[no-untyped-call]
    assert vm.runtime.consolidationNeeded is True
    WaitForTask(vm.ConsolidateVMDisks_Task())  # type: ignore[no-untyped-call]
    assert vm.runtime.consolidationNeeded is False


@pytest.mark.parametrize("env", [{"VCSIM_TASK_DELAY": "PowerOnVM=1s"},
                                 {"VCSIM_TASK_DELAY": "CreateSnapshot=soon"},
                                 {"VCSIM_TASK_FAIL": "CreateSnapshot:0"},
                                 {"VCSIM_TASK_FAIL": "CreateSnapshot"}])
def test_bad_task_switches_stop_the_simulator(start: Start, env: dict[str, str]) -> None:
    with pytest.raises(AssertionError, match="did not start"):
        start(env)


# --- 2. Sessions expire when idle -----------------------------------------------------------

def _alive(s: Sim) -> bool:
    try:
        s.si.CurrentTime()
    except vim.fault.NotAuthenticated:
        return False
    return True


def test_an_idle_session_expires_for_soap_and_folder(start: Start) -> None:
    lenient = start({"VCSIM_FOLDER_AUTH": "1"})
    s = start({"VCSIM_SESSION_IDLE": "3s", "VCSIM_FOLDER_AUTH": "1"})
    vm = s.obj(vim.VirtualMachine, VM)

    # SOAP calls keep it alive well past the idle time.
    t0 = time.monotonic()
    poll("4 s of calls", lambda: _alive(s) and time.monotonic() - t0 > 4, every=0.3)
    last_call = time.monotonic()
    assert vm.name == VM

    # /folder requests do not: the cookie stops working once the session is idle for 3 s.
    assert s.session(s.url()).status_code == 200
    poll("/folder to refuse the expired session",
         lambda: s.session(s.url()).status_code == 401, timeout=15, every=0.2)
    assert time.monotonic() - last_call >= 3
    with pytest.raises(vim.fault.NotAuthenticated):
        s.si.CurrentTime()
    with pytest.raises(vim.fault.NotAuthenticated):
        vm.name  # noqa: B018  (a property read needs a session, as on vSphere)

    # Without the switch, the session (idle for as long) lives on.
    assert lenient.session(lenient.url()).status_code == 200
    assert _alive(lenient)
    assert lenient.obj(vim.VirtualMachine, VM).name == VM

    # A new login works.
    si = SmartConnect(host=s.sim.host, port=s.sim.port, user=s.sim.user,  # type: ignore[no-untyped-call]
                      pwd=s.sim.password, disableSslCertValidation=True)
    try:
        assert si.CurrentTime()
    finally:
        Disconnect(si)  # type: ignore[no-untyped-call]


def _read_name(s: Sim, vm: Any) -> Any:
    """RetrievePropertiesEx of vm.name, as pyVmomi's property access sends it."""
    spec = vmodl.query.PropertyCollector.FilterSpec(  # type: ignore[no-untyped-call]
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=vm)],  # type: ignore[no-untyped-call]
        propSet=[vmodl.query.PropertyCollector.PropertySpec(  # type: ignore[no-untyped-call]
            type=vim.VirtualMachine, pathSet=["name"])])
    return s.si.content.propertyCollector.RetrievePropertiesEx(
        specSet=[spec], options=vmodl.query.PropertyCollector.RetrieveOptions())  # type: ignore[no-untyped-call]


def test_property_reads_without_a_session(start: Start) -> None:
    for env, refused in (({}, False), ({"VCSIM_SESSION_IDLE": "1m"}, True)):
        s = start(env)
        vm = s.obj(vim.VirtualMachine, VM)
        Disconnect(s.si)  # type: ignore[no-untyped-call]
        if refused:  # the method fails, as on vSphere
            with pytest.raises(vim.fault.NotAuthenticated):
                _read_name(s, vm)
        else:  # upstream answers, with a fault per property
            result = _read_name(s, vm)
            missing = result.objects[0].missingSet
            assert [m.path for m in missing] == ["name"]
            assert isinstance(missing[0].fault, vim.fault.NotAuthenticated)


def test_bad_session_idle_stops_the_simulator(start: Start) -> None:
    with pytest.raises(AssertionError, match="did not start"):
        start({"VCSIM_SESSION_IDLE": "soon"})


# --- 3. AuthorizationManager.DisableMethods / EnableMethods ---------------------------------

def _soap(s: Sim, body: str) -> httpx.Response:
    """A raw SOAP call in the session (pyVmomi has no DisableMethods: it is vCenter's internal
    API, urn:internalvim25)."""
    envelope = ('<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
                'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
                f'<soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>')
    return s.session(f"{s.base}/sdk", method="POST", content=envelope.encode(),
                     headers={"Content-Type": "text/xml; charset=utf-8",
                              "SOAPAction": "urn:internalvim25/6.7"})


def _refs(s: Sim, entities: list[Any]) -> str:
    am = s.si.content.authorizationManager._moId
    return (f'<_this type="AuthorizationManager">{am}</_this>'
            + "".join(f'<entity type="{e._wsdlName}">{e._moId}</entity>' for e in entities))


def _disable(s: Sim, entities: list[Any], methods: list[str], source: str) -> httpx.Response:
    ms = "".join(f"<method><method>{m}</method><reasonId>vmkeep.backup</reasonId></method>"
                 for m in methods)
    return _soap(s, f'<DisableMethods xmlns="urn:internalvim25">{_refs(s, entities)}{ms}'
                    f"<sourceId>{source}</sourceId></DisableMethods>")


def _enable(s: Sim, entities: list[Any], methods: list[str], source: str) -> httpx.Response:
    ms = "".join(f"<method>{m}</method>" for m in methods)
    return _soap(s, f'<EnableMethods xmlns="urn:internalvim25">{_refs(s, entities)}{ms}'
                    f"<sourceId>{source}</sourceId></EnableMethods>")


def _disabled(vm: Any) -> list[str]:
    return sorted(str(m) for m in vm.disabledMethod)


def _relocate(vm: Any) -> None:
    WaitForTask(vm.RelocateVM_Task(vim.vm.RelocateSpec()))  # type: ignore[no-untyped-call]


def test_methods_are_disabled_and_enabled_by_source(start: Start) -> None:
    default = start()
    vm = default.obj(vim.VirtualMachine, VM)
    r = _disable(default, [vm], ["RelocateVM_Task"], "vmkeep")
    assert r.status_code == 500 and b"DisableMethods" in r.content  # upstream has no such method
    _relocate(vm)

    s = start({"VCSIM_METHOD_DISABLING": "1"})
    vm, other = s.obj(vim.VirtualMachine, VM), s.obj(vim.VirtualMachine, "DC0_H0_VM1")
    assert _disabled(vm) == []
    r = _disable(s, [vm], ["RelocateVM_Task", "Destroy_Task"], "vmkeep")
    assert r.status_code == 200 and b"DisableMethodsResponse" in r.content
    assert _disabled(vm) == ["Destroy_Task", "RelocateVM_Task"]
    with pytest.raises(vim.fault.MethodDisabled) as exc:
        _relocate(vm)
    assert exc.value.source == "vmkeep"
    _relocate(other)  # only the named entities
    assert _disabled(other) == []

    assert _disable(s, [vm], ["RelocateVM_Task"], "other-tool").status_code == 200
    assert _enable(s, [vm], ["RelocateVM_Task", "Destroy_Task"], "vmkeep").status_code == 200
    assert _disabled(vm) == ["RelocateVM_Task"]  # still disabled by the other source
    with pytest.raises(vim.fault.MethodDisabled) as exc:
        _relocate(vm)
    assert exc.value.source == "other-tool"
    assert _enable(s, [vm], ["RelocateVM_Task"], "other-tool").status_code == 200
    assert _disabled(vm) == []
    _relocate(vm)
    assert _enable(s, [vm], ["RelocateVM_Task"], "vmkeep").status_code == 200  # a no-op

    gone = vim.VirtualMachine("vm-does-not-exist", s.si._stub)  # type: ignore[no-untyped-call]
    r = _disable(s, [gone], ["RelocateVM_Task"], "vmkeep")
    assert r.status_code == 500 and b"ManagedObjectNotFound" in r.content


# --- 4. A restricted account ----------------------------------------------------------------

GRANTED = ["System.Anonymous", "System.View", "System.Read",
           "VirtualMachine.State.CreateSnapshot", "VirtualMachine.State.RemoveSnapshot"]
ASKED = ["VirtualMachine.State.CreateSnapshot", "Datastore.Browse", "System.View",
         "Global.DisableMethods", "VirtualMachine.Config.ChangeTracking"]
RESTRICTED = {"VCSIM_RESTRICTED_USER": "backup:b4ckup-secret",
              "VCSIM_RESTRICTED_PRIVILEGES": ",".join(GRANTED),
              "VCSIM_METHOD_DISABLING": "1"}


def _login(s: Sim, user: str, pwd: str) -> Sim:
    si = SmartConnect(host=s.sim.host, port=s.sim.port, user=user,  # type: ignore[no-untyped-call]
                      pwd=pwd, disableSslCertValidation=True)
    return Sim(s.sim, si)


def _granted(s: Sim, session_key: str, entities: list[Any]) -> dict[str, dict[str, bool]]:
    am = s.si.content.authorizationManager
    result = am.HasPrivilegeOnEntities(entity=entities, sessionId=session_key, privId=ASKED)
    return {r.entity._moId: {p.privId: p.isGranted for p in r.privAvailability}
            for r in result}


def test_a_restricted_account_is_granted_only_its_privileges(start: Start) -> None:
    s = start(RESTRICTED)
    with pytest.raises(vim.fault.InvalidLogin):
        _login(s, "backup", "wrong")
    r = _login(s, "backup", "b4ckup-secret")
    try:
        assert r.si.content.sessionManager.currentSession.userName == "backup"
        vm, dc = r.obj(vim.VirtualMachine, VM), r.obj(vim.Datacenter, "DC0")
        key = r.si.content.sessionManager.currentSession.key
        want = {p: p in GRANTED for p in ASKED}
        assert _granted(r, key, [vm, dc]) == {vm._moId: want, dc._moId: want}
        assert _granted(s, key, [vm]) == {vm._moId: want}  # asked by another session
        am = r.si.content.authorizationManager
        assert am.HasPrivilegeOnEntity(entity=vm, sessionId=key, privId=ASKED) == \
            [p in GRANTED for p in ASKED]
        [fetched] = am.FetchUserPrivilegeOnEntities(entities=[vm], userName="backup")
        assert sorted(fetched.privileges) == sorted(GRANTED)
        [user] = am.HasUserPrivilegeOnEntities(entities=[vm], userName="backup", privId=ASKED)
        assert {p.privId: p.isGranted for p in user.privAvailability} == want

        # The main account is granted everything, as upstream grants everyone.
        main_key = s.si.content.sessionManager.currentSession.key
        assert _granted(s, main_key, [vm]) == {vm._moId: dict.fromkeys(ASKED, True)}
        [fetched] = am.FetchUserPrivilegeOnEntities(entities=[vm], userName=s.sim.user)
        assert "Datastore.Browse" in fetched.privileges
        assert _granted(s, "no-such-session", [vm]) == {vm._moId: dict.fromkeys(ASKED, False)}

        # Privileges are not enforced on methods, except DisableMethods/EnableMethods.
        WaitForTask(_snapshot(vm))  # type: ignore[no-untyped-call]
        resp = _disable(r, [vm], ["RelocateVM_Task"], "vmkeep")
        assert resp.status_code == 500 and b"NoPermission" in resp.content
        assert b"Global.DisableMethods" in resp.content
        assert _disable(s, [vm], ["RelocateVM_Task"], "vmkeep").status_code == 200
    finally:
        Disconnect(r.si)  # type: ignore[no-untyped-call]


def test_without_the_switch_everyone_is_granted_everything(start: Start) -> None:
    s = start()
    vm = s.obj(vim.VirtualMachine, VM)
    assert _granted(s, "no-such-session", [vm]) == {vm._moId: dict.fromkeys(ASKED, True)}
    with pytest.raises(vim.fault.InvalidLogin):
        _login(s, "backup", "b4ckup-secret")


@pytest.mark.parametrize("env", [{"VCSIM_RESTRICTED_USER": "backup"},
                                 {"VCSIM_RESTRICTED_USER": "backup:x",
                                  "VCSIM_RESTRICTED_PRIVILEGES": "System.View,No.Such"},
                                 {"VCSIM_RESTRICTED_PRIVILEGES": "System.View"}])
def test_bad_restricted_switches_stop_the_simulator(start: Start, env: dict[str, str]) -> None:
    with pytest.raises(AssertionError, match="did not start"):
        start(env)
