"""A backup copy session: the points of its source jobs' VMs that the target lacks are
copied (and verified) there, one task per VM; then the copy job's own retention."""

from __future__ import annotations

import time

from appliance import api
from appliance.errors import VmkeepError
from appliance.jobs.copy import copy_points
from appliance.repository.repo import Repository
from appliance.service.repositories import RepositoryInfo
from appliance.sessions.core import SessionRun
from appliance.sessions.retention import apply_retention, retention_due


def run_copy(run: SessionRun, spec: api.JobSpec) -> None:
    """Copy the points of each of ``spec.copy_of``'s VMs, then apply the retention."""
    reg = run.registry
    dst_info = reg.repositories.get(spec.repository)
    run.log("info", f"copy job {spec.name!r}: the points of "
                    f"{', '.join(spec.copy_of)} to repository {dst_info.name!r}")
    names: set[str] = set()
    with reg.repositories.open(dst_info, on_reconnect=lambda m: run.log("warning", m)) as dst:
        for source in spec.copy_of:
            names |= _copy_source(run, source, dst_info, dst)
        if retention_due(run, spec) and names:
            apply_retention(run, spec, dst, names, dst_info)


def _copy_source(run: SessionRun, source: str, dst_info: RepositoryInfo, dst: Repository
                 ) -> set[str]:
    """Copy one source job's points, a task per VM; the VMs it covered."""
    reg = run.registry
    src_info = reg.repositories.get(reg.jobs.spec(source).repository)
    if src_info.name == dst_info.name:
        run.log("warning", f"job {source!r} writes to {dst_info.name!r} itself "
                           "now: nothing to copy")
        return set()
    vms = reg.jobs.vm_names(source)
    covered: set[str] = set()
    with reg.repositories.open(src_info) as src:
        by_vm: dict[str, list[str]] = {}
        with reg.workspace(src, src_info.name, exclusive=False, operation="copy") as sws:
            for p in sws.cat.points(src.id):
                if p.object_name in vms:
                    by_vm.setdefault(p.object_name, []).append(p.point_id)
        for vm, ids in sorted(by_vm.items()):
            if run.live.stop.is_set():
                break
            covered.add(vm)
            _copy_vm(run, vm, src, src_info.name, dst, ids, dst_info)
    return covered


def _copy_vm(run: SessionRun, vm: str, src: Repository, src_name: str, dst: Repository,
             ids: list[str], dst_info: RepositoryInfo) -> None:
    task = run.task(vm, vm)
    task.state, task.stage, task.started = "running", "copying", time.monotonic()
    run.notify()
    try:
        reg = run.registry
        with reg.workspace(src, src_name, exclusive=False, operation=f"copy {vm}") as sws, \
                reg.workspace(dst, dst_info.name, exclusive=False,
                              operation=f"copy {vm}") as dws:
            result = copy_points(sws, dws, ids, log=lambda m: run.log("info", f"{vm}: {m}"))
            if result.copied and reg.hardening.policy(dst_info) is not None:
                reg.hardening.lock_files(dst_info, dst, dws.cat, list(result.copied.values()))
        task.result = "success"
        task.bytes_done = task.bytes_total = result.bytes_stored
        if not result.copied:
            run.log("info", f"{vm}: every point is in the target already")
    except VmkeepError as exc:
        task.result = "failed"
        run.log("error", f"{vm}: {exc}")
    task.state, task.stage = "ended", None
    run.save(force=True)
