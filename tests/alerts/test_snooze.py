"""Snooze durations: what an operator taps or types, in minutes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trellis.alerts.snooze import MAX_SNOOZE_MINUTES, MORNING_HOUR, PRESETS, snooze_minutes

NOW = datetime(2026, 11, 25, 14, 30, tzinfo=UTC)
zones = st.integers(min_value=-12 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=zones
)


def test_presets_and_durations() -> None:
    """The inbox's buttons and the CLI's durations mean what they say."""
    assert [value for value, _ in PRESETS] == ["1h", "4h", "tomorrow"]
    assert snooze_minutes("1h", NOW) == 60
    assert snooze_minutes(" 4H ", NOW) == 240
    assert snooze_minutes("30m", NOW) == 30
    assert snooze_minutes("1.5h", NOW) == 90
    assert snooze_minutes("7d", NOW) == MAX_SNOOZE_MINUTES
    assert snooze_minutes("tomorrow", NOW) == (24 - 14.5 + MORNING_HOUR) * 60


@pytest.mark.parametrize("text", ["", "forever", "4", "h", "-1h", "0m", "8d", "1h30m", "1 week"])
def test_bad_durations_are_refused_naming_the_input(text: str) -> None:
    """Anything else is a ValueError that quotes what was typed."""
    with pytest.raises(ValueError, match="snooze"):
        snooze_minutes(text, NOW)


def test_naive_now_is_refused() -> None:
    """'Tomorrow morning' needs a time zone."""
    with pytest.raises(ValueError, match="timezone-aware"):
        snooze_minutes("1h", datetime(2026, 11, 25, 14, 30))


@given(instants)
def test_tomorrow_is_the_next_morning_in_the_callers_zone(now: datetime) -> None:
    """'tomorrow' ends at MORNING_HOUR:00 of the next calendar day, local time: between
    8 and 32 hours away, never more than the API's limit."""
    minutes = snooze_minutes("tomorrow", now)
    end = now + timedelta(minutes=minutes)
    assert (end.hour, end.minute, end.second, end.microsecond) == (MORNING_HOUR, 0, 0, 0)
    assert end.date() == now.date() + timedelta(days=1)
    assert 0 < minutes <= MAX_SNOOZE_MINUTES


@given(st.text(max_size=12))
def test_any_text_is_minutes_in_range_or_a_value_error(text: str) -> None:
    """No input crashes differently or yields a snooze the API would refuse."""
    try:
        minutes = snooze_minutes(text, NOW)
    except ValueError as exc:
        message = str(exc)
    else:
        assert 1 <= minutes <= MAX_SNOOZE_MINUTES
        return
    assert message.startswith(f"snooze {text!r}")
