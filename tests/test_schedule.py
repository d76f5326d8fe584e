"""Schedule math, table-tested: daily, weekdays, chosen days, monthly by day and by nth
weekday, periodic, chained, time zones and both DST changes, and backup windows."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from appliance.errors import UsageError
from appliance.jobs.schedule import (
    Schedule,
    in_window,
    next_run,
    parse_days,
    parse_period,
    parse_time,
    parse_window,
    window_end,
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


CASES = [
    # (schedule, after (UTC), expected next run (UTC))
    (Schedule("daily", at=time(22, 0)), "2026-12-02T10:00", "2026-12-02T22:00"),
    (Schedule("daily", at=time(22, 0)), "2026-12-02T22:00", "2026-12-03T22:00"),
    (Schedule("daily", at=time(22, 0), tz="Europe/Berlin"), "2026-12-02T10:00",
     "2026-12-02T21:00"),
    # weekdays: Friday night's next run is Monday
    (Schedule("daily", at=time(1, 0), days=(0, 1, 2, 3, 4)), "2026-12-04T02:00",
     "2026-12-07T01:00"),
    (Schedule("daily", at=time(6, 30), days=(2,)), "2026-12-02T07:00", "2026-12-09T06:30"),
    # spring forward in Berlin (2026-03-29, 02:00 -> 03:00): 02:30 does not exist, runs at 03:30
    (Schedule("daily", at=time(2, 30), tz="Europe/Berlin"), "2026-03-28T12:00",
     "2026-03-29T01:30"),
    (Schedule("daily", at=time(2, 30), tz="Europe/Berlin"), "2026-03-29T01:30",
     "2026-03-30T00:30"),
    # fall back (2026-10-25, 03:00 -> 02:00): 02:30 exists twice, runs once, the first time
    (Schedule("daily", at=time(2, 30), tz="Europe/Berlin"), "2026-10-24T12:00",
     "2026-10-25T00:30"),
    (Schedule("daily", at=time(2, 30), tz="Europe/Berlin"), "2026-10-25T00:30",
     "2026-10-26T01:30"),
    # monthly by day; 31 skips months without it; -1 is the last day
    (Schedule("monthly", at=time(3, 0), day_of_month=15), "2026-12-02T00:00",
     "2026-12-15T03:00"),
    (Schedule("monthly", at=time(3, 0), day_of_month=31), "2027-01-31T04:00",
     "2027-03-31T03:00"),
    (Schedule("monthly", at=time(3, 0), day_of_month=-1), "2027-02-01T00:00",
     "2027-02-28T03:00"),
    # first Monday, last Friday
    (Schedule("monthly", at=time(4, 0), nth=1, weekday=0), "2026-12-02T00:00",
     "2026-12-07T04:00"),
    (Schedule("monthly", at=time(4, 0), nth=-1, weekday=4), "2026-12-02T00:00",
     "2026-12-25T04:00"),
]


@pytest.mark.parametrize(("schedule", "after", "expected"), CASES)
def test_next_run(schedule: Schedule, after: str, expected: str) -> None:
    assert next_run(schedule, utc(after)) == utc(expected)


def test_periodic_counts_from_the_last_run_and_never_returns_the_past() -> None:
    s = Schedule("periodic", every=timedelta(minutes=30))
    assert next_run(s, utc("2026-12-02T10:00"), utc("2026-12-02T09:50")) == \
        utc("2026-12-02T10:20")
    assert next_run(s, utc("2026-12-02T12:00"), utc("2026-12-02T09:50")) == \
        utc("2026-12-02T12:20")
    assert next_run(s, utc("2026-12-02T12:00")) == utc("2026-12-02T12:30")


def test_chained_and_manual_jobs_have_no_time() -> None:
    assert next_run(Schedule("after", after="nightly"), utc("2026-12-02T00:00")) is None
    assert next_run(Schedule(), utc("2026-12-02T00:00")) is None


WINDOW = Schedule("daily", at=time(22, 0), tz="Europe/Berlin",
                  window=((time(22, 0), time(6, 0)),))


@pytest.mark.parametrize(("now", "open_", "closes"), [
    ("2026-12-02T20:59", False, None),        # 21:59 local
    ("2026-12-02T21:00", True, "2026-12-03T05:00"),
    ("2026-12-03T04:59", True, "2026-12-03T05:00"),  # 05:59 local, the night before's
    ("2026-12-03T05:00", False, None),
])
def test_an_overnight_window(now: str, open_: bool, closes: str | None) -> None:
    assert in_window(WINDOW, utc(now)) is open_
    if closes:
        assert window_end(WINDOW, utc(now)) == utc(closes)


def test_no_window_is_always_open() -> None:
    assert in_window(Schedule(), utc("2026-12-02T12:00"))
    assert window_end(Schedule(), utc("2026-12-02T12:00")) is None


@pytest.mark.parametrize("bad", [
    lambda: Schedule("daily"),
    lambda: Schedule("monthly", at=time(1, 0)),
    lambda: Schedule("monthly", at=time(1, 0), day_of_month=32),
    lambda: Schedule("monthly", at=time(1, 0), nth=5, weekday=0),
    lambda: Schedule("periodic", every=timedelta(0)),
    lambda: Schedule("after"),
    lambda: Schedule("daily", at=time(1, 0), tz="Mars/Olympus"),
    lambda: Schedule("hourly"),
    lambda: parse_time("25:00"),
    lambda: parse_period("10x"),
    lambda: parse_days("mon,funday"),
    lambda: parse_window("22:00"),
])
def test_bad_settings_say_what_to_give(bad: object) -> None:
    with pytest.raises(UsageError):
        bad()  # type: ignore[operator]


def test_parsers() -> None:
    assert parse_time("06:30") == time(6, 30)
    assert parse_period("90s") == timedelta(seconds=90)
    assert parse_period("2h") == timedelta(hours=2)
    assert parse_days("weekdays") == (0, 1, 2, 3, 4)
    assert parse_days("fri,mon") == (0, 4)
    assert parse_window("22:00-06:00") == (time(22, 0), time(6, 0))


@pytest.mark.parametrize(("free", "total", "need", "level"), [
    (100 << 30, 200 << 30, 10 << 30, None),
    (5 << 30, 200 << 30, 10 << 30, "error"),      # less than the last fulls stored
    (15 << 30, 1000 << 30, 10 << 30, "warning"),  # less than twice
    (4 << 30, 100 << 30, 0, "warning"),           # 96 % full
    (50 << 30, 100 << 30, 0, None),               # new VMs, plenty of room
])
def test_free_space_before_a_job(free: int, total: int, need: int, level: str | None) -> None:
    from appliance.sessions.backup import space_verdict

    got = space_verdict(free, total, need)
    assert (got[0] if got else None) == level
    if got:
        assert "GiB" in got[1]


def test_excluded_disks() -> None:
    from appliance.jobs.schedule import excluded_disks

    assert excluded_disks(["1", "db01:2"], "db01") == {1, 2}
    assert excluded_disks(["1", "db01:2"], "web01") == {1}
    with pytest.raises(UsageError):
        excluded_disks(["db01:x"], "db01")


@pytest.mark.parametrize(("rule", "now", "last_full", "due"), [
    ("sat", "2026-12-05T10:00", None, True),                 # a Saturday, never a full
    ("sat", "2026-12-05T10:00", "2026-12-05T01:00", False),  # already a full today
    ("sat", "2026-12-05T10:00", "2026-11-28T01:00", True),   # last Saturday's
    ("sat", "2026-12-04T10:00", None, False),                # a Friday
    ("1", "2026-12-01T03:00", "2026-11-01T03:00", True),
    ("31", "2027-02-28T03:00", "2027-01-31T03:00", True),    # February's last day
    ("31", "2027-02-27T03:00", None, False),
    (None, "2026-12-05T10:00", None, False),
])
def test_active_full_day(rule: str | None, now: str, last_full: str | None,
                         due: bool) -> None:
    from appliance.jobs.schedule import active_full_due

    assert active_full_due(rule, "UTC", utc(now), utc(last_full) if last_full else None) \
        is due


def test_rpo_breaches() -> None:
    from appliance import api
    from appliance.alerts import rpo_breaches

    job = api.JobSpec(name="j", vcenter="vc", vms=[api.JobVm(name="a", instance_uuid="1"),
                                                   api.JobVm(name="b", instance_uuid="2")],
                      repository="r", block_size="1M", compression="zstd-fast",
                      enable_cbt=True, quiesce=False, sample_blocks=4, keep_last=None,
                      keep_days=None, rpo_hours=24)
    now = utc("2026-12-02T12:00")
    got = rpo_breaches([job], {"a": utc("2026-12-02T01:00"), "b": utc("2026-11-30T12:00")},
                       {"j": utc("2026-11-01T00:00")}, now)
    assert [a.key for a in got] == ["rpo/j/b"]
    assert "older than the job's RPO of 24 h" in got[0].message
    fresh = rpo_breaches([job], {}, {"j": utc("2026-12-02T11:00")}, now)
    assert fresh == []  # a new job gets its first RPO period
