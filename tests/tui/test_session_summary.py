"""The session view's summary of a finished backup session (fake client): duration, rate,
processed / read / transferred, the dedup and compression ratios and the bottleneck with each
stage's share, within 80×24 beside the tasks and the log; none while the session runs."""

from __future__ import annotations

from appliance import api
from tests.tui.fake import NOW, FakeClient
from tests.tui.helpers import screen_text, until
from tui.app import create_app
from tui.screens.sessions import SessionScreen, session_percent, stats_text

SIZE = (80, 24)


async def test_a_finished_backup_session_shows_its_summary() -> None:
    fake = FakeClient()
    sid = fake.running_backup("nightly", steps=3, at=3)  # ended
    app = create_app(fake, clock=lambda: NOW, reconnect_every=0.05)
    async with app.run_test(size=SIZE) as pilot:
        app.action_open_session(sid)
        await until(pilot, lambda: all(x in screen_text(app) for x in (
            "session ended: success", "Bottleneck", "└ disk 0")))  # all drawn
        assert isinstance(app.screen, SessionScreen)
        text = screen_text(app)
        lines = [line.strip() for line in text.splitlines()]
        assert "Took 0:05 at 32.0 MiB/s · processed 320.0 MiB · read 160.0 MiB" in lines
        assert "transferred 10.7 MiB · dedup 5.0x · compression 3.0x" in lines
        assert ("Bottleneck: source read (source 72% · hashing 18% · repository 10%)"
                in lines)
        assert "✓ success" in text and "└ disk 0" in text  # the tasks and the log still show


async def test_a_running_session_has_no_summary_yet() -> None:
    fake = FakeClient()
    sid = fake.running_backup("nightly", steps=3, at=1)
    app = create_app(fake, clock=lambda: NOW, reconnect_every=0.05)
    async with app.run_test(size=SIZE) as pilot:
        app.action_open_session(sid)
        await until(pilot, lambda: "▶ running" in screen_text(app))
        assert "Bottleneck" not in screen_text(app) and "Took" not in screen_text(app)


def test_the_summary_fits_80_columns_with_large_numbers() -> None:
    big = 1023 << 40
    st = api.SessionStats(
        duration_seconds=99 * 3600 + 3599, rate=1023.9 * (1 << 30), processed=big, read=big,
        new=1, transferred=big, dedup_ratio=1e6, compression_ratio=None,
        bottleneck="hashing/compression",
        stages=[api.StageShare(stage=s, seconds=1.0, share=1 / 3)
                for s in ("source read", "hashing/compression", "repository write")],
        vms=[])
    lines = stats_text(st).splitlines()
    assert len(lines) == 3 and all(len(line) <= SIZE[0] for line in lines), lines
    assert "compression —" in lines[1] and lines[2].startswith("Bottleneck: hashing/compr")


def test_the_sessions_percentage_counts_vms_not_started_yet() -> None:
    def vm(name: str, state: api.TaskState, done: int, total: int) -> api.Task:
        return api.Task(name=name, state=state, result="success" if state == "ended" else None,
                        bytes_done=done, bytes_total=total, rate=0.0, eta_seconds=None,
                        stage=None, point_id=None)

    # 2 of 5 VMs: one done, one at 70 %; three waiting (their size unknown yet): 34 %, not 86 %.
    s = api.Session(id="s", job="j", kind="backup", state="running", result=None,
                    started=NOW, ended=None, log=[],
                    tasks=[vm("a", "ended", 100, 100), vm("b", "running", 70, 100),
                           *(vm(n, "waiting", 0, 0) for n in "cde")])
    assert session_percent(s) == 34
    assert session_percent(s.model_copy(update={"state": "ended", "result": "warning"})) == 100
