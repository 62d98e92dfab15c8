"""Rate limits on password logins, per client address and per user name.

Only failures count: a user who types the password right is never slowed down, while a
guesser is stopped after a few tries per minute from one address (per-IP limit) and, when
spread over many addresses, per account (per-user limit). The answer is HTTP 429 with
``Retry-After``: the seconds until the oldest counted failure leaves the window.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["LoginLimiter"]

_MAX_KEYS = 100_000  # bounded memory under a flood of made-up names or addresses


class LoginLimiter:
    """Sliding one-minute windows of failed attempts; thread-safe."""

    def __init__(
        self,
        per_ip: int,
        per_user: int,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = {"ip": per_ip, "user": per_user}
        self._window = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and now - times[0] >= self._window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, ip: str, user: str | None) -> int:
        """Seconds to wait before trying again (0: go ahead)."""
        now = self._clock()
        wait = 0.0
        with self._lock:
            for kind, value in (("ip", ip), ("user", user)):
                if value is None:
                    continue
                times = self._recent((kind, value), now)
                if len(times) >= self._limits[kind]:
                    wait = max(wait, self._window - (now - times[-self._limits[kind]]))
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, ip: str, user: str | None) -> None:
        """Count one failed attempt against the address and the user name."""
        now = self._clock()
        with self._lock:
            if len(self._failures) >= _MAX_KEYS:
                for key in list(self._failures):
                    self._recent(key, now)  # drops keys whose failures have all expired
            for kind, value in (("ip", ip), ("user", user)):
                if value is None:
                    continue
                times = self._failures.get((kind, value))
                if times is None and len(self._failures) < _MAX_KEYS:
                    times = self._failures[(kind, value)] = deque()
                if times is not None:
                    times.append(now)
