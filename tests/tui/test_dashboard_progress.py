"""The dashboard's Running panel: each running session's percentage is the mean of its VMs'
(a VM not started yet counts as 0 %), the same number the session view shows."""

from __future__ import annotations

from appliance import api
from tests.tui.fake import NOW, FakeClient
from tests.tui.helpers import screen_text, until
from tui.app import create_app
from tui.screens.dashboard import running_text


def _vm(name: str, state: api.TaskState, done: int, total: int) -> api.Task:
    return api.Task(name=name, state=state, result="success" if state == "ended" else None,
                    bytes_done=done, bytes_total=total, rate=0.0, eta_seconds=None,
                    stage=None, point_id=None)


def test_a_running_sessions_percentage_is_the_mean_of_its_vms() -> None:
    # One VM done, one at 70 %, three waiting: (100 + 70 + 0 + 0 + 0) / 5 = 34 %, where the
    # bytes read over the bytes known (170 of 200) would say 85 %.
    s = api.Session(id="s", job="nightly", kind="backup", state="running", result=None,
                    started=NOW, ended=None, log=[],
                    tasks=[_vm("a", "ended", 100, 100), _vm("b", "running", 70, 100),
                           *(_vm(n, "waiting", 0, 0) for n in "cde")])
    head = running_text([s]).splitlines()[0]
    assert head.startswith(" ▶ nightly (backup) 34% since "), head


async def test_the_dashboard_shows_the_running_sessions_percentage() -> None:
    fake = FakeClient()
    fake.running_backup(at=2)  # one VM at 40 %
    app = create_app(fake, clock=lambda: NOW, reconnect_every=0.05)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: "▶ nightly (backup) 40% since" in screen_text(app))
