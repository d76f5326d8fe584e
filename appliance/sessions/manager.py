"""The session manager: starts a job's session in its own thread (the work is its kind's:
``RUNNERS``) or a restore's (``start``, from sessions/restore.py), stops a job's, ends each
(its result, the catalog, a job's ``on_end`` hooks), and answers what clients read: the
running sessions from memory, the others from the catalog. A session still marked running
when the appliance starts was cut short by a crash and is shown as interrupted
(``mark_interrupted``). A restore session is not a job's: it is not stopped (a restore over
the original VM stopped half-way would leave it damaged), starts no chained job and sends
no notification, and is not a job's last session.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from appliance import api
from appliance.errors import ConflictError, NotFoundError, VmkeepError
from appliance.registry import Registry
from appliance.sessions import backup, copy, logs
from appliance.sessions.core import LiveSession, LiveTask, SessionRun, worst
from appliance.sessions.stats import outcome_of, stats_of
from catalog.models import LogRow, SessionRow

Runner = Callable[[SessionRun, api.JobSpec], None]

# The work of a session, by its job's kind (api.JobSpec.kind).
RUNNERS: Final[dict[api.SessionKind, Runner]] = {
    "backup": backup.run_backup,
    "copy": copy.run_copy,
    "logs": logs.run_logs,
}


def _summary(row: SessionRow) -> api.SessionSummary:
    return api.SessionSummary(id=row.id, job=row.job, kind=api.as_session_kind(row.kind),
                              state=api.as_session_state(row.state),
                              result=api.as_result(row.result), started=row.started,
                              ended=row.ended)


class SessionManager:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._live: dict[str, LiveSession] = {}
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
                    why = ("the appliance stopped while this restore ran (crash or kill): "
                           "what it wrote is incomplete; restore again"
                           if row.kind == "restore" else
                           "the appliance stopped while this session ran "
                           "(crash or kill); the appliance removes the "
                           "snapshot it left, and the next run cleans up the "
                           "repository")
                    cat.add_log([LogRow(row.id, seq, now, "error", why)])
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
            if s.kind != "restore":  # a restore runs to its end (joined as long as allowed)
                s.stop.set()
        deadline = time.monotonic() + timeout
        for s in live:
            if s.thread is not None:
                s.thread.join(max(0.0, deadline - time.monotonic()))

    # -- reading ------------------------------------------------------------------------------

    def sessions(self, kind: api.SessionKind | None = None) -> list[api.SessionSummary]:
        """Every session (of ``kind``), oldest first."""
        with self.registry.catalog() as cat:
            rows = {r.id: _summary(r) for r in cat.sessions()}
        with self._lock:
            for s in self._live.values():
                rows[s.id] = s.summary()
        return sorted((s for s in rows.values() if kind is None or s.kind == kind),
                      key=lambda s: (s.started, s.id))

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
                 for x in log],
            stats=stats_of(row.detail_json), outcome=outcome_of(row.detail_json))

    def busy_vms(self) -> frozenset[str]:
        """The VMs a running session is backing up right now (a restore reads no VM)."""
        with self._lock:
            lives = [s for s in self._live.values() if s.kind != "restore"]
        return frozenset(t.vm for s in lives for t in list(s.tasks.values())
                         if t.vm and t.disk is None and t.state == "running")

    def last_session(self, job: str) -> api.SessionSummary | None:
        mine = [s for s in self.sessions() if s.job == job and s.kind != "restore"]
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
        work = RUNNERS[spec.kind]
        return self.start(name, spec.kind, [LiveTask(vm.name, vm.name) for vm in spec.vms],
                          lambda run: work(run, spec), full=full, scheduled=scheduled)

    def start(self, job: str, kind: api.SessionKind, tasks: list[LiveTask],
              work: Callable[[SessionRun], None], *, full: bool = False,
              scheduled: bool = False) -> api.SessionSummary:
        """Start a session named ``job`` that runs ``work`` in its own thread, with ``tasks``
        to begin with. A job's session is refused while another of the job runs."""
        with self._lock:
            if kind != "restore" and any(s.job == job and s.state == "running"
                                         and s.kind != "restore"
                                         for s in self._live.values()):
                raise ConflictError(f"job {job!r} is running already; follow it with "
                                    "`vmkeep session list`")
            sid = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]
            live = LiveSession(sid, job, kind, datetime.now(UTC), {t.name: t for t in tasks},
                               scheduled=scheduled)
            self._live[sid] = live
        run = SessionRun(live, self.registry, self.running_ids, full=full)
        run.save(force=True)
        live.thread = threading.Thread(target=self._run, args=(run, lambda: work(run)),
                                       name=f"session-{sid}", daemon=True)
        live.thread.start()
        return live.summary()

    def stop_job(self, name: str) -> list[str]:
        with self._lock:
            live = [s for s in self._live.values()
                    if s.job == name and s.state == "running" and s.kind != "restore"]
        if not live:
            raise NotFoundError(f"job {name!r} is not running")
        for s in live:
            s.stop.set()
            s.add_log("warning", "stop requested; the session ends after cleaning up")
        return [s.id for s in live]

    # -- the end of a session -----------------------------------------------------------------

    def _run(self, run: SessionRun, work: Callable[[], None]) -> None:
        live = run.live
        try:
            work()
        except BaseException as exc:  # the session must end whatever happens
            run.log("error", f"the session failed: {exc}")
            for t in live.tasks.values():
                if t.state in ("waiting", "running"):
                    t.state, t.result = "ended", "failed"
        with live.lock:
            stopped = live.stop.is_set()
            live.state = "stopped" if stopped else "ended"
            live.result = "failed" if stopped else worst(
                [t.result for t in live.tasks.values()])
            live.ended = datetime.now(UTC)
        run.log("info" if live.result == "success" else "warning",
                f"session {live.state}: {live.result}")
        run.save(force=True)
        with self._lock:
            self._live.pop(live.id, None)
        run.notify()
        if live.kind == "restore":
            return
        for hook in self.on_end:
            try:
                hook(live.job, live.result or "failed")
            except VmkeepError as exc:
                run.log("error", f"after the session: {exc}")
