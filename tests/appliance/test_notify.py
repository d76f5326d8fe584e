"""A failing job sends one e-mail (to a local SMTP server, aiosmtpd) and one webhook (to a
local HTTP receiver), each naming the job, the VM and the reason."""

from __future__ import annotations

import email
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.appliance.lab import VM, Lab
from tests.appliance.test_scheduling import set_disk_mode
from tests.helpers import poll


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[_Inbox, int]]:
    inbox = _Inbox()
    with socket.socket() as probe:  # aiosmtpd needs a port number up front
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def webhook() -> Iterator[tuple[list[dict[str, Any]], int]]:
    got: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield got, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def wait_for(what: str, check: Any, timeout: float = 60) -> None:
    poll(what, check, timeout, every=0.1)


def test_a_failing_job_sends_one_mail_and_one_webhook(
        lab: Lab, smtp: tuple[_Inbox, int],
        webhook: tuple[list[dict[str, Any]], int]) -> None:
    inbox, smtp_port = smtp
    posts, hook_port = webhook
    r = lab.vmkeep("notify", "set", "--smtp-host", "127.0.0.1", "--smtp-port", str(smtp_port),
                   "--to", "admin@example.test", "--webhook",
                   f"http://127.0.0.1:{hook_port}/vmkeep")
    assert r.code == 0, r.err
    assert lab.vmkeep("job", "create", "ok", "--vcenter", "vc", "--vm", VM, "--repo",
                      "main", "--enable-cbt").code == 0
    assert lab.vmkeep("job", "run", "ok", "--wait").code == 0  # success: not reported

    assert lab.vmkeep("job", "create", "bad", "--vcenter", "vc", "--vm", VM, "--repo",
                      "main", "--retries", "0").code == 0
    set_disk_mode(lab, VM, "independent_persistent")
    assert lab.vmkeep("job", "run", "bad", "--wait").code == 2
    wait_for("the e-mail and the webhook", lambda: inbox.messages and posts)
    time.sleep(0.5)  # nothing more arrives (one of each)
    assert len(inbox.messages) == 1 and len(posts) == 1
    msg = email.message_from_bytes(inbox.messages[0])
    assert msg["Subject"] == "[vmkeep] bad: failed"
    assert msg["To"] == "admin@example.test"
    text = msg.get_payload()
    assert isinstance(text, str)
    assert f"- {VM}: failed: no disk of VM {VM!r} could be backed up" in text
    post = posts[0]
    assert (post["job"], post["result"]) == ("bad", "failed")
    assert post["vms"][0]["vm"] == VM and "could be backed up" in post["vms"][0]["reason"]


def own_config_password(lab: Lab) -> None:
    """Configuration backups sealed with a password of the administrator's own: without it
    the default one's generated password is alerted too (see test_catalog_loss.py)."""
    r = lab.vmkeep("config", "schedule", "--repo", "main", "--daily", "01:30",
                   "--password-stdin", stdin="the administrator's own password")
    assert r.code == 0, r


def test_a_missed_rpo_sends_one_alert(lab: Lab, smtp: tuple[_Inbox, int],
                                      webhook: tuple[list[dict[str, Any]], int]) -> None:
    """A job whose VM has had no point for longer than its RPO (4 s here) is alerted once by
    e-mail and webhook, looked for every second, and not sent again while it lasts."""
    inbox, smtp_port = smtp
    posts, hook_port = webhook
    own_config_password(lab)
    assert lab.vmkeep("notify", "set", "--smtp-host", "127.0.0.1", "--smtp-port",
                      str(smtp_port), "--to", "admin@example.test", "--webhook",
                      f"http://127.0.0.1:{hook_port}/", "--alert-every", "1s").code == 0
    assert lab.vmkeep("job", "create", "rpo", "--vcenter", "vc", "--vm", VM, "--repo",
                      "main", "--enable-cbt", "--rpo", str(4 / 3600)).code == 0
    wait_for("the RPO alert", lambda: inbox.messages and posts)
    msg = email.message_from_bytes(inbox.messages[0])
    assert str(msg["Subject"]).startswith(f"[vmkeep] alert: VM {VM} (job rpo)")
    assert posts[0]["alert"] == "rpo" and "no restore point yet" in posts[0]["messages"][0]
    time.sleep(2.5)  # looked for twice more: not sent again
    assert len(inbox.messages) == 1 and len(posts) == 1


def test_a_leftover_snapshot_and_a_full_repository_are_alerted(
        lab: Lab, webhook: tuple[list[dict[str, Any]], int]) -> None:
    """A snapshot vmkeep left behind (a crashed run's) and a repository under the free-space
    threshold (100 % here: any disk is) each reach the webhook once and `vmkeep alerts`."""
    from appliance.vsphere.inventory import find_vm
    from appliance.vsphere.session import connect
    from appliance.vsphere.snapshot import create_snapshot, snapshot_name

    posts, hook_port = webhook
    own_config_password(lab)
    # Before the leftover exists (the appliance may look for leftovers whenever it likes).
    assert lab.vmkeep("alerts").out.strip() == "no alerts"
    s = lab.sim
    with connect(s.host, s.port, s.user, s.password, fingerprint=None, insecure=True) as si:
        vm = si.content.searchIndex.FindByUuid(None, find_vm(si, VM).instance_uuid, True, True)
        create_snapshot(si, vm._moId, snapshot_name())
    assert lab.vmkeep("notify", "set", "--webhook", f"http://127.0.0.1:{hook_port}/",
                      "--alert-every", "1s", "--free-space-alert", "100").code == 0
    wait_for("both alerts", lambda: {p["alert"] for p in posts} == {"orphans", "space"})
    by_kind = {p["alert"]: p["messages"] for p in posts}
    assert f"VM {VM}" in by_kind["orphans"][0] and "vmkeep hunter" in by_kind["orphans"][0]
    assert by_kind["space"][0].startswith("repository main: ")
    shown = json.loads(lab.vmkeep("alerts", "--json").out)
    assert sorted(a["kind"] for a in shown) == ["orphans", "space"]
    # Cleaned up, the orphan alert clears at the next look.
    assert lab.vmkeep("hunter").code == 0
    wait_for("the orphan alert to clear",
             lambda: [a["kind"] for a in json.loads(lab.vmkeep("alerts", "--json").out)]
             == ["space"])
    assert len(posts) == 2
