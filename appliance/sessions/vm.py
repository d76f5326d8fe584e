"""One VM of a backup session: its leftover snapshot removed, guest processing around its
snapshot, an incremental or a full backup (an active full's day, a hardened repository's new
epoch), its disks' tasks and results, its point made immutable in a hardened repository; a
stop or the backup window's end stops it cleanly."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from appliance import api
from appliance.errors import VmkeepError
from appliance.home import appliance_id
from appliance.jobs.backup import BackupOptions, DiskProgress
from appliance.jobs.guest_processing import GuestProcessing
from appliance.jobs.schedule import Schedule, active_full_due, excluded_disks, in_window
from appliance.jobs.vm_backup import DiskOutcome, VmRefusedError, backup_vm
from appliance.jobs.workspace import Workspace, cleanup
from appliance.leftovers import clean_before_backup
from appliance.repository.hardening import epoch_of
from appliance.repository.repo import Repository
from appliance.service.repositories import RepositoryInfo
from appliance.sessions.core import LiveTask, SessionRun, SessionStopped
from appliance.ssh import SshAuth, SshTarget
from appliance.vsphere.inventory import find_vm
from appliance.vsphere.session import VSphereSession
from appliance.vsphere.snapshot import session_snapshot_name
from catalog.models import VCenterRow


@dataclass(frozen=True)
class BackupSetup:
    """What each VM of a backup session is backed up with: the job, its vCenter, its open
    repository, the backup options and the job's schedule (whose window a scheduled session
    keeps)."""

    spec: api.JobSpec
    vc: VCenterRow
    info: RepositoryInfo
    repo: Repository
    options: BackupOptions
    schedule: Schedule


def back_up_vm(run: SessionRun, setup: BackupSetup, vm: api.JobVm,
               session: VSphereSession) -> None:
    """Back up ``vm`` over ``session``; it ends as its task's result (and its disks')."""
    reg = run.registry
    live = run.live
    spec, repo, info = setup.spec, setup.repo, setup.info
    full = run.full
    task = live.tasks[vm.name]
    guest_spec = spec.guest
    excluded = excluded_disks(spec.exclude_disks, vm.name)
    if live.stop.is_set():
        task.state, task.result = "stopped", "failed"
        return
    task.state, task.stage, task.started = "running", "snapshot", time.monotonic()
    task.reading, task.stats = 0.0, None
    task.result, task.bytes_done, task.bytes_total = None, 0, 0
    run.notify()

    def log(level: str, message: str) -> None:
        run.log(api.as_log_level(level), f"{vm.name}: {message}")

    def disk_progress(p: DiskProgress) -> None:
        name = f"{vm.name} · disk {p.index}"
        with live.lock:
            dt = live.tasks.get(name)
            if dt is None or dt.started < task.started:  # new, or from an earlier try
                dt = live.tasks[name] = LiveTask(name, vm.name, p.index, "running",
                                                 started=time.monotonic())
        dt.bytes_done, dt.bytes_total, dt.stage = p.done, p.total, p.bottleneck
        if p.done >= p.total:
            dt.state, dt.stage = "ended", None

    def progress(done: int, total: int) -> None:
        if live.scheduled and not in_window(setup.schedule, datetime.now(UTC)):
            run.log("warning", "the backup window closed: stopping; the next "
                               "run goes on from what is stored")
            live.stop.set()
        if live.stop.is_set():
            raise SessionStopped("the session was stopped")
        if not task.reading:
            task.reading = time.monotonic()
        task.bytes_done, task.bytes_total, task.stage = done, total, "reading"
        run.notify()
        run.save()

    def guest_login() -> tuple[SshTarget, SshAuth, str]:
        assert guest_spec is not None
        ip = ""
        if guest_spec.host.split(":")[0] == "tools":
            ip = find_vm(session, vm.instance_uuid).ip_address
        return reg.jobs.guest_login(spec.name, guest_spec, ip)

    left_clean = clean_before_backup(reg, session, vm.instance_uuid, run.running_ids, log)
    gp = GuestProcessing(guest_spec, guest_login, log,
                         verbatim=lambda level, line: run.log(api.as_log_level(level), line))
    try:
        with reg.workspace(repo, info.name, exclusive=False,
                           operation=f"backup {vm.name}") as ws:
            fulls = [p.created for p in ws.cat.points(repo.id, vm.name)
                     if p.kind == "full"]
            vm_full = full or active_full_due(spec.active_full, spec.schedule.tz,
                                              datetime.now(UTC),
                                              fulls[-1] if fulls else None)
            if vm_full and not full:
                log("info", f"active full: today is the job's active-full day "
                            f"({spec.active_full})")
            dedup, new_epoch = _epoch(run, info, ws, vm.name)
            if new_epoch and not vm_full:
                vm_full = True
                log("info", "a new immutability epoch began: this backup reads and stores "
                            "everything, deduplicating only within the epoch, so older "
                            "packs can expire")
            try:
                result = backup_vm(
                    session, ws, vm.instance_uuid, setup.options,
                    enable_cbt_consent=spec.enable_cbt, sample_blocks=spec.sample_blocks,
                    transport=spec.transport, datastore_paths=spec.datastore_paths,
                    quiesce=spec.quiesce, quiesce_fallback=spec.quiesce_fallback,
                    force_full=vm_full, exclude=excluded,
                    log=log, progress=progress, disk_progress=disk_progress, dedup=dedup,
                    extra_config=gp.record if guest_spec is not None else None,
                    # after the check that every disk is readable: a refused VM's guest
                    # is never touched
                    before_snapshot=gp.before_snapshot, before_read=gp.after_snapshot,
                    snapshot_name=session_snapshot_name(appliance_id(reg.home), live.id),
                    appliance_vm=setup.vc.appliance_vm)
            finally:
                gp.after_snapshot()  # when the snapshot failed: thaw all the same
            if (gp.warnings or not left_clean) and result.status == "success":
                result = replace(result, status="warning")
            if dedup is not None and result.point_id is not None:
                try:
                    n = reg.hardening.lock_files(info, repo, ws.cat, [result.point_id])
                    until = reg.hardening.lock_until(info, repo, datetime.now(UTC))
                    log("info", f"{n} file(s) of point {result.point_id} made immutable "
                                f"until {until:%Y-%m-%d}")
                except VmkeepError as exc:
                    log("warning", f"point {result.point_id} could not be made immutable: "
                                   f"{exc}")
                    result = replace(result, status="warning")
        task.result, task.point_id = api.as_result(result.status), result.point_id
        if result.backup is not None:
            task.bytes_done = task.bytes_total = result.backup.bytes_read
            task.stats = result.backup.stats
        _disk_results(run, vm.name, result.disks, result.point_id, excluded)
    except VmRefusedError as exc:
        task.result, task.retry_helps = "failed", False
        log("error", str(exc))
    except SessionStopped:
        task.result = "failed"
        log("warning", "stopped")
        cleanup(repo, reg.cursor, force=True)
    except VmkeepError as exc:
        task.result = "failed"
        log("error", str(exc))
        cleanup(repo, reg.cursor, force=True)
    finally:
        gp.close()
    task.state = "stopped" if live.stop.is_set() else "ended"
    task.stage, task.finished = None, time.monotonic()
    with live.lock:
        for t in live.tasks.values():
            if t.vm == vm.name and t.disk is not None and t.result is None:
                t.state, t.stage = task.state, None
                t.result = "failed" if task.result == "failed" else t.result
    run.save(force=True)


def _epoch(run: SessionRun, info: RepositoryInfo, ws: Workspace, vm_name: str
           ) -> tuple[Callable[[set[bytes], frozenset[str]], set[bytes]] | None, bool]:
    """In a hardened repository: the deduplication filter of the current epoch, and
    whether the VM's newest point is of an older one (then: a full). Else (None, False)."""
    hardening = run.registry.hardening.policy(info)
    if hardening is None:
        return None, False
    repo, cat = ws.repo, ws.cat
    now = datetime.now(UTC)
    until = run.registry.hardening.lock_until(info, repo, now)
    start, _end = epoch_of(datetime.fromisoformat(repo.config.created), now,
                           hardening.epoch_days)
    newest = cat.latest_point(repo.id, vm_name)

    def dedup(known: set[bytes], written: frozenset[str]) -> set[bytes]:
        return cat.blocks_locked_until(repo.id, sorted(known), until, sorted(written))

    return dedup, newest is not None and newest.created < start


def _disk_results(run: SessionRun, vm: str, disks: tuple[DiskOutcome, ...],
                  point_id: str | None, excluded: frozenset[int]) -> None:
    """Each disk's result once its VM is done: read (success, or warning with a CBT
    fallback), refused (warning), excluded by the job (no task)."""
    live = run.live
    with live.lock:
        for d in disks:
            if d.index in excluded:
                continue
            name = f"{vm} · disk {d.index}"
            t = live.tasks.get(name) or live.tasks.setdefault(name, LiveTask(name, vm, d.index))
            skipped = d.read_kind == "skipped"
            t.result = "warning" if skipped or d.warnings else "success"
            if not skipped:
                t.point_id = point_id
            t.state, t.stage = "ended", None
