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
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from appliance.errors import VmkeepError
from appliance.jobs.schedule import in_window, next_run
from appliance.registry import Registry
from appliance.service.jobs import schedule_of
from appliance.sessions.manager import SessionManager
from appliance.ticker import Ticker

log = logging.getLogger("appliance.scheduler")

Clock = Callable[[], datetime]
CONFIG_JOB = "(configuration backup)"  # not a job name: names cannot hold parentheses
CONFIG_LOOK = timedelta(seconds=2)  # how often to look whether the configuration changed
CONFIG_RETRY = timedelta(minutes=5)  # after a failed backup, before one for a change


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
            key = row.spec.model_dump_json()
            schedule = schedule_of(row.spec.schedule)
            known = self._due.get(row.name)
            if known is None or known[0] != key:  # new or edited: from now on
                self._due[row.name] = (key, next_run(schedule, now))
                continue
            due = known[1]
            if due is None or due > now:
                continue
            self._due[row.name] = (key, next_run(schedule, now, last_run=due))
            if not row.enabled:
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
