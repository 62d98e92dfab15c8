"""Live views: the newest readings per device, pushed to open dashboard pages.

One bus subscriber serves every page, so a thousand open charts cost one
subscription, not a thousand. Each device page listens to its device only; the fleet
page reads the latest-values table and the ingest rate.
"""

from __future__ import annotations

import time
from collections import deque

from trellis.bus.base import Subscription
from trellis.core.broadcast import Broadcaster, Listener
from trellis.core.types import Reading

__all__ = ["LiveHub"]

_DeviceKey = tuple[str, str]


class LiveHub:
    """Latest values and per-device live streams, fed by one bus subscription."""

    def __init__(self, subscription: Subscription[Reading]) -> None:
        self._subscription = subscription
        self._latest: dict[_DeviceKey, dict[str, Reading]] = {}
        self._streams: dict[_DeviceKey, Broadcaster[list[Reading]]] = {}
        self._arrivals: deque[tuple[float, int]] = deque(maxlen=64)

    def listen(self, tenant: str, device: str) -> Listener[list[Reading]]:
        """A stream of the device's readings, batch by batch; close it when done."""
        stream = self._streams.get((tenant, device))
        if stream is None:
            stream = self._streams[(tenant, device)] = Broadcaster(capacity=32)
        return stream.listen()

    def latest(self, tenant: str, device: str) -> dict[str, Reading]:
        """The newest reading per metric seen since start."""
        return dict(self._latest.get((tenant, device), {}))

    def last_seen(self, tenant: str, device: str) -> int | None:
        """Timestamp of the device's newest reading since start, if any."""
        values = self._latest.get((tenant, device))
        return max((r.ts for r in values.values()), default=None) if values else None

    def rate(self, window_s: float = 10.0) -> float:
        """Readings per second over the last ``window_s`` seconds."""
        now = time.monotonic()
        recent = [(at, n) for at, n in self._arrivals if now - at <= window_s]
        if not recent:
            return 0.0
        span = max(now - recent[0][0], 1.0)
        return sum(n for _, n in recent) / span

    async def run(self) -> None:
        """Consume the bus until it closes."""
        async for batch in self._subscription:
            self._arrivals.append((time.monotonic(), len(batch)))
            touched: dict[_DeviceKey, list[Reading]] = {}
            for reading in batch:
                key = (reading.tenant, reading.device)
                metrics = self._latest.get(key)
                if metrics is None:
                    metrics = self._latest[key] = {}
                current = metrics.get(reading.metric)
                if current is None or reading.ts >= current.ts:
                    metrics[reading.metric] = reading
                if key in self._streams:
                    touched.setdefault(key, []).append(reading)
            for key, readings in touched.items():
                stream = self._streams[key]
                if stream.listeners:
                    stream.publish(readings)
                else:
                    del self._streams[key]
