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
    space_alerts,
    unreachable_alerts,
)
from appliance.errors import VmkeepError
from appliance.registry import Registry
from appliance.sessions.manager import SessionManager
from appliance.ticker import Ticker

log = logging.getLogger("appliance.notifier")
TIMEOUT = 30.0


def report(session: api.Session) -> dict[str, Any]:
    """What a notification says about a session (pure)."""
    vms = []
    for t in session.tasks:
        reasons = [x.message for x in session.log
                   if x.level in ("warning", "error") and x.message.startswith(f"{t.name}: ")]
        vms.append({"vm": t.name, "result": t.result, "point_id": t.point_id,
                    "reason": reasons[-1][len(t.name) + 2:] if reasons else ""})
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
        alerts = rpo_breaches(jobs, newest, {r.name: r.created for r in rows}, now)
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
        new = [a for a in alerts if a.key not in self._current]  # sent once while it lasts
        self._current = {a.key: (a, self._current.get(a.key, (a, now))[1]) for a in alerts}
        for kind in dict.fromkeys(a.kind for a in new):
            body = {"alert": kind, "messages": [a.message for a in new if a.kind == kind]}
            threading.Thread(target=self.send, args=(settings, body, []), name="alert",
                             daemon=True).start()
        return new

    def alerts(self) -> list[api.Alert]:
        """What needs an administrator as of the last look, oldest first."""
        current = list(self._current.values())
        return sorted((api.Alert(kind=a.kind, key=a.key, message=a.message, since=since)
                       for a, since in current), key=lambda a: (a.since, a.key))

    def session_ended(self, job: str, result: str) -> None:
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
