"""Alerts: conditions that need an administrator even when no session fails — so far, a VM
that has had no good restore point for longer than its job's RPO. Looked for by the
scheduler every ``alert_every_seconds``; each alert is sent once, and again only after it
cleared (a new point) and came back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from appliance import api


@dataclass(frozen=True, slots=True)
class Alert:
    key: str  # what it is about, to send it once
    message: str


def rpo_breaches(jobs: Sequence[api.JobSpec], newest_point: dict[str, datetime],
                 created: dict[str, datetime], now: datetime) -> list[Alert]:
    """VMs of enabled jobs with an RPO whose newest point (or, without one, the job itself)
    is older than the RPO (pure). ``newest_point``: VM name -> its newest point's time;
    ``created``: job name -> when the job was created."""
    out = []
    for job in jobs:
        if job.rpo_hours is None:
            continue
        rpo = timedelta(hours=job.rpo_hours)
        for vm in job.vms:
            since = newest_point.get(vm.name) or created.get(job.name)
            if since is not None and now - since > rpo:
                what = (f"its newest restore point is from {since:%Y-%m-%d %H:%M} UTC"
                        if vm.name in newest_point else "it has no restore point yet")
                out.append(Alert(f"rpo/{job.name}/{vm.name}",
                                 f"VM {vm.name} (job {job.name}): {what}, older than the "
                                 f"job's RPO of {job.rpo_hours:g} h"))
    return out
