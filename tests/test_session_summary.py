"""A session's live figures and its summary (pure): a VM's rate and ETA count from its first
read, not its snapshot; a finished backup session's statistics sum its VMs' and survive the
catalog row's detail JSON."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from appliance.jobs.backup_stats import BackupStats, StageTimes
from appliance.sessions.core import LiveSession, LiveTask
from appliance.sessions.stats import VmRun, detail_json, session_stats, stats_of

MiB = 1 << 20
T0 = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def test_a_vms_eta_leaves_out_its_snapshot_time() -> None:
    now = time.monotonic()
    # The snapshot took 90 s, the reads 10 s for 50 of 100 MiB: 5 MiB/s, 10 s to go.
    t = LiveTask("vm", "vm", state="running", bytes_done=50 * MiB, bytes_total=100 * MiB,
                 started=now - 100, reading=now - 10)
    v = t.view()
    assert v.rate == pytest.approx(5 * MiB, rel=0.01)
    assert v.eta_seconds == pytest.approx(10, rel=0.01)
    # Before its first read (the snapshot): no rate, no ETA.
    snap = LiveTask("vm", "vm", state="running", started=now - 30).view()
    assert (snap.rate, snap.eta_seconds) == (0.0, None)


def test_a_sessions_summary_sums_its_vms_and_survives_the_catalog_row() -> None:
    a = BackupStats(8 * MiB, 6 * MiB, 2 * MiB, MiB, 3.0, StageTimes(3.0, 1.0, 0.0))
    b = BackupStats(8 * MiB, 2 * MiB, 2 * MiB, MiB, 1.0, StageTimes(0.0, 0.5, 1.5))
    st = session_stats(T0, T0 + timedelta(seconds=8),
                       [VmRun("a", 5.0, a), VmRun("b", 2.0, b), VmRun("c", 1.0, None)])
    assert (st.duration_seconds, st.rate) == (8.0, MiB)
    assert (st.processed, st.read, st.new, st.transferred) == (16 * MiB, 8 * MiB, 4 * MiB,
                                                               2 * MiB)
    assert (st.dedup_ratio, st.compression_ratio) == (2.0, 2.0)
    assert st.bottleneck == "source read"
    assert [(x.stage, x.seconds, x.share) for x in st.stages] == [
        ("source read", 3.0, 0.5), ("hashing/compression", 1.5, 0.25),
        ("repository write", 1.5, 0.25)]
    assert [(v.vm, v.duration_seconds, v.read, v.bottleneck) for v in st.vms] == [
        ("a", 5.0, 6 * MiB, "source read"), ("b", 2.0, 2 * MiB, "repository write"),
        ("c", 1.0, 0, None)]  # c failed: no backup
    assert stats_of(detail_json(st)) == st
    assert stats_of(detail_json(None)) is None and stats_of("{}") is None
    assert stats_of('{"stats": {"duration_seconds": "x"}}') is None  # unreadable: none
    assert stats_of("not json") is None


def test_only_a_finished_backup_session_has_a_summary() -> None:
    now = time.monotonic()
    tasks = {"vm": LiveTask("vm", "vm", state="ended", result="success", started=now - 4,
                            finished=now - 1, stats=BackupStats(MiB, MiB, MiB, MiB, 2.0)),
             "vm · disk 0": LiveTask("vm · disk 0", "vm", 0, state="ended")}
    live = LiveSession("s", "j", "backup", T0, tasks)
    assert live.stats() is None and live.view().stats is None  # running
    live.ended = T0 + timedelta(seconds=5)
    st = live.stats()
    assert st is not None and [(v.vm, v.duration_seconds) for v in st.vms] == [("vm", 3.0)]
    assert live.view().stats == st
    live.kind = "copy"
    assert live.stats() is None
