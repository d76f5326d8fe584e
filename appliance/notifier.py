"""Notifications: when a session ends with a result the settings name (by default failed and
warning), an e-mail over SMTP to the global and the job's recipients, and an HTTP POST of
JSON to the webhook. Sent from a background thread; a failure to deliver is logged, never
raised into the session.

The e-mail and the webhook carry the job, the session's result, and for each VM its result
and the reason (the last warning or error logged for it).
"""

from __future__ import annotations

import json
import logging
import smtplib
import threading
import time
import urllib.request
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from appliance import api
from appliance.alerts import (
    Alert,
    config_backup_alerts,
    orphan_alerts,
    rpo_breaches,
    session_alerts,
    space_alerts,
    unreachable_alerts,
    vm_reasons,
)
from appliance.errors import VmkeepError
from appliance.registry import Registry
from appliance.sessions.manager import SessionManager
from appliance.ticker import Ticker

log = logging.getLogger("appliance.notifier")
TIMEOUT = 30.0
# Alerts not sent: a session's end was notified already (with each VM's result and reason).
UNSENT = frozenset({"session", "vm"})


def report(session: api.Session) -> dict[str, Any]:
    """What a notification says about a session (pure)."""
    vms = [{"vm": t.name, "result": t.result, "point_id": t.point_id,
             "reason": (vm_reasons(session, t.name) or [""])[-1]} for t in session.tasks]
    return {"job": session.job, "session": session.id, "state": session.state,
            "result": session.result, "started": session.started.isoformat(),
            "ended": session.ended.isoformat() if session.ended else None, "vms": vms}


def mail_text(r: dict[str, Any]) -> str:
    lines = [f"Job {r['job']}: {r['result']} (session {r['session']}, {r['state']})", ""]
    for vm in r["vms"]:
        lines.append(f"- {vm['vm']}: {vm['result']}"
                     + (f": {vm['reason']}" if vm["reason"] else ""))
    return "\n".join(lines) + "\n"


class Notifier:
    def __init__(self, registry: Registry, sessions: SessionManager) -> None:
        self.registry = registry
        self.sessions = sessions
        sessions.on_end.append(self.session_ended)
        # What holds now, since when; each was sent when it appeared.
        self._current: dict[str, tuple[Alert, datetime]] = {}
        self._lock = threading.Lock()  # _current: the ticker's thread and sessions' ends
        self._refreshed = 0  # counts refresh_sessions: a look begun before one keeps its result
        self._last_look = time.monotonic()
        # Looks each second whether alert_every_seconds has passed, so a changed setting
        # counts at once.
        self._ticker = Ticker("alerts", 1.0, self._maybe_look)

    # -- alerts -------------------------------------------------------------------------------

    def start(self) -> None:
        self._ticker.start()

    def stop(self) -> None:
        self._ticker.stop()

    def look_soon(self) -> None:
        """Look for alerts at the next tick (within a second), not after the period."""
        self._last_look = float("-inf")

    def _maybe_look(self) -> None:
        every = self.registry.config.notifications().alert_every_seconds
        if time.monotonic() - self._last_look < every:
            return
        self._last_look = time.monotonic()
        self.check_alerts(datetime.now(UTC))

    def check_alerts(self, now: datetime) -> list[Alert]:
        """Look for every kind of alert; send those new since the last look; return them."""
        reg = self.registry
        settings = reg.config.notifications()
        rows = reg.jobs.all()
        jobs = [r.spec for r in rows if r.enabled]
        newest = {p.object_name: p.created for _repo, p, _disks in reg.restores.points()}
        refreshed = self._refreshed
        alerts = session_alerts(self._last_sessions([r.name for r in rows]))
        alerts += rpo_breaches(jobs, newest, {r.name: r.created for r in rows}, now)
        busy = self.sessions.busy_vms()
        for vcenter, findings in reg.vcenters.hunt_findings().items():
            alerts += orphan_alerts(vcenter, findings, busy)
        failures, spaces = [], []
        for info in reg.repositories.all():
            try:
                space = reg.repositories.space_now(info)
            except VmkeepError as exc:
                failures.append((info.name, str(exc)))
                continue
            if space is not None:
                spaces.append((info.name, *space))
        alerts += unreachable_alerts(failures)
        alerts += space_alerts(spaces, settings.free_space_alert_percent)
        alerts += config_backup_alerts(reg.config.schedule())
        with self._lock:
            if self._refreshed != refreshed:  # a session ended meanwhile: its look is newer
                alerts = [a for a in alerts if a.kind not in UNSENT] + [
                    a for a, _since in self._current.values() if a.kind in UNSENT]
            new = [a for a in alerts if a.key not in self._current]  # sent once while it lasts
            self._current = {a.key: (a, self._current.get(a.key, (a, now))[1])
                             for a in alerts}
        for kind in dict.fromkeys(a.kind for a in new if a.kind not in UNSENT):
            body = {"alert": kind, "messages": [a.message for a in new if a.kind == kind]}
            threading.Thread(target=self.send, args=(settings, body, []), name="alert",
                             daemon=True).start()
        return new

    def _last_sessions(self, jobs: list[str]) -> list[api.Session]:
        """Each job's last session (those that have one)."""
        out = []
        for job in jobs:
            last = self.sessions.last_session(job)
            if last is not None and last.state != "running":
                try:
                    out.append(self.sessions.session(last.id))
                except VmkeepError as exc:  # gone meanwhile: the next look sees the next one
                    log.info("session %s of job %s not read for alerts: %s", last.id, job, exc)
        return out

    def refresh_sessions(self, now: datetime) -> None:
        """Look again at the jobs' last sessions only (their alerts are not sent), so a
        session's end shows in the alerts at once; the other kinds wait for the next look."""
        found = session_alerts(self._last_sessions([r.name for r in self.registry.jobs.all()]))
        with self._lock:
            self._refreshed += 1
            kept = {k: v for k, v in self._current.items() if v[0].kind not in UNSENT}
            self._current = kept | {a.key: (a, self._current.get(a.key, (a, now))[1])
                                    for a in found}

    def alerts(self) -> list[api.Alert]:
        """What needs an administrator as of the last look, oldest first."""
        with self._lock:
            current = list(self._current.values())
        return sorted((a.wire(since) for a, since in current),
                      key=lambda a: (a.since, a.key))

    def session_ended(self, job: str, result: str) -> None:
        try:
            self.refresh_sessions(datetime.now(UTC))  # its alerts (or their clearing) at once
        except VmkeepError as exc:  # the session's notification goes out all the same
            log.warning("alerts of job %s's session not looked at: %s", job, exc)
        settings = self.registry.config.notifications()
        if result not in settings.on:
            return
        last = self.sessions.last_session(job)
        if last is None:
            return
        session = self.sessions.session(last.id)
        try:
            extra = self.registry.jobs.spec(job).notify_to
        except Exception:  # the job may be gone; the global recipients still hear of it
            extra = []
        threading.Thread(target=self.send, args=(settings, report(session), extra),
                         name="notify", daemon=True).start()

    def send(self, settings: api.Notifications, r: dict[str, Any],
             extra_to: list[str]) -> None:
        to = [*settings.mail_to, *(a for a in extra_to if a not in settings.mail_to)]
        what = r.get("job") or "alert"
        if settings.smtp_host and to:
            try:
                msg = EmailMessage()
                if "alert" in r:
                    msg["Subject"] = f"[vmkeep] alert: {r['messages'][0]}"
                    msg.set_content("\n".join(f"- {m}" for m in r["messages"]) + "\n")
                else:
                    msg["Subject"] = f"[vmkeep] {r['job']}: {r['result']}"
                    msg.set_content(mail_text(r))
                msg["From"] = settings.mail_from
                msg["To"] = ", ".join(to)
                with smtplib.SMTP(settings.smtp_host, settings.smtp_port,
                                  timeout=TIMEOUT) as smtp:
                    if settings.smtp_starttls:
                        smtp.starttls()
                    smtp.send_message(msg)
            except (OSError, smtplib.SMTPException) as exc:
                log.warning("e-mail about %s to %s failed: %s", what, to, exc)
        if settings.webhook_url:
            try:
                req = urllib.request.Request(
                    settings.webhook_url, data=json.dumps(r).encode(), method="POST",
                    headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                    resp.read()
            except OSError as exc:
                log.warning("webhook about %s failed: %s", what, exc)
