"""When jobs run: schedules and backup windows as pure functions of time (no clock inside).

Kinds, as Veeam offers them:

- ``daily`` at a time, on every day, on weekdays, or on chosen days;
- ``monthly`` at a time, on day N of the month (``-1``: the last day) or on the first …
  fourth or last given weekday;
- ``periodic``: every N seconds, minutes or hours, counted from the previous run;
- ``after``: when another job's session ends (chained; the scheduler starts it);
- ``none``: only when asked.

Times are wall-clock times in the schedule's IANA time zone, built on ``dateutil.rrule``; a
time that does not exist on a spring-forward day runs as much later as the clocks jumped
(02:30 becomes 03:30), and one that exists twice on a fall-back day runs once, at its first
occurrence.

A backup window is a set of daily ranges of permitted wall-clock time (``22:00-06:00`` spans
midnight). A scheduled run starts only inside the window, and a run still going when it closes
is stopped cleanly (what is durable stays; the next run goes on from there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil import rrule
from dateutil.tz import resolve_imaginary

from appliance.errors import UsageError
from appliance.inputs import parse_period as parse_period  # where it was first

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
KINDS = ("none", "daily", "monthly", "periodic", "after")


@dataclass(frozen=True, slots=True)
class Schedule:
    kind: str = "none"
    at: time | None = None  # daily, monthly
    days: tuple[int, ...] = ()  # daily: 0 = Monday … 6 = Sunday; () = every day
    day_of_month: int | None = None  # monthly: 1 … 31, or -1 for the last day
    nth: int | None = None  # monthly: 1 … 4, or -1 for the last
    weekday: int | None = None  # monthly with nth
    every: timedelta | None = None  # periodic
    after: str | None = None  # chained: the parent job's name
    tz: str = "UTC"
    window: tuple[tuple[time, time], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UsageError(f"schedule kind {self.kind!r} is not one of {', '.join(KINDS)}")
        zone(self.tz)
        if self.kind in ("daily", "monthly") and self.at is None:
            raise UsageError(f"a {self.kind} schedule needs a time of day (HH:MM)")
        if self.kind == "monthly" and (self.day_of_month is None) == (self.nth is None):
            raise UsageError("a monthly schedule needs either a day of the month or an nth "
                             "weekday (first … fourth, last)")
        if self.kind == "monthly" and self.nth is not None and self.weekday is None:
            raise UsageError("a monthly schedule on the nth weekday needs the weekday")
        if self.day_of_month is not None and not (1 <= self.day_of_month <= 31
                                                  or self.day_of_month == -1):
            raise UsageError(f"day of month {self.day_of_month} is not 1 … 31 or -1 (last)")
        if self.nth is not None and self.nth not in (1, 2, 3, 4, -1):
            raise UsageError(f"{self.nth} is not first … fourth or last")
        if self.kind == "periodic" and (self.every is None or self.every.total_seconds() < 1):
            raise UsageError("a periodic schedule needs a period of at least one second")
        if self.kind == "after" and not self.after:
            raise UsageError("a chained schedule needs the job it runs after")


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"time zone {name!r} is unknown; give an IANA name such as "
                         "Europe/Berlin or UTC") from None


def _rule(s: Schedule, start: datetime) -> rrule.rrule:
    assert s.at is not None
    h, m, sec = s.at.hour, s.at.minute, s.at.second
    if s.kind == "daily":
        return rrule.rrule(rrule.DAILY, dtstart=start, byweekday=list(s.days) or None,
                           byhour=h, byminute=m, bysecond=sec)
    if s.day_of_month is not None:
        return rrule.rrule(rrule.MONTHLY, dtstart=start, bymonthday=s.day_of_month,
                           byhour=h, byminute=m, bysecond=sec)
    assert s.nth is not None and s.weekday is not None
    return rrule.rrule(rrule.MONTHLY, dtstart=start,
                       byweekday=rrule.weekday(s.weekday)(s.nth), byhour=h, byminute=m,
                       bysecond=sec)


def next_run(s: Schedule, after: datetime, last_run: datetime | None = None
             ) -> datetime | None:
    """The first scheduled start strictly after ``after`` (aware), in UTC; None for ``none``
    and ``after`` (chained) schedules. ``last_run`` anchors a periodic schedule."""
    if after.tzinfo is None:
        raise ValueError("after must be time-zone aware")
    if s.kind in ("none", "after"):
        return None
    tz = zone(s.tz)
    if s.kind == "periodic":
        assert s.every is not None
        nxt = (last_run or after) + s.every
        while nxt <= after:
            nxt += s.every
        return nxt.astimezone(ZoneInfo("UTC"))
    local = after.astimezone(tz).replace(tzinfo=None)
    rule = _rule(s, local.replace(hour=0, minute=0, second=0, microsecond=0))
    candidate = rule.after(local - timedelta(hours=3))  # a gap moves a start up to 3 h on
    while candidate is not None:
        real = resolve_imaginary(candidate.replace(tzinfo=tz, fold=0))
        if real > after:
            return real.astimezone(ZoneInfo("UTC"))
        candidate = rule.after(candidate)
    return None


def _ranges_on(s: Schedule, day: datetime) -> list[tuple[datetime, datetime]]:
    """The window's permitted ranges that start on local ``day`` (aware datetimes)."""
    tz = zone(s.tz)
    out = []
    for start, end in s.window:
        a = resolve_imaginary(datetime.combine(day.date(), start, tz))
        b_day = day.date() + timedelta(days=1) if end <= start else day.date()
        b = resolve_imaginary(datetime.combine(b_day, end, tz))
        out.append((a, b))
    return out


def window_end(s: Schedule, now: datetime) -> datetime | None:
    """When the window that is open at ``now`` closes; None when there is no window (always
    open). Raises nothing; use ``in_window`` to ask whether it is open."""
    if not s.window:
        return None
    local = now.astimezone(zone(s.tz))
    ends = [b for d in (local - timedelta(days=1), local) for a, b in _ranges_on(s, d)
            if a <= now < b]
    return max(ends) if ends else now


def in_window(s: Schedule, now: datetime) -> bool:
    """Whether a backup may run at ``now``."""
    if not s.window:
        return True
    end = window_end(s, now)
    return end is not None and end > now


def parse_time(text: str) -> time:
    try:
        parts = [int(p) for p in text.strip().split(":")]
        if len(parts) not in (2, 3):
            raise ValueError
        return time(parts[0], parts[1], parts[2] if len(parts) == 3 else 0)
    except (ValueError, TypeError):
        raise UsageError(f"{text!r} is not a time of day; give HH:MM (or HH:MM:SS)") from None


def parse_days(text: str) -> tuple[int, ...]:
    """``every``, ``weekdays``, or a list such as ``mon,wed,fri``."""
    t = text.strip().lower()
    if t in ("", "every", "all"):
        return ()
    if t == "weekdays":
        return (0, 1, 2, 3, 4)
    try:
        return tuple(sorted({WEEKDAYS.index(d.strip()[:3]) for d in t.split(",")}))
    except ValueError:
        raise UsageError(f"{text!r} is not a list of days; give e.g. mon,wed,fri, weekdays "
                         "or every") from None


def parse_window(text: str) -> tuple[time, time]:
    start, sep, end = text.partition("-")
    if not sep:
        raise UsageError(f"{text!r} is not a window; give HH:MM-HH:MM (e.g. 22:00-06:00)")
    return parse_time(start), parse_time(end)


def excluded_disks(rules: list[str], vm: str) -> frozenset[int]:
    """The disk numbers of ``vm`` that rules like ``"1"`` (every VM) or ``"db01:2"`` exclude."""
    out = set()
    for rule in rules:
        name, sep, number = rule.rpartition(":")
        if not number.strip().isdigit():
            raise UsageError(f"excluded disk {rule!r} is not N or VM:N (disk numbers: "
                             "controller bus, unit order)")
        if not sep or name == vm:
            out.add(int(number))
    return frozenset(out)


def active_full_due(rule: str | None, tz: str, now: datetime,
                    last_full: datetime | None) -> bool:
    """Whether a run at ``now`` should be an active full: ``rule`` names a weekday (``sat``)
    or a day of the month (``1`` … ``31``; months without it use their last day), and the
    VM's last full point is from before that day began (in ``tz``)."""
    if not rule:
        return False
    local = now.astimezone(zone(tz))
    if rule.strip().isdigit():
        day = int(rule)
        if not 1 <= day <= 31:
            raise UsageError(f"active full day {rule!r} is not 1 … 31 or a weekday")
        last_day = (local.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(
            days=1)
        due_today = local.day == min(day, last_day.day)
    else:
        due_today = local.weekday() in parse_days(rule) and len(parse_days(rule)) == 1
    if not due_today:
        return False
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return last_full is None or last_full < start
