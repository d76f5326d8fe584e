"""The session core: a running session's live record (its tasks, log and state, what clients
see while it runs) and a run as its kind's work sees it (``SessionRun``: log, notify
followers, save to the catalog). The manager (sessions/manager.py) starts and ends sessions;
each kind of job has its own module that does the work (backup.py, copy.py, logs.py).

What clients see is kept in memory while a session runs (so several clients may watch it and
a late one gets the history) and written to the catalog in batches: the log at once, progress
at most once a second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from appliance import api
from appliance.errors import VmkeepError
from appliance.jobs.backup_stats import BackupStats
from appliance.registry import Registry
from appliance.sessions.stats import VmRun, detail_json, session_stats
from catalog.models import LogRow, SessionRow, TaskRow

FLUSH_SECONDS = 1.0
RESULT_ORDER = {"success": 0, "warning": 1, "failed": 2}


class SessionStopped(VmkeepError):
    """The session was asked to stop."""

    code = "stopped"


def worst(results: list[api.Result | None]) -> api.Result:
    """The session's result from its tasks' (pure): the worst one; no task is a failure."""
    known = [r for r in results if r is not None]
    if not known:
        return "failed"
    return max(known, key=lambda r: RESULT_ORDER.get(r, 2))


@dataclass
class LiveTask:
    """One task of a running session (a VM, a disk, a copy, a log collection), as it goes."""

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
    reading: float = 0.0  # when its reads began (its rate and ETA leave out the snapshot)
    finished: float = 0.0
    stats: BackupStats | None = None  # a VM's backup, once done
    #: False when the task failed in a way a retry cannot change (a refused VM).
    retry_helps: bool = True

    def view(self) -> api.Task:
        since = self.reading or self.started
        elapsed = time.monotonic() - since if since else 0.0
        # A rate is a running task's; one no longer running has none, live or stored (the
        # session's stats have the run's rates).
        rate = self.bytes_done / elapsed if elapsed > 0 and self.state == "running" else 0.0
        eta = ((self.bytes_total - self.bytes_done) / rate
               if rate > 0 and self.state == "running" else None)
        return api.Task(name=self.name, vm=self.vm, disk=self.disk, state=self.state,
                        result=self.result,
                        bytes_done=self.bytes_done, bytes_total=self.bytes_total, rate=rate,
                        eta_seconds=eta, stage=self.stage, point_id=self.point_id)


@dataclass
class LiveSession:
    """A running session: its tasks, its log (and how much of it the catalog lacks), its
    state, the event that stops it and the condition its followers wait on."""

    id: str
    job: str
    kind: api.SessionKind
    started: datetime
    tasks: dict[str, LiveTask]
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
    outcome: api.SessionOutcome | None = None  # a restore's, once it ended

    def summary(self) -> api.SessionSummary:
        return api.SessionSummary(id=self.id, job=self.job, kind=self.kind, state=self.state,
                                  result=self.result, started=self.started, ended=self.ended)

    def stats(self) -> api.SessionStats | None:
        """A finished backup session's statistics (None: running, or not a backup)."""
        if self.ended is None or self.kind != "backup":
            return None
        vms = [VmRun(t.name, max(0.0, t.finished - t.started) if t.started else 0.0, t.stats)
               for t in self.tasks.values() if t.vm is not None and t.disk is None]
        return session_stats(self.started, self.ended, vms)

    def view(self) -> api.Session:
        with self.lock:
            return api.Session(id=self.id, job=self.job, kind=self.kind, state=self.state,
                               result=self.result, started=self.started, ended=self.ended,
                               tasks=[t.view() for t in self.tasks.values()],
                               log=list(self.log), stats=self.stats(),
                               outcome=self.outcome if self.ended is not None else None)

    def notify(self) -> None:
        """Wake the followers waiting for a change."""
        with self.changed:
            self.changed.notify_all()

    def add_log(self, level: api.LogLevel, message: str) -> None:
        """A line of the session's log (saved with the next save, which is at once)."""
        with self.lock:
            self.log.append(api.LogLine(time=datetime.now(UTC), level=level, message=message))
            self.unsaved_log += 1
        self.notify()


@dataclass(frozen=True)
class SessionRun:
    """One session as its kind's work sees it: the live record, the registry, the ids of the
    running sessions (whose snapshots are not leftovers) and whether an active full was
    asked for (backup sessions)."""

    live: LiveSession
    registry: Registry
    running_ids: Callable[[], frozenset[str]]
    full: bool = False

    def log(self, level: api.LogLevel, message: str) -> None:
        self.live.add_log(level, message)

    def notify(self) -> None:
        self.live.notify()

    def task(self, name: str, vm: str | None = None) -> LiveTask:
        """The task ``name``, added (waiting, of ``vm``) if the session has none yet."""
        with self.live.lock:
            return self.live.tasks.setdefault(name, LiveTask(name, vm))

    def save(self, *, force: bool = False) -> None:
        """Write the session to the catalog: the log at once, progress at most every second."""
        live = self.live
        now = time.monotonic()
        with live.lock:
            if not force and not live.unsaved_log and now - live.saved_at < FLUSH_SECONDS:
                return
            live.saved_at = now
            new_log = live.log[len(live.log) - live.unsaved_log:]
            first = len(live.log) - live.unsaved_log
            live.unsaved_log = 0
            row = SessionRow(live.id, live.job, live.kind, live.state, live.result,
                             live.started, live.ended,
                             detail_json(live.stats(),
                                         live.outcome if live.ended is not None else None))
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
