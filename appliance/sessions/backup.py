"""A backup session: a job's VMs (its named ones and those its inventory containers hold at
this run) are backed up ``parallel_vms`` at a time, each with its own vCenter connection and
catalog cursor (sessions/vm.py backs up one), after a check of the repository's free space;
failed VMs are retried, then the job's retention applies to this run's VMs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from appliance import api
from appliance.errors import VmkeepError
from appliance.jobs.backup import BackupOptions, block_size_named
from appliance.jobs.workspace import cleanup
from appliance.service.jobs import schedule_of
from appliance.sessions.core import LiveTask, SessionRun
from appliance.sessions.retention import apply_retention, retention_due
from appliance.sessions.vm import BackupSetup, back_up_vm
from appliance.vsphere import session as vsphere_session
from appliance.vsphere.inventory import vms_in_container
from catalog.models import VCenterRow


def space_verdict(free: int, total: int, need: int) -> tuple[api.LogLevel, str] | None:
    """Whether a repository with ``free`` of ``total`` bytes has room for a run expected to
    store ``need`` bytes (pure): ("error", why) stops the session, ("warning", why) goes on,
    None is fine. ``need`` is what the VMs' last full points stored (0 for new VMs)."""
    gib = 1 << 30
    if need and free < need:
        return ("error", f"the repository has {free / gib:.1f} GiB free, and the last full "
                         f"backups of these VMs stored {need / gib:.1f} GiB: free space (prune "
                         "old points) or choose another repository")
    if total and free < total // 20:
        return ("warning", f"the repository is {100 - 100 * free // total}% full "
                           f"({free / gib:.1f} GiB free)")
    if need and free < 2 * need:
        return ("warning", f"the repository has {free / gib:.1f} GiB free, less than twice what "
                           f"the last full backups of these VMs stored ({need / gib:.1f} GiB)")
    return None


def run_backup(run: SessionRun, spec: api.JobSpec) -> None:
    """Back up the job's VMs into its repository, retrying the failed ones, then prune."""
    reg = run.registry
    live = run.live
    vc = reg.vcenters.get(spec.vcenter)
    info = reg.repositories.get(spec.repository)
    options = BackupOptions(block_size=block_size_named(spec.block_size),
                            compression=spec.compression)
    repo = reg.repositories.open(info, on_reconnect=lambda m: run.log("warning", m))
    try:
        # What a crashed run left (a dead process's lock, files in tmp/, packs no point
        # uses) goes before anything new is written.
        cleanup(repo, reg.cursor)
        vms = _job_vms(run, spec, vc)
        run.log("info", f"job {spec.name!r}: {len(vms)} VM(s) from vCenter "
                        f"{vc.name!r} to repository {info.name!r}, "
                        f"{min(spec.parallel_vms, max(1, len(vms)))} at a time"
                + (" (active full)" if run.full else ""))
        with reg.catalog() as cat:
            need = sum(next((p.bytes_stored for p in reversed(cat.points(repo.id, vm.name))
                             if p.kind == "full"), 0) for vm in vms)
        space = reg.repositories.get(info.name).space()
        verdict = space_verdict(*space, need) if space else None
        if verdict is not None:
            run.log(verdict[0], verdict[1])
            if verdict[0] == "error":
                raise VmkeepError(verdict[1])
        setup = BackupSetup(spec, vc, info, repo, options, schedule_of(spec.schedule))
        pending = vms
        attempt = 0
        while True:
            _backup_some(run, setup, pending)
            failed = [vm for vm in pending if live.tasks[vm.name].result == "failed"]
            refused = [vm.name for vm in failed if not live.tasks[vm.name].retry_helps]
            if refused and spec.retries and attempt < spec.retries:
                run.log("warning", f"not retried: {', '.join(refused)} (refused before the "
                                   "snapshot: a retry cannot help until the VM or the job "
                                   "changes; see `vmkeep job check`)")
            failed = [vm for vm in failed if live.tasks[vm.name].retry_helps]
            if not failed or live.stop.is_set() or attempt >= spec.retries:
                break
            attempt += 1
            names = ", ".join(vm.name for vm in failed)
            run.log("warning", f"retry {attempt} of {spec.retries} in "
                               f"{spec.retry_wait_seconds:g} s, failed VMs only: {names}")
            run.save(force=True)
            if live.stop.wait(spec.retry_wait_seconds):
                break
            pending = failed
        if retention_due(run, spec):
            apply_retention(run, spec, repo, {vm.name for vm in vms}, info)
    finally:
        repo.close()


def _job_vms(run: SessionRun, spec: api.JobSpec, vc: VCenterRow) -> list[api.JobVm]:
    """The job's VMs for this run: those it names, then those its containers hold now
    (each once). A container that cannot be read is a failed task of its own."""
    live = run.live
    vms = list(spec.vms)
    if not spec.containers:
        return vms
    known = {vm.instance_uuid for vm in vms}
    with vsphere_session.connect(vc.host, vc.port, vc.user,
                                 run.registry.vcenters.password(vc.name),
                                 fingerprint=vc.fingerprint, insecure=vc.insecure) as session:
        for path in spec.containers:
            try:
                found = vms_in_container(session, path)
            except VmkeepError as exc:
                run.log("error", f"container {path}: {exc}")
                with live.lock:
                    live.tasks[path] = LiveTask(path, state="ended", result="failed")
                continue
            added = [vm for vm in found if vm.instance_uuid not in known]
            run.log("info", f"container {path}: {len(found)} VM(s)"
                    + (": " + ", ".join(v.name for v in found) if found else ""))
            for vm in added:
                known.add(vm.instance_uuid)
                vms.append(api.JobVm(name=vm.name, instance_uuid=vm.instance_uuid))
                run.task(vm.name, vm.name)
    run.notify()
    return vms


def _backup_some(run: SessionRun, setup: BackupSetup, vms: list[api.JobVm]) -> None:
    """Back up ``vms``, ``spec.parallel_vms`` at a time; each ends as a task result."""
    vc = setup.vc

    def one(vm: api.JobVm) -> None:
        try:
            with vsphere_session.connect(vc.host, vc.port, vc.user,
                                         run.registry.vcenters.password(vc.name),
                                         fingerprint=vc.fingerprint,
                                         insecure=vc.insecure) as session:
                back_up_vm(run, setup, vm, session)
        except VmkeepError as exc:  # vCenter unreachable, login refused, …
            run.log("error", f"{vm.name}: {exc}")
            task = run.live.tasks[vm.name]
            task.state, task.result, task.stage = "ended", "failed", None
            run.save(force=True)

    workers = max(1, min(setup.spec.parallel_vms, len(vms)))
    with ThreadPoolExecutor(max_workers=workers,
                            thread_name_prefix=f"session-{run.live.id}-vm") as pool:
        for f in [pool.submit(one, vm) for vm in vms]:
            f.result()
