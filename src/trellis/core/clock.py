"""Time as Trellis counts it: integer milliseconds since the Unix epoch, UTC."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

__all__ = ["from_datetime", "now_ms", "parse_timestamp", "to_datetime", "to_iso"]

# Exact timedelta arithmetic: a detour through float seconds (``datetime.timestamp()``)
# turned .087 into .086 for about one timestamp in two hundred.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
# RFC 3339 date-time (offset optional here so a missing one gets its own message);
# datetime.fromisoformat alone also takes ISO 8601 forms such as "1764042000000",
# which it reads as 1764-04-20.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})?", re.ASCII
)


def now_ms() -> int:
    """The current wall-clock time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def to_datetime(ms: int) -> datetime:
    """An aware UTC datetime for epoch milliseconds."""
    return _EPOCH + ms * _MS


def to_iso(ms: int) -> str:
    """RFC 3339 text with millisecond precision and a ``Z`` suffix."""
    return to_datetime(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_datetime(value: datetime) -> int:
    """Epoch milliseconds for an aware datetime; a naive one is refused, not guessed."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"timestamp {value.isoformat()!r} has no UTC offset")
    return (value - _EPOCH) // _MS


def parse_timestamp(value: int | float | str) -> int:
    """Epoch milliseconds from what devices send: epoch ms, or RFC 3339 with an offset.

    Numbers are taken as milliseconds; a number small enough to be seconds (before
    2001 read as ms) is refused rather than silently misread.
    """
    if isinstance(value, bool):
        raise ValueError(f"timestamp must be a number or RFC 3339 text, got {value!r}")
    if isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"timestamp {value!r} is not finite")
        if value < 1e12:
            raise ValueError(f"timestamp {value!r} looks like seconds; send epoch milliseconds")
        return int(value)
    text = value.strip()
    if not _RFC3339.fullmatch(text):
        raise ValueError(f"timestamp {value!r} is not RFC 3339")
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"timestamp {value!r} is not RFC 3339") from None
    return from_datetime(parsed)
