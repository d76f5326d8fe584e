"""pyVmomi plumbing shared by the adapter's modules (private: nothing here is public API).

Managed objects are made from their moref ids on the session's connection, tasks are waited
for, and the PropertyCollector is asked; every public function of ``appliance.vsphere``
takes and returns our own values and resolves them here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from pyVmomi import vim, vmodl

from appliance.errors import VSphereError
from appliance.vsphere.session import VSphereSession


class VsphereTaskError(VSphereError):
    """A vSphere task failed, was cancelled or did not finish in time."""

    code = "vsphere_task"


def fault_text(fault: Any) -> str:
    msg = getattr(fault, "msg", None) or getattr(fault, "localizedMessage", None)
    text = f"{type(fault).__name__}: {msg}" if msg else type(fault).__name__
    return " ".join(str(text).split())


def vm_object(session: VSphereSession, moref: str) -> Any:
    """The ``vim.VirtualMachine`` with this moref id on the session's connection (no call)."""
    return vim.VirtualMachine(moref, session.si._stub)  # type: ignore[no-untyped-call]


def snapshot_object(session: VSphereSession, moref: str) -> Any:
    """The ``vim.vm.Snapshot`` with this moref id on the session's connection (no call)."""
    return vim.vm.Snapshot(moref, session.si._stub)  # type: ignore[no-untyped-call]


def wait_for_task(task: Any, timeout: float | None = 3600.0, *, what: str = "vSphere task",
                  session: VSphereSession | None = None,
                  progress: Callable[[str], None] | None = None,
                  every: float = 60.0) -> Any:
    """Wait until ``task`` ends; return its result. Polls with back-off (0.05 s up to 2 s).
    ``timeout`` None follows the task to its end however long it takes. With ``session``,
    the task's state is read through ``session.call`` (an expired session is logged in
    again). ``progress`` is told how far the task is every ``every`` seconds it runs."""
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    told = start
    delay = 0.05
    while True:
        try:
            info = session.call(lambda: task.info) if session is not None else task.info
            state = info.state
        except vmodl.MethodFault as exc:
            raise VsphereTaskError(f"{what}: reading the task's state failed "
                                   f"({fault_text(exc)})") from exc
        if state == vim.TaskInfo.State.success:
            return info.result
        if state == vim.TaskInfo.State.error:
            err = info.error
            reason = fault_text(err) if err else "no reason given"
            exc2 = VsphereTaskError(f"{what} failed: {reason}")
            if isinstance(err, BaseException):
                raise exc2 from err
            raise exc2
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            raise VsphereTaskError(f"{what} did not finish within {timeout:g} s "
                                   f"(state {state}); check the task in vSphere")
        if progress is not None and now - told >= every:
            told = now
            done = f"{info.progress} % done" if info.progress is not None else str(state)
            progress(f"{what}: still running after {now - start:.0f} s ({done})")
        wait = delay if deadline is None else min(delay, max(0.0, deadline - now))
        time.sleep(wait)
        delay = min(delay * 2, 2.0)


def collect(session: VSphereSession, container: Any, obj_type: Any,
            paths: Sequence[str]) -> list[tuple[Any, dict[str, Any]]]:
    """Objects of ``obj_type`` under ``container`` with the named properties (unset: absent)."""
    pc_types: Any = vmodl.query.PropertyCollector  # pyVmomi data types are untyped

    def run() -> list[tuple[Any, dict[str, Any]]]:
        content = session.content
        view = content.viewManager.CreateContainerView(container, [obj_type], True)
        try:
            traversal = pc_types.TraversalSpec(
                name="traverseView", path="view", skip=False, type=vim.view.ContainerView)
            obj_spec = pc_types.ObjectSpec(obj=view, skip=True, selectSet=[traversal])
            prop_spec = pc_types.PropertySpec(type=obj_type, pathSet=list(paths), all=False)
            filter_spec = pc_types.FilterSpec(objectSet=[obj_spec], propSet=[prop_spec])
            collector = content.propertyCollector
            result = collector.RetrievePropertiesEx([filter_spec], pc_types.RetrieveOptions())
            out: list[tuple[Any, dict[str, Any]]] = []
            while result is not None:
                for oc in result.objects:
                    out.append((oc.obj, {p.name: p.val for p in (oc.propSet or [])}))
                if not result.token:
                    break
                result = collector.ContinueRetrievePropertiesEx(result.token)
            return out
        finally:
            view.Destroy()

    return session.call(run)


def inventory_path(entity: Any) -> str:
    """The entity's inventory path below the root folder, as ``dcPath`` takes a datacenter's:
    ``F0/DC0`` for datacenter DC0 in folder F0 (``DC0`` directly under the root)."""
    names: list[str] = []
    node = entity
    while node is not None:
        parent = node.parent
        if parent is None:  # the root folder
            break
        names.append(str(node.name))
        node = parent
    return "/".join(reversed(names))


def type_name(obj: Any) -> str:
    """``vim.vm.device.VirtualLsiLogicController`` → ``VirtualLsiLogicController``."""
    return type(obj).__name__.rsplit(".", 1)[-1]
