"""How long a snooze lasts, from what an operator types or taps.

The phone inbox offers three buttons (1 h, 4 h, until tomorrow) and the CLI takes the
same words or any ``<n>m``/``<n>h``/``<n>d``. "Tomorrow" means the next morning at
:data:`MORNING_HOUR` in the caller's time zone, so the alert is back when the shift
starts, not exactly 24 h later. The API itself only takes minutes: this module is the
one place that turns words into minutes.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

__all__ = ["MAX_SNOOZE_MINUTES", "MORNING_HOUR", "PRESETS", "snooze_minutes"]

#: The longest snooze the API accepts: a week.
MAX_SNOOZE_MINUTES = 7 * 24 * 60
#: "Until tomorrow" ends at this hour of the next day, local time.
MORNING_HOUR = 8
#: The choices the inbox shows, in order, with their labels.
PRESETS = (("1h", "1 h"), ("4h", "4 h"), ("tomorrow", "Until tomorrow"))

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([mhd])")
_UNIT_MINUTES = {"m": 1, "h": 60, "d": 24 * 60}


def snooze_minutes(text: str, now: datetime) -> float:
    """Minutes from ``now`` (timezone-aware) that ``text`` asks for.

    ``text`` is ``tomorrow`` or a duration such as ``30m``, ``1h``, ``4h``, ``2d``.
    Raises ``ValueError`` naming the input when it is neither, or when it is not
    between one minute and a week.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (tomorrow morning depends on the zone)")
    word = text.strip().lower()
    if word == "tomorrow":
        morning = (now + timedelta(days=1)).replace(
            hour=MORNING_HOUR, minute=0, second=0, microsecond=0
        )
        return (morning - now).total_seconds() / 60
    match = _DURATION.fullmatch(word)
    if match is None:
        raise ValueError(f"snooze {text!r}: use 'tomorrow' or a duration like 30m, 4h, 2d")
    minutes = float(match.group(1)) * _UNIT_MINUTES[match.group(2)]
    if not 1 <= minutes <= MAX_SNOOZE_MINUTES:
        raise ValueError(f"snooze {text!r}: between 1 minute and 7 days")
    return minutes
