"""The scheduler: starts jobs at their scheduled times, inside their backup windows, and
chained jobs when their parent's session ends. The clock and the wait are injectable, so tests
can drive it; the appliance runs it with the real clock, ticking twice a second.

A run that falls due while the job is still running is skipped (and said so in the
appliance's log); runs missed while the appliance was down are not made up: the next one is
computed from the time the appliance comes back. The configuration backup, when scheduled,
falls due the same way and runs in the ticker's thread (it is small); it also runs within
seconds of a change to the configuration (a job, vCenter, repository, setting or secret
added, edited or removed), so that a lost catalog costs nothing that was set up. When none
was ever set (nor turned off), the default one is set up as soon as there is a repository:
daily into the first repository, sealed with a generated password (see
``ConfigService.set_default`` in ``appliance.service.config``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from appliance.errors import VmkeepError
from appliance.jobs.schedule import Schedule, in_window, next_run
from appliance.registry import Registry
from appliance.service.job_definition import JobDefinition
from appliance.service.jobs import schedule_of
from appliance.sessions.manager import SessionManager
from appliance.ticker import Ticker

log = logging.getLogger("appliance.scheduler")

Clock = Callable[[], datetime]
CONFIG_JOB = "(configuration backup)"  # not a job name: names cannot hold parentheses
CONFIG_LOOK = timedelta(seconds=2)  # how often to look whether the configuration changed
CONFIG_RETRY = timedelta(minutes=5)  # after a failed backup, before one for a change
WINDOW_LOOK = 10_000  # due times looked through for one inside the backup window


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    def __init__(self, registry: Registry, sessions: SessionManager, *,
                 clock: Clock = _utcnow, tick: float = 0.5) -> None:
        self.registry = registry
        self.sessions = sessions
        self.clock = clock
        self.tick = tick
        self._due: dict[str, tuple[str, datetime | None]] = {}  # job -> (spec, next run)
        self._lock = threading.Lock()  # _due: the ticker's thread and the API's (next_run)
        self._next_config_look: datetime | None = None
        self._ticker = Ticker("scheduler", tick, self.run_due)
        sessions.on_end.append(self.parent_ended)

    def start(self) -> None:
        self._ticker.start()

    def stop(self) -> None:
        self._ticker.stop()

    def run_due(self) -> list[str]:
        """Start every job that is due now; return their names."""
        now = self.clock()
        started = []
        for row in self.registry.jobs.all():
            schedule = schedule_of(row.spec.schedule)
            if not self._take_due(row, schedule, now) or not row.enabled:
                continue
            if not in_window(schedule, now):
                log.info("job %s is due but outside its backup window; skipped", row.name)
                continue
            try:
                self.sessions.run_job(row.name, scheduled=True)
                started.append(row.name)
            except VmkeepError as exc:
                log.warning("job %s is due but did not start: %s", row.name, exc)
        if self._config_due(now):
            started.append(CONFIG_JOB)
        return started

    def _known_due(self, row: JobDefinition, schedule: Schedule, now: datetime
                   ) -> tuple[datetime | None, bool]:
        """The job's due time as the scheduler keeps it, and whether it was known before
        (a job new or edited is due from now on). Call with the lock held."""
        key = row.spec.model_dump_json()
        known = self._due.get(row.name)
        if known is None or known[0] != key:
            self._due[row.name] = (key, next_run(schedule, now))
            return self._due[row.name][1], False
        return known[1], True

    def _take_due(self, row: JobDefinition, schedule: Schedule, now: datetime) -> bool:
        """Whether the job's run falls due at ``now``; if so, its next one is set."""
        with self._lock:
            due, known = self._known_due(row, schedule, now)
            if not known or due is None or due > now:
                return False
            self._due[row.name] = (row.spec.model_dump_json(),
                                   next_run(schedule, now, last_run=due))
            return True

    def next_run(self, row: JobDefinition) -> datetime | None:
        """When the scheduler starts the job next (UTC): its own due time, moved on past the
        due times it would skip outside the backup window; None for a disabled job, a manual
        one, or one chained after another (it starts when its parent ends)."""
        if not row.enabled:
            return None
        schedule = schedule_of(row.spec.schedule)
        with self._lock:
            due, _known = self._known_due(row, schedule, self.clock())
        for _ in range(WINDOW_LOOK):
            if due is None or in_window(schedule, due):
                return due
            due = next_run(schedule, due, last_run=due)
        return None  # no due time falls inside the window

    def _config_due(self, now: datetime) -> bool:
        """Run the scheduled configuration backup if it is due, or if the configuration
        changed since the last one; say whether it ran. Sets up the default one (daily into
        the first repository) when none was ever set."""
        look = self._next_config_look is None or now >= self._next_config_look
        if look:
            self._next_config_look = now + CONFIG_LOOK
            self.registry.config.set_default()
        view = self.registry.config.schedule()
        key = view.model_dump_json(include={"repository", "schedule"})
        known = self._due.get(CONFIG_JOB)
        schedule = schedule_of(view.schedule)
        if known is None or known[0] != key:
            self._due[CONFIG_JOB] = (key, next_run(schedule, now))
            known = self._due[CONFIG_JOB]
        due = known[1]
        if due is not None and due <= now and in_window(schedule, now):
            self._due[CONFIG_JOB] = (key, next_run(schedule, now, last_run=due))
        elif not (look and view.repository is not None and view.schedule.kind != "none"
                  and self.registry.config.changed()):
            return False
        done = self.registry.config.scheduled_backup(now)
        if done.last_result == "success":
            log.info("configuration backed up to %s", done.last_message)
        else:
            log.warning("the configuration backup failed: %s", done.last_message)
            self._next_config_look = now + CONFIG_RETRY  # not again at once for a change
        return True

    def parent_ended(self, job: str, result: str) -> None:
        """Start the enabled jobs chained after ``job``."""
        for row in self.registry.jobs.all():
            spec = row.spec
            if row.enabled and spec.schedule.kind == "after" and spec.schedule.after == job:
                log.info("job %s ended (%s): starting %s, chained after it", job, result,
                         row.name)
                try:
                    self.sessions.run_job(row.name, scheduled=True)
                except VmkeepError as exc:
                    log.warning("chained job %s did not start: %s", row.name, exc)
