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
import urllib.request
from email.message import EmailMessage
from typing import Any

from appliance import api
from appliance.registry import Registry
from appliance.sessions import SessionManager

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

    def session_ended(self, job: str, result: str) -> None:
        settings = self.registry.notifications()
        if result not in settings.on:
            return
        last = self.sessions.last_session(job)
        if last is None:
            return
        session = self.sessions.session(last.id)
        try:
            extra = api.JobSpec.model_validate_json(self.registry.job(job).spec_json).notify_to
        except Exception:  # the job may be gone; the global recipients still hear of it
            extra = []
        threading.Thread(target=self.send, args=(settings, report(session), extra),
                         name="notify", daemon=True).start()

    def send(self, settings: api.Notifications, r: dict[str, Any],
             extra_to: list[str]) -> None:
        to = [*settings.mail_to, *(a for a in extra_to if a not in settings.mail_to)]
        if settings.smtp_host and to:
            try:
                msg = EmailMessage()
                msg["Subject"] = f"[vmkeep] {r['job']}: {r['result']}"
                msg["From"] = settings.mail_from
                msg["To"] = ", ".join(to)
                msg.set_content(mail_text(r))
                with smtplib.SMTP(settings.smtp_host, settings.smtp_port,
                                  timeout=TIMEOUT) as smtp:
                    if settings.smtp_starttls:
                        smtp.starttls()
                    smtp.send_message(msg)
            except (OSError, smtplib.SMTPException) as exc:
                log.warning("e-mail about job %s to %s failed: %s", r["job"], to, exc)
        if settings.webhook_url:
            try:
                req = urllib.request.Request(
                    settings.webhook_url, data=json.dumps(r).encode(), method="POST",
                    headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                    resp.read()
            except OSError as exc:
                log.warning("webhook about job %s failed: %s", r["job"], exc)
