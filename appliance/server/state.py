"""What the routes need of the running appliance."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from appliance import api
from appliance.home import Home
from appliance.registry import Registry
from appliance.service.job_definition import JobDefinition
from appliance.sessions.manager import SessionManager


def _unscheduled(_job: JobDefinition) -> datetime | None:
    return None


@dataclass(slots=True)
class ApplianceState:
    """What the routes need of the running appliance."""

    home: Home
    pid: int
    started: datetime
    request_stop: Callable[[], None]
    registry: Registry
    sessions: SessionManager
    alerts: Callable[[], list[api.Alert]] = list  # what needs an administrator now
    # When the scheduler starts a job next (its own due time; None: not by itself).
    next_run: Callable[[JobDefinition], datetime | None] = _unscheduled
