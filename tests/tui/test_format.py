"""Times in the TUI carry their zone (issue 15): the appliance's clock is UTC and says so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from tui import format as fmt

T = datetime(2026, 12, 2, 6, 46, 10, tzinfo=UTC)


def test_a_time_carries_its_zone() -> None:
    assert fmt.when(T) == "2026-12-02 06:46 UTC"
    assert fmt.when(T.astimezone(timezone(timedelta(hours=1)))) == "2026-12-02 06:46 UTC"
    assert fmt.when(T.replace(tzinfo=None)) == "2026-12-02 06:46 UTC"  # naive: UTC
    assert fmt.when(None) == "never"


def test_a_span_within_a_day_names_the_day_and_the_zone_once() -> None:
    assert fmt.span(T, T + timedelta(minutes=3)) == "2026-12-02 06:46 → 06:49 UTC"
    assert fmt.span(T, T + timedelta(days=1)) == \
        "2026-12-02 06:46 UTC → 2026-12-03 06:46 UTC"
    assert fmt.span(T, None) == "2026-12-02 06:46 UTC"
