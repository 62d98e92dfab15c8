"""Time as epoch milliseconds: parsing what devices send and writing RFC 3339 back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trellis.core.clock import from_datetime, now_ms, parse_timestamp, to_datetime, to_iso

# Fixed offsets as RFC 3339 allows them (±23:59), UTC included.
offsets = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
# Naive bounds keep every instant, and its UTC form, inside datetime's years 1..9999.
aware_datetimes = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets
)
epoch_ms = st.integers(
    from_datetime(datetime(1, 1, 2, tzinfo=UTC)), from_datetime(datetime(9999, 12, 30, tzinfo=UTC))
)


def _floor_to_ms(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


@given(aware_datetimes)
def test_aware_datetime_round_trips_at_ms_precision(value: datetime) -> None:
    """from_datetime → to_iso → parse_timestamp returns the same instant, cut to the ms."""
    ms = from_datetime(value)
    assert parse_timestamp(to_iso(ms)) == ms
    assert to_datetime(ms) == _floor_to_ms(value)


@given(aware_datetimes)
def test_rfc3339_with_any_offset_is_the_same_instant(value: datetime) -> None:
    """Text with any UTC offset parses to the instant it denotes."""
    text = _floor_to_ms(value).isoformat(timespec="milliseconds")
    assert to_datetime(parse_timestamp(text)) == _floor_to_ms(value)


@given(epoch_ms)
def test_epoch_ms_round_trips_through_text(ms: int) -> None:
    """to_iso writes UTC with a Z and exactly three decimals, and parses back to the same ms."""
    text = to_iso(ms)
    assert text.endswith("Z")
    assert text[-5] == "."
    assert text[-4:-1].isdigit()
    assert parse_timestamp(text) == ms
    assert parse_timestamp(text.lower()) == ms


@given(st.integers(10**12, 10**15))
def test_epoch_ms_numbers_pass_through(ms: int) -> None:
    """Numbers from 1e12 on are epoch milliseconds, ints and floats alike."""
    assert parse_timestamp(ms) == ms
    assert parse_timestamp(float(ms)) == int(float(ms))


@given(st.integers(0, 10**12 - 1) | st.floats(-1e12, 1e12 - 1))
def test_numbers_that_look_like_seconds_are_refused(value: float) -> None:
    """A number below 1e12 (seconds, or before 2001 as ms) is refused, not misread."""
    with pytest.raises(ValueError, match="looks like seconds"):
        parse_timestamp(value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_refused(value: float) -> None:
    """NaN and infinities are not timestamps."""
    with pytest.raises(ValueError, match="not finite"):
        parse_timestamp(value)


def test_bool_is_refused() -> None:
    """True is not the number 1 here."""
    with pytest.raises(ValueError, match="must be a number or RFC 3339"):
        parse_timestamp(True)


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
def test_naive_text_is_refused(value: datetime) -> None:
    """Text without an offset is refused rather than guessed to be UTC or local."""
    with pytest.raises(ValueError, match="has no UTC offset"):
        parse_timestamp(value.isoformat())


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2025-13-01T00:00:00Z",
        "2025-11-25",
        "1764042000000",  # epoch ms sent as text; Python's ISO parser reads 1764-04-20
        "1764042000000Z",
        "20251125T034000+0200",  # ISO 8601 basic format
        "2025-W48-2T03:40:00Z",  # ISO 8601 week date
        "2025-11-25T03:40Z",  # no seconds
    ],
)
def test_text_that_is_not_rfc3339_is_refused(text: str) -> None:
    """Text that is not an RFC 3339 date-time is refused with the text quoted."""
    with pytest.raises(ValueError, match=r"is not RFC 3339"):
        parse_timestamp(text)


@pytest.mark.parametrize(
    "text",
    ["2025-11-25T03:40:00.250Z", "2025-11-25t03:40:00.250z", "2025-11-25 05:40:00.25+02:00"],
)
def test_rfc3339_variants_are_accepted(text: str) -> None:
    """Lowercase t/z, a space separator and any number of decimals are RFC 3339 too."""
    assert parse_timestamp(text) == 1_764_042_000_250


def test_known_instant() -> None:
    """A hand-checked instant: 2025-11-25T05:40:00.250+02:00 is 1764042000250 ms."""
    assert parse_timestamp("2025-11-25T05:40:00.250+02:00") == 1_764_042_000_250
    assert to_iso(1_764_042_000_250) == "2025-11-25T03:40:00.250Z"


def test_now_ms_is_the_wall_clock() -> None:
    """now_ms agrees with datetime.now within a second."""
    assert abs(now_ms() - from_datetime(datetime.now(UTC))) < 1000
