"""An in-memory time-series backend: the reference the conformance suite checks
other backends against, and a test double that ships with the package."""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Sequence

from trellis.core.errors import ClosedError
from trellis.core.types import Reading
from trellis.store.base import Aggregate, Bucket, Latest, Point

__all__ = ["MemoryTimeSeriesStore"]

_Key = tuple[str, str, str]
_REDUCERS: dict[Aggregate, Callable[[list[float]], float]] = {
    Aggregate.AVG: lambda values: math.fsum(values) / len(values),
    Aggregate.MIN: min,
    Aggregate.MAX: max,
    Aggregate.SUM: math.fsum,
    Aggregate.COUNT: lambda values: float(len(values)),
}


class MemoryTimeSeriesStore:
    """Readings in sorted per-series lists, guarded by one lock."""

    def __init__(self) -> None:
        self._series: dict[_Key, tuple[list[int], list[Reading]]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("the time-series store is closed")

    def write(self, readings: Sequence[Reading]) -> int:
        inserted = 0
        with self._lock:
            self._check_open()
            for reading in readings:
                times, rows = self._series.setdefault(
                    (reading.tenant, reading.device, reading.metric), ([], [])
                )
                at = bisect.bisect_left(times, reading.ts)
                if at < len(times) and times[at] == reading.ts:
                    continue
                times.insert(at, reading.ts)
                rows.insert(at, reading)
                inserted += 1
        return inserted

    def _window(self, key: _Key, start: int, end: int) -> list[Reading]:
        times, rows = self._series.get(key, ([], []))
        return rows[bisect.bisect_left(times, start) : bisect.bisect_left(times, end)]

    def query(
        self, tenant: str, device: str, metric: str, start: int, end: int, limit: int = 10_000
    ) -> list[Point]:
        with self._lock:
            self._check_open()
            window = self._window((tenant, device, metric), start, end)[:limit]
        return [Point(r.ts, r.value) for r in window]

    def aggregate(
        self,
        tenant: str,
        device: str,
        metric: str,
        start: int,
        end: int,
        bucket_ms: int,
        fn: Aggregate = Aggregate.AVG,
    ) -> list[Bucket]:
        if bucket_ms <= 0:
            raise ValueError(f"bucket_ms must be positive, got {bucket_ms}")
        with self._lock:
            self._check_open()
            window = self._window((tenant, device, metric), start, end)
        grouped: dict[int, list[float]] = {}
        for r in window:
            grouped.setdefault(r.ts // bucket_ms * bucket_ms, []).append(r.value)
        reduce = _REDUCERS[Aggregate(fn)]
        return [Bucket(start_ms, reduce(values)) for start_ms, values in grouped.items()]

    def latest(self, tenant: str, device: str) -> list[Latest]:
        with self._lock:
            self._check_open()
            found = [
                Latest(metric, rows[-1].ts, rows[-1].value, rows[-1].unit)
                for (t, d, metric), (_, rows) in self._series.items()
                if t == tenant and d == device and rows
            ]
        return sorted(found, key=lambda latest: latest.metric)

    def count(self, tenant: str | None = None) -> int:
        with self._lock:
            self._check_open()
            return sum(
                len(times) for (t, _, _), (times, _) in self._series.items() if tenant in (None, t)
            )

    def close(self) -> None:
        with self._lock:
            self._closed = True
