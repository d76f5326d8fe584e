"""How the TUI shows numbers, times and states: plain text that reads the same in 16 colours
and with NO_COLOR (every state has a word and a sign, never a colour alone)."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.text import Text

from appliance import api
from appliance.api import shown

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def size(n: float | None) -> str:
    """1536 → '1.5 KiB'."""
    if n is None:
        return "—"
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def sizes(done: float, total: float) -> str:
    """'32.0/160.0 MiB' (one unit, the total's) — short enough for a progress line."""
    value = float(total)
    unit = _UNITS[0]
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            break
        value /= 1024
    scale = 1024 ** _UNITS.index(unit)
    if unit == "B":
        return f"{done:.0f}/{total:.0f} B"
    return f"{done / scale:.1f}/{total / scale:.1f} {unit}"


def rate(bps: float | None) -> str:
    return "—" if not bps else f"{size(bps)}/s"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def when(t: datetime | None, now: datetime | None = None, *, zone: bool = True) -> str:
    """A time as 'YYYY-MM-DD HH:MM UTC' (the appliance's clock; a time in the TUI carries its
    zone, as a next run carries its schedule's). ``zone`` False: without ' UTC', for a table
    whose column's title says "(UTC)"."""
    if t is None:
        return "never"
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC" if zone else "%Y-%m-%d %H:%M")


def span(start: datetime, end: datetime | None) -> str:
    """From ``start`` to ``end`` (None: still going): 'YYYY-MM-DD HH:MM → HH:MM UTC' within a
    day, else both whole."""
    if end is None:
        return when(start)
    a, b = when(start), when(end)
    return f"{a[:-4]} → {b[11:]}" if a[:10] == b[:10] else f"{a} → {b}"


def result(state: str | None, res: str | None) -> str:
    """A session's or task's outcome with a sign: '✓ success', '⚠ warning', '✗ failed'."""
    if state == "running":
        return "▶ running"
    if state == "waiting":
        return "… waiting"
    if res == "success":
        return "✓ success"
    if res == "warning":
        return "⚠ warning"
    if res == "failed":
        return f"✗ failed ({state})" if state in ("interrupted", "stopped") else "✗ failed"
    if state in ("stopped", "interrupted"):
        return f"■ {state}"
    return "—" if res is None else res


def percent(done: int, total: int) -> int:
    return 0 if total <= 0 else min(100, int(done * 100 // total))


def bar(done: int, total: int, width: int = 20) -> str:
    """A progress bar in block characters: readable without colour."""
    filled = 0 if total <= 0 else min(width, int(width * done // total))
    return "█" * filled + "░" * (width - filled)


def schedule(s: api.ScheduleSpec, *, zone: bool = False) -> str:
    """A job's schedule in a few words; ``zone``: its times and window with the job's time
    zone (the wizard's summary; a table's Next run column carries the zone beside it)."""
    tz = f" {s.tz}" if zone else ""
    timed = s.kind in ("daily", "monthly")
    window = f" in {','.join(s.window)}{'' if timed else tz}" if s.window else ""
    if s.kind == "daily":
        days = "" if s.days in (None, "every") else f" {s.days}"
        return f"daily {s.at or '00:00'}{tz}{days}{window}"
    if s.kind == "monthly":
        at = f"{s.at or '00:00'}{tz}"
        if s.nth is not None:
            nth = "last" if s.nth == -1 else f"#{s.nth}"
            return f"monthly {nth} {s.weekday} {at}{window}"
        day = "last" if s.day_of_month == -1 else s.day_of_month or 1
        return f"monthly day {day} {at}{window}"
    if s.kind == "periodic":
        return f"every {s.every}{window}"
    if s.kind == "after":
        return f"after {s.after}{window}"
    return "manual"


def plain(*values: str) -> tuple[Text, ...]:
    """Cells shown as they are: a name or value with brackets is not markup, and a newline
    or an escape code in it is shown escaped (\\n, \\x1b)."""
    return tuple(Text(shown(v)) for v in values)
