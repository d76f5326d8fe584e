"""Sessions: every run of a job is a session with one task per VM and one per disk, live
progress (bytes, rate, ETA, stage; a disk's stage is the pipeline's bottleneck), log lines with
levels, and a result. A job's VMs (its named ones and those its inventory containers hold at
this run) are backed up ``parallel_vms`` at a time, each with its own vCenter connection and
catalog cursor. Sessions persist in the catalog; a session
still marked running when the appliance starts was cut short by a crash and is shown as
interrupted (the appliance removes its leftover snapshot, named with the appliance's and the
session's ids, at start or before the VM's next backup: appliance/leftovers.py; its partial
files are the next run's cleanup's).

A session runs in its own thread with its own catalog connection. What clients see is kept in
memory while it runs (so several clients may watch it and a late one gets the history) and
written to the catalog in batches: the log at once, progress at most once a second.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from appliance import api
from appliance.errors import ConflictError, LockedError, NotFoundError, VmkeepError
from appliance.jobs.backup import DiskProgress
from appliance.jobs.schedule import Schedule, active_full_due, excluded_disks, in_window
from appliance.registry import Registry
from appliance.service.jobs import schedule_of
from catalog.models import LogRow, SessionRow, TaskRow

if TYPE_CHECKING:
    from appliance.jobs.backup import BackupOptions
    from appliance.jobs.vm_backup import DiskOutcome
    from appliance.jobs.workspace import Workspace
    from appliance.repository.repo import Repository
    from appliance.service.repositories import RepositoryInfo
    from appliance.ssh import SshAuth, SshTarget
    from appliance.vsphere.session import VSphereSession
    from catalog.models import VCenterRow

FLUSH_SECONDS = 1.0
RESULT_ORDER = {"success": 0, "warning": 1, "failed": 2}


class SessionStopped(VmkeepError):
    """The session was asked to stop."""

    code = "stopped"


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


def worst(results: list[api.Result | None]) -> api.Result:
    """The session's result from its tasks' (pure): the worst one; no task is a failure."""
    known = [r for r in results if r is not None]
    if not known:
        return "failed"
    return max(known, key=lambda r: RESULT_ORDER.get(r, 2))


@dataclass
class _Task:
    name: str
    vm: str | None = None
    disk: int | None = None
    state: api.TaskState = "waiting"
    result: api.Result | None = None
    bytes_done: int = 0
    bytes_total: int = 0
    stage: str | None = None
    point_id: str | None = None
    started: float = 0.0

    def view(self) -> api.Task:
        elapsed = time.monotonic() - self.started if self.started else 0.0
        rate = self.bytes_done / elapsed if elapsed > 0 else 0.0
        eta = ((self.bytes_total - self.bytes_done) / rate
               if rate > 0 and self.state == "running" else None)
        return api.Task(name=self.name, vm=self.vm, disk=self.disk, state=self.state,
                        result=self.result,
                        bytes_done=self.bytes_done, bytes_total=self.bytes_total, rate=rate,
                        eta_seconds=eta, stage=self.stage, point_id=self.point_id)


@dataclass
class _Live:
    id: str
    job: str
    kind: api.SessionKind
    started: datetime
    tasks: dict[str, _Task]
    state: api.SessionState = "running"
    result: api.Result | None = None
    ended: datetime | None = None
    log: list[api.LogLine] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(default_factory=threading.Condition)
    thread: threading.Thread | None = None
    scheduled: bool = False  # started by the scheduler: the backup window applies
    unsaved_log: int = 0
    saved_at: float = 0.0

    def summary(self) -> api.SessionSummary:
        return api.SessionSummary(id=self.id, job=self.job, kind=self.kind, state=self.state,
                                  result=self.result, started=self.started, ended=self.ended)

    def view(self) -> api.Session:
        with self.lock:
            return api.Session(id=self.id, job=self.job, kind=self.kind, state=self.state,
                               result=self.result, started=self.started, ended=self.ended,
                               tasks=[t.view() for t in self.tasks.values()],
                               log=list(self.log))


def _summary(row: SessionRow) -> api.SessionSummary:
    return api.SessionSummary(id=row.id, job=row.job, kind=api.as_session_kind(row.kind),
                              state=api.as_session_state(row.state),
                              result=api.as_result(row.result), started=row.started,
                              ended=row.ended)


class SessionManager:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._live: dict[str, _Live] = {}
        self._lock = threading.Lock()
        # Called with (job, result) when a session ends: the scheduler starts chained jobs.
        self.on_end: list[Callable[[str, str], None]] = []

    # -- start-up and shut-down ---------------------------------------------------------------

    def mark_interrupted(self) -> list[str]:
        """Sessions a crash left "running": shown as interrupted, failed."""
        now = datetime.now(UTC)
        ids = []
        with self.registry.catalog() as cat:
            for row in cat.sessions():
                if row.state == "running":
                    cat.put_session(SessionRow(row.id, row.job, row.kind, "interrupted",
                                               "failed", row.started, now, row.detail_json))
                    seq = len(cat.log(row.id))
                    cat.add_log([LogRow(row.id, seq, now, "error",
                                        "the appliance stopped while this session ran "
                                        "(crash or kill); the appliance removes the "
                                        "snapshot it left, and the next run cleans up the "
                                        "repository")])
                    ids.append(row.id)
        return ids

    def running_ids(self) -> frozenset[str]:
        """The ids of the sessions running now (a session's snapshot is removed before it
        leaves this set)."""
        with self._lock:
            return frozenset(self._live)

    def stop_all(self, timeout: float = 60.0) -> None:
        with self._lock:
            live = [s for s in self._live.values() if s.state == "running"]
        for s in live:
            s.stop.set()
        deadline = time.monotonic() + timeout
        for s in live:
            if s.thread is not None:
                s.thread.join(max(0.0, deadline - time.monotonic()))

    # -- reading ------------------------------------------------------------------------------

    def sessions(self) -> list[api.SessionSummary]:
        with self.registry.catalog() as cat:
            rows = {r.id: _summary(r) for r in cat.sessions()}
        with self._lock:
            for s in self._live.values():
                rows[s.id] = s.summary()
        return sorted(rows.values(), key=lambda s: (s.started, s.id))

    def session(self, session_id: str) -> api.Session:
        with self._lock:
            live = self._live.get(session_id)
        if live is not None:
            return live.view()
        with self.registry.catalog() as cat:
            row = next((r for r in cat.sessions() if r.id == session_id), None)
            if row is None:
                raise NotFoundError(f"no session {session_id!r}; `vmkeep session list` shows "
                                    "them")
            tasks = cat.tasks(session_id)
            log = cat.log(session_id)
        return api.Session(
            id=row.id, job=row.job, kind=api.as_session_kind(row.kind),
            state=api.as_session_state(row.state), result=api.as_result(row.result),
            started=row.started, ended=row.ended,
            tasks=[api.Task(name=t.task, vm=t.vm, disk=t.disk, state=api.as_task_state(t.state),
                            result=api.as_result(t.result),
                            bytes_done=t.bytes_done, bytes_total=t.bytes_total, rate=0.0,
                            eta_seconds=None, stage=t.stage, point_id=t.point_id)
                   for t in tasks],
            log=[api.LogLine(time=x.time, level=api.as_log_level(x.level), message=x.message)
                 for x in log])

    def busy_vms(self) -> frozenset[str]:
        """The VMs a running session is backing up right now."""
        with self._lock:
            lives = list(self._live.values())
        return frozenset(t.vm for s in lives for t in list(s.tasks.values())
                         if t.vm and t.disk is None and t.state == "running")

    def last_session(self, job: str) -> api.SessionSummary | None:
        mine = [s for s in self.sessions() if s.job == job]
        return mine[-1] if mine else None

    def wait_changed(self, session_id: str, timeout: float) -> None:
        """Block until the live session changes (or ``timeout``): for followers."""
        with self._lock:
            live = self._live.get(session_id)
        if live is not None:
            with live.changed:
                live.changed.wait(timeout)

    # -- running ------------------------------------------------------------------------------

    def run_job(self, name: str, *, full: bool = False, scheduled: bool = False
                ) -> api.SessionSummary:
        row = self.registry.jobs.get(name)
        if not row.enabled:
            raise ConflictError(f"job {name!r} is disabled; enable it with `vmkeep job enable "
                                f"{name}`")
        spec = row.spec
        with self._lock:
            if any(s.job == name and s.state == "running" for s in self._live.values()):
                raise ConflictError(f"job {name!r} is running already; follow it with "
                                    "`vmkeep session list`")
            sid = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]
            live = _Live(sid, name, spec.kind, datetime.now(UTC),
                         {vm.name: _Task(vm.name, vm.name) for vm in spec.vms},
                         scheduled=scheduled)
            self._live[sid] = live
        self._save(live, force=True)
        work = ((lambda: self._copy_jobs(live, spec)) if spec.copy_of
                else (lambda: self._collect_logs(live, spec)) if spec.logs
                else (lambda: self._backup_vms(live, spec, full)))
        live.thread = threading.Thread(target=self._run, args=(live, work),
                                       name=f"session-{sid}", daemon=True)
        live.thread.start()
        return live.summary()

    def stop_job(self, name: str) -> list[str]:
        with self._lock:
            live = [s for s in self._live.values() if s.job == name and s.state == "running"]
        if not live:
            raise NotFoundError(f"job {name!r} is not running")
        for s in live:
            s.stop.set()
            self._log(s, "warning", "stop requested; the session ends after cleaning up")
        return [s.id for s in live]

    # -- inside a session ---------------------------------------------------------------------

    def _log(self, live: _Live, level: api.LogLevel, message: str) -> None:
        with live.lock:
            live.log.append(api.LogLine(time=datetime.now(UTC), level=level, message=message))
            live.unsaved_log += 1
        self._notify(live)

    def _notify(self, live: _Live) -> None:
        with live.changed:
            live.changed.notify_all()

    def _save(self, live: _Live, *, force: bool = False) -> None:
        """Write the session to the catalog: the log at once, progress at most every second."""
        now = time.monotonic()
        with live.lock:
            if not force and not live.unsaved_log and now - live.saved_at < FLUSH_SECONDS:
                return
            live.saved_at = now
            new_log = live.log[len(live.log) - live.unsaved_log:]
            first = len(live.log) - live.unsaved_log
            live.unsaved_log = 0
            row = SessionRow(live.id, live.job, live.kind, live.state, live.result,
                             live.started, live.ended, "{}")
            stamp = datetime.now(UTC)
            tasks = [TaskRow(live.id, t.name, t.state, t.result, t.bytes_done, t.bytes_total,
                             t.stage, t.point_id, stamp, t.vm, t.disk)
                     for t in live.tasks.values()]
        logs = [LogRow(live.id, first + i, x.time, x.level, x.message)
                for i, x in enumerate(new_log)]
        with self.registry.catalog() as cat:
            cat.put_session(row)
            cat.put_tasks(tasks)
            cat.add_log(logs)

    def _run(self, live: _Live, work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as exc:  # the session must end whatever happens
            self._log(live, "error", f"the session failed: {exc}")
            for t in live.tasks.values():
                if t.state in ("waiting", "running"):
                    t.state, t.result = "ended", "failed"
        with live.lock:
            stopped = live.stop.is_set()
            live.state = "stopped" if stopped else "ended"
            live.result = "failed" if stopped else worst(
                [t.result for t in live.tasks.values()])
            live.ended = datetime.now(UTC)
        self._log(live, "info" if live.result == "success" else "warning",
                  f"session {live.state}: {live.result}")
        self._save(live, force=True)
        with self._lock:
            self._live.pop(live.id, None)
        self._notify(live)
        for hook in self.on_end:
            try:
                hook(live.job, live.result or "failed")
            except VmkeepError as exc:
                self._log(live, "error", f"after the session: {exc}")

    def _backup_vms(self, live: _Live, spec: api.JobSpec, full: bool) -> None:
        from appliance.jobs.backup import BackupOptions, block_size_named
        from appliance.jobs.workspace import cleanup

        reg = self.registry
        vc = reg.vcenters.get(spec.vcenter)
        info = reg.repositories.get(spec.repository)
        options = BackupOptions(block_size=block_size_named(spec.block_size),
                                compression=spec.compression)
        repo = reg.repositories.open(info, on_reconnect=lambda m: self._log(live, "warning", m))
        try:
            # What a crashed run left (a dead process's lock, files in tmp/, packs no point
            # uses) goes before anything new is written.
            cleanup(repo, reg.cursor)
            vms = self._job_vms(live, spec, vc)
            self._log(live, "info", f"job {spec.name!r}: {len(vms)} VM(s) from vCenter "
                                    f"{vc.name!r} to repository {info.name!r}, "
                                    f"{min(spec.parallel_vms, max(1, len(vms)))} at a time"
                      + (" (active full)" if full else ""))
            with reg.catalog() as cat:
                need = sum(next((p.bytes_stored for p in reversed(cat.points(repo.id, vm.name))
                                 if p.kind == "full"), 0) for vm in vms)
            space = reg.repositories.get(info.name).space()
            verdict = space_verdict(*space, need) if space else None
            if verdict is not None:
                self._log(live, verdict[0], verdict[1])
                if verdict[0] == "error":
                    raise VmkeepError(verdict[1])
            schedule = schedule_of(spec.schedule)
            pending = vms
            attempt = 0
            while True:
                self._backup_some(live, spec, vc, pending, repo, options, full, schedule, info)
                failed = [vm for vm in pending if live.tasks[vm.name].result == "failed"]
                if not failed or live.stop.is_set() or attempt >= spec.retries:
                    break
                attempt += 1
                names = ", ".join(vm.name for vm in failed)
                self._log(live, "warning", f"retry {attempt} of {spec.retries} in "
                                           f"{spec.retry_wait_seconds:g} s, failed VMs only: "
                                           f"{names}")
                self._save(live, force=True)
                if live.stop.wait(spec.retry_wait_seconds):
                    break
                pending = failed
            if (spec.keep_last or spec.keep_days) and not live.stop.is_set():
                self._retention(live, spec, repo, {vm.name for vm in vms}, info)
        finally:
            repo.close()

    def _copy_jobs(self, live: _Live, spec: api.JobSpec) -> None:
        """A backup copy job: the points of its source jobs' VMs that the target lacks are
        copied (and verified) there, one task per VM; then the copy job's own retention."""
        reg = self.registry
        dst_info = reg.repositories.get(spec.repository)
        self._log(live, "info", f"copy job {spec.name!r}: the points of "
                                f"{', '.join(spec.copy_of)} to repository {dst_info.name!r}")
        names: set[str] = set()
        with reg.repositories.open(dst_info, on_reconnect=lambda m: self._log(
                live, "warning", m)) as dst:
            for source in spec.copy_of:
                names |= self._copy_source(live, source, dst_info, dst)
            if (spec.keep_last or spec.keep_days) and not live.stop.is_set() and names:
                self._retention(live, spec, dst, names, dst_info)

    def _copy_source(self, live: _Live, source: str, dst_info: RepositoryInfo, dst: Repository
                     ) -> set[str]:
        """Copy one source job's points, a task per VM; the VMs it covered."""
        reg = self.registry
        src_info = reg.repositories.get(reg.jobs.spec(source).repository)
        if src_info.name == dst_info.name:
            self._log(live, "warning", f"job {source!r} writes to {dst_info.name!r} itself "
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
                if live.stop.is_set():
                    break
                covered.add(vm)
                self._copy_vm(live, vm, src, src_info.name, dst, ids, dst_info)
        return covered

    def _collect_logs(self, live: _Live, spec: api.JobSpec) -> None:
        """A log backup job: one collection from the guest (appliance.jobs.log_backup)."""
        import shlex

        from appliance.guest.postgres import archiving_trouble
        from appliance.guest.scripts import Guest
        from appliance.jobs.log_backup import collect_logs

        reg = self.registry
        assert spec.logs is not None and spec.guest is not None
        logs = spec.logs
        name = f"{logs.vm} logs"
        with live.lock:
            task = live.tasks.setdefault(name, _Task(name, logs.vm))
        task.state, task.stage, task.started = "running", "collecting", time.monotonic()
        self._notify(live)

        def log(level: str, message: str) -> None:
            self._log(live, api.as_log_level(level), f"{logs.vm}: {message}")

        info = reg.repositories.get(spec.repository)
        try:
            with Guest(*reg.jobs.guest_login(spec.name, spec.guest)) as guest, \
                    reg.repositories.open(info) as repo:
                if logs.command:
                    status, out, err = guest.exec(logs.command, timeout=3600)
                    for line in (out + err).splitlines():
                        self._log(live, "info", line)
                    if status != 0:
                        raise VmkeepError(f"the log backup command exited {status}; nothing "
                                          "was collected")
                if spec.guest.postgres:
                    trouble = archiving_trouble(guest, spec.guest.postgres)
                    if trouble:
                        log("warning", trouble)
                        task.result = "warning"
                with reg.workspace(repo, info.name, exclusive=False,
                                   operation=f"logs {logs.vm}") as ws:
                    got = collect_logs(guest, logs.folder, logs.pattern, ws, logs.vm,
                                       settle_seconds=logs.settle_seconds, log=log)
            if not got.stored:
                log("info", f"no new log files in {shlex.quote(logs.folder)}")
            task.result, task.point_id = task.result or "success", got.point_id
        except VmkeepError as exc:
            task.result = "failed"
            log("error", f"{exc}; nothing was removed from the guest that is not stored")
        task.state, task.stage = "ended", None
        self._save(live, force=True)

    def _copy_vm(self, live: _Live, vm: str, src: Repository, src_name: str, dst: Repository,
                 ids: list[str], dst_info: RepositoryInfo) -> None:
        from appliance.jobs.copy import copy_points

        with live.lock:
            task = live.tasks.setdefault(vm, _Task(vm, vm))
        task.state, task.stage, task.started = "running", "copying", time.monotonic()
        self._notify(live)
        try:
            reg = self.registry
            with reg.workspace(src, src_name, exclusive=False, operation=f"copy {vm}") as sws, \
                    reg.workspace(dst, dst_info.name, exclusive=False,
                                  operation=f"copy {vm}") as dws:
                result = copy_points(sws, dws, ids,
                                     log=lambda m: self._log(live, "info", f"{vm}: {m}"))
                if result.copied and reg.hardening.policy(dst_info) is not None:
                    reg.hardening.lock_files(dst_info, dst, dws.cat, list(result.copied.values()))
            task.result = "success"
            task.bytes_done = task.bytes_total = result.bytes_stored
            if not result.copied:
                self._log(live, "info", f"{vm}: every point is in the target already")
        except VmkeepError as exc:
            task.result = "failed"
            self._log(live, "error", f"{vm}: {exc}")
        task.state, task.stage = "ended", None
        self._save(live, force=True)

    def _job_vms(self, live: _Live, spec: api.JobSpec, vc: VCenterRow) -> list[api.JobVm]:
        """The job's VMs for this run: those it names, then those its containers hold now
        (each once). A container that cannot be read is a failed task of its own."""
        from appliance.vsphere.inventory import vms_in_container
        from appliance.vsphere.session import connect

        vms = list(spec.vms)
        if not spec.containers:
            return vms
        known = {vm.instance_uuid for vm in vms}
        with connect(vc.host, vc.port, vc.user, self.registry.vcenters.password(vc.name),
                     fingerprint=vc.fingerprint, insecure=vc.insecure) as session:
            for path in spec.containers:
                try:
                    found = vms_in_container(session, path)
                except VmkeepError as exc:
                    self._log(live, "error", f"container {path}: {exc}")
                    with live.lock:
                        live.tasks[path] = _Task(path, state="ended", result="failed")
                    continue
                added = [vm for vm in found if vm.instance_uuid not in known]
                self._log(live, "info", f"container {path}: {len(found)} VM(s)"
                          + (": " + ", ".join(v.name for v in found) if found else ""))
                for vm in added:
                    known.add(vm.instance_uuid)
                    vms.append(api.JobVm(name=vm.name, instance_uuid=vm.instance_uuid))
                    with live.lock:
                        live.tasks.setdefault(vm.name, _Task(vm.name, vm.name))
        self._notify(live)
        return vms

    def _backup_some(self, live: _Live, spec: api.JobSpec, vc: VCenterRow,
                     vms: list[api.JobVm], repo: Repository, options: BackupOptions,
                     full: bool, schedule: Schedule, info: RepositoryInfo) -> None:
        """Back up ``vms``, ``spec.parallel_vms`` at a time; each ends as a task result."""
        from appliance.vsphere.session import connect

        def one(vm: api.JobVm) -> None:
            try:
                with connect(vc.host, vc.port, vc.user,
                             self.registry.vcenters.password(vc.name),
                             fingerprint=vc.fingerprint, insecure=vc.insecure) as session:
                    self._backup_one(live, spec, vm, session, repo, options, full,
                                     schedule, info)
            except VmkeepError as exc:  # vCenter unreachable, login refused, …
                self._log(live, "error", f"{vm.name}: {exc}")
                task = live.tasks[vm.name]
                task.state, task.result, task.stage = "ended", "failed", None
                self._save(live, force=True)

        workers = max(1, min(spec.parallel_vms, len(vms)))
        with ThreadPoolExecutor(max_workers=workers,
                                thread_name_prefix=f"session-{live.id}-vm") as pool:
            for f in [pool.submit(one, vm) for vm in vms]:
                f.result()

    def _retention(self, live: _Live, spec: api.JobSpec, repo: Repository,
                   names: set[str], info: RepositoryInfo) -> None:
        """Apply the job's retention to the points of this run's VMs (exclusive lock; plan,
        then execute). A busy repository, or points still immutable in a hardened one,
        postpone it to the next run."""
        from appliance.jobs.prune import execute_prune, plan_prune
        from appliance.jobs.retention import RetentionPolicy
        from appliance.repository.hardening import ImmutableError

        policy = RetentionPolicy(keep_last=spec.keep_last, keep_days=spec.keep_days)
        try:
            # The exclusive lock at once or not at all (a plan-then-execute prune inside).
            with self.registry.workspace(repo, info.name, exclusive=True,
                                         operation="retention") as ws:
                plan = plan_prune(ws, policy, datetime.now(UTC), names=names)
                if not plan.remove_points:
                    return
                try:
                    plan = self.registry.hardening.guard_prune(info, repo, ws.cat, plan)
                except (ImmutableError, VmkeepError) as exc:
                    self._log(live, "info", f"retention postponed: {exc}")
                    return
                result = execute_prune(ws, plan)
        except LockedError:
            self._log(live, "info", "retention postponed: the repository is in use")
            return
        self._log(live, "info", f"retention removed {result.points_removed} "
                                f"restore point(s): {', '.join(plan.remove_points)}")

    def _backup_one(self, live: _Live, spec: api.JobSpec, vm: api.JobVm,
                    session: VSphereSession, repo: Repository, options: BackupOptions,
                    full: bool, schedule: Schedule, info: RepositoryInfo) -> None:
        from appliance.home import appliance_id
        from appliance.jobs.guest_processing import GuestProcessing
        from appliance.jobs.vm_backup import backup_vm
        from appliance.jobs.workspace import cleanup
        from appliance.leftovers import clean_before_backup
        from appliance.vsphere.snapshot import session_snapshot_name

        reg = self.registry
        task = live.tasks[vm.name]
        guest_spec = spec.guest
        excluded = excluded_disks(spec.exclude_disks, vm.name)
        if live.stop.is_set():
            task.state, task.result = "stopped", "failed"
            return
        task.state, task.stage, task.started = "running", "snapshot", time.monotonic()
        task.result, task.bytes_done, task.bytes_total = None, 0, 0
        self._notify(live)

        def log(level: str, message: str) -> None:
            self._log(live, api.as_log_level(level), f"{vm.name}: {message}")

        def disk_progress(p: DiskProgress) -> None:
            name = f"{vm.name} · disk {p.index}"
            with live.lock:
                dt = live.tasks.get(name)
                if dt is None or dt.started < task.started:  # new, or from an earlier try
                    dt = live.tasks[name] = _Task(name, vm.name, p.index, "running",
                                                  started=time.monotonic())
            dt.bytes_done, dt.bytes_total, dt.stage = p.done, p.total, p.bottleneck
            if p.done >= p.total:
                dt.state, dt.stage = "ended", None

        def progress(done: int, total: int) -> None:
            if live.scheduled and not in_window(schedule, datetime.now(UTC)):
                self._log(live, "warning", "the backup window closed: stopping; the next "
                                           "run goes on from what is stored")
                live.stop.set()
            if live.stop.is_set():
                raise SessionStopped("the session was stopped")
            task.bytes_done, task.bytes_total, task.stage = done, total, "reading"
            self._notify(live)
            self._save(live)

        def guest_login() -> tuple[SshTarget, SshAuth, str]:
            from appliance.vsphere.inventory import find_vm

            assert guest_spec is not None
            ip = ""
            if guest_spec.host.split(":")[0] == "tools":
                ip = find_vm(session, vm.instance_uuid).ip_address
            return reg.jobs.guest_login(spec.name, guest_spec, ip)

        left_clean = clean_before_backup(reg, session, vm.instance_uuid, self.running_ids, log)
        gp = GuestProcessing(guest_spec, guest_login, log,
                             verbatim=lambda level, line: self._log(live, api.as_log_level(level),
                                                                 line))
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
                dedup, new_epoch = self._epoch(info, ws, vm.name)
                if new_epoch and not vm_full:
                    vm_full = True
                    log("info", "a new immutability epoch began: this backup reads and stores "
                                "everything, deduplicating only within the epoch, so older "
                                "packs can expire")
                gp.before_snapshot()
                try:
                    result = backup_vm(
                        session, ws, vm.instance_uuid, options,
                        enable_cbt_consent=spec.enable_cbt, sample_blocks=spec.sample_blocks,
                        quiesce=spec.quiesce, quiesce_fallback=spec.quiesce_fallback,
                        force_full=vm_full, exclude=excluded,
                        log=log, progress=progress, disk_progress=disk_progress, dedup=dedup,
                        extra_config=gp.record if guest_spec is not None else None,
                        before_read=gp.after_snapshot,
                        snapshot_name=session_snapshot_name(appliance_id(reg.home), live.id))
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
            self._disk_results(live, vm.name, result.disks, result.point_id, excluded)
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
        task.stage = None
        with live.lock:
            for t in live.tasks.values():
                if t.vm == vm.name and t.disk is not None and t.result is None:
                    t.state, t.stage = task.state, None
                    t.result = "failed" if task.result == "failed" else t.result
        self._save(live, force=True)

    def _epoch(self, info: RepositoryInfo, ws: Workspace, vm_name: str
               ) -> tuple[Callable[[set[bytes], frozenset[str]], set[bytes]] | None, bool]:
        """In a hardened repository: the deduplication filter of the current epoch, and
        whether the VM's newest point is of an older one (then: a full). Else (None, False)."""
        from appliance.repository.hardening import epoch_of

        hardening = self.registry.hardening.policy(info)
        if hardening is None:
            return None, False
        repo, cat = ws.repo, ws.cat
        now = datetime.now(UTC)
        until = self.registry.hardening.lock_until(info, repo, now)
        start, _end = epoch_of(datetime.fromisoformat(repo.config.created), now,
                               hardening.epoch_days)
        newest = cat.latest_point(repo.id, vm_name)

        def dedup(known: set[bytes], written: frozenset[str]) -> set[bytes]:
            return cat.blocks_locked_until(repo.id, sorted(known), until, sorted(written))

        return dedup, newest is not None and newest.created < start

    def _disk_results(self, live: _Live, vm: str, disks: tuple[DiskOutcome, ...],
                      point_id: str | None,
                      excluded: frozenset[int]) -> None:
        """Each disk's result once its VM is done: read (success, or warning with a CBT
        fallback), refused (warning), excluded by the job (no task)."""
        with live.lock:
            for d in disks:
                if d.index in excluded:
                    continue
                name = f"{vm} · disk {d.index}"
                t = live.tasks.get(name) or live.tasks.setdefault(name, _Task(name, vm, d.index))
                skipped = d.read_kind == "skipped"
                t.result = "warning" if skipped or d.warnings else "success"
                if not skipped:
                    t.point_id = point_id
                t.state, t.stage = "ended", None
