"""Alerts: conditions that need an administrator — a job whose last session failed or warned
and each VM that failed or warned in it (with the reason it logged), a VM that has had no good
restore point for longer than its job's RPO, snapshots or files the Snapshot Hunter would
clean up, a repository running out of space. Looked for every ``alert_every_seconds`` (a
session's own also as soon as it ends); each alert is sent once, and again only after it
cleared and came back (a session's own are not: its end was notified). The rules are pure
functions of what was looked up."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from appliance import api


@dataclass(frozen=True, slots=True)
class Alert:
    key: str  # what it is about, to send it once: "KIND/…"
    message: str
    severity: api.AlertSeverity = "warning"

    @property
    def kind(self) -> api.AlertKind:
        # Every rule below makes its key "KIND/…" with one of api.AlertKind (the wire
        # model checks it).
        return cast("api.AlertKind", self.key.partition("/")[0])

    def wire(self, since: datetime) -> api.Alert:
        return api.Alert(kind=self.kind, key=self.key, message=self.message, since=since,
                         severity=self.severity)


def vm_reasons(session: api.Session, vm: str) -> list[str]:
    """The warnings and errors ``session`` logged for ``vm`` (``api.vm_reasons``)."""
    return api.vm_reasons(session, vm)


def session_alerts(last: Sequence[api.Session]) -> list[Alert]:
    """For each job's last session (``last``) that ended failed or with warnings: the job
    (with the last error or warning it logged when no VM did), and each VM that failed or
    warned in it with the reasons it logged (pure)."""
    out = []
    for s in last:
        if s.state == "running" or s.result not in ("failed", "warning"):
            continue
        severity: api.AlertSeverity = "error" if s.result == "failed" else "warning"
        when = f"{s.started:%Y-%m-%d %H:%M} UTC"
        vms = [t for t in s.tasks if t.disk is None and t.result in ("failed", "warning")]
        level = "error" if s.result == "failed" else "warning"
        why = "" if vms else next((x.message for x in reversed(s.log) if x.level == level), "")
        out.append(Alert(f"session/{s.job}",
                         f"job {s.job}: last session {s.result} ({when}, session {s.id})"
                         + (f": {why}" if why else ""), severity))
        for t in vms:
            failed = t.result == "failed"
            reasons = "; ".join(dict.fromkeys(vm_reasons(s, t.name))) or "no reason logged"
            out.append(Alert(f"vm/{s.job}/{t.name}",
                             f"VM {t.name} (job {s.job}): {'failed' if failed else 'warned'} "
                             f"in the last session ({when}): {reasons}",
                             "error" if failed else "warning"))
    return out


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


def space_alerts(repos: Sequence[tuple[str, int, int]], threshold_percent: float
                 ) -> list[Alert]:
    """Repositories (name, free bytes, total bytes) with less than ``threshold_percent`` free
    (pure)."""
    out = []
    for name, free, total in repos:
        if total > 0 and free * 100 < threshold_percent * total:
            out.append(Alert(f"space/{name}",
                             f"repository {name}: {free * 100 / total:.1f} % free "
                             f"({free >> 20} MiB of {total >> 20} MiB), under the "
                             f"{threshold_percent:g} % alert threshold: prune old points "
                             "(`vmkeep prune`) or give it more space"))
    return out


def orphan_alerts(vcenter: str, findings: Sequence[tuple[str, str]],
                  busy_vms: frozenset[str]) -> list[Alert]:
    """The Snapshot Hunter's findings (VM name, what) on one vCenter, less those of VMs a
    session is backing up right now (their snapshot is in use, not left over) (pure)."""
    return [Alert(f"orphans/{vcenter}/{vm}/{what}",
                  f"vCenter {vcenter}, VM {vm}: {what}; `vmkeep hunter --vcenter {vcenter}` "
                  "cleans it up")
            for vm, what in findings if vm not in busy_vms]


def unreachable_alerts(failures: Sequence[tuple[str, str]]) -> list[Alert]:
    """Repositories (name, why) that could not be opened when looked at (pure)."""
    return [Alert(f"repository/{name}", f"repository {name} cannot be reached: {why}")
            for name, why in failures]


def config_backup_alerts(view: api.ConfigScheduleView) -> list[Alert]:
    """The scheduled configuration backup failed last time, or it is sealed with the password
    the appliance generated, which a lost appliance takes with it (pure)."""
    if view.repository is None:
        return []
    out = []
    if view.last_result == "failed":
        out.append(Alert(f"config/{view.repository}",
                         f"the scheduled configuration backup to repository "
                         f"{view.repository} failed: {view.last_message}"))
    if view.password_generated:
        out.append(Alert("config/password",
                         f"the configuration backups into repository {view.repository} are "
                         "sealed with a password the appliance generated and keeps only in "
                         "its own secret store: if this machine is lost they cannot be "
                         "opened; set a password you keep elsewhere with `vmkeep config "
                         "schedule --password-stdin`"))
    return out


def covered(vms: Sequence[api.InventoryVm], jobs: Sequence[api.JobSpec],
            created: dict[str, datetime], last: Sequence[api.Session], now: datetime
            ) -> list[api.InventoryVm]:
    """The VMs with what covers them (pure): their result in the newest of their jobs' last
    sessions (``last``) that backed them up, with its reasons, and their RPO status by the
    rule of ``rpo_breaches`` (``jobs``: the enabled ones; ``created``: job -> when)."""
    newest = {v.name: v.last_point_time for v in vms if v.last_point_time is not None}
    breached = {a.key for a in rpo_breaches(jobs, newest, created, now)}
    with_rpo = {(j.name, v.name) for j in jobs if j.rpo_hours is not None for v in j.vms}
    by_job = {s.job: s for s in last}
    out = []
    for vm in vms:
        runs = sorted(((s.started, s, t) for j in vm.jobs if (s := by_job.get(j)) is not None
                       for t in s.tasks if t.disk is None and t.name == vm.name and t.result),
                      key=lambda r: r[0])
        rpo = [j for j in vm.jobs if (j, vm.name) in with_rpo]
        status: api.RpoStatus = ("none" if not rpo else "breached" if any(
            f"rpo/{j}/{vm.name}" in breached for j in rpo) else "ok")
        update: dict[str, object] = {"rpo_status": status}
        if runs:
            _, s, t = runs[-1]
            update |= {"last_result": t.result, "last_job": s.job,
                       "last_reason": "" if t.result == "success"
                       else "; ".join(dict.fromkeys(vm_reasons(s, vm.name)))}
        out.append(vm.model_copy(update=update))
    return out
