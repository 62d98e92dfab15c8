"""An in-memory time-series backend: the reference the conformance suite checks
other backends against, and a test double that ships with the package."""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Sequence

from trellis.core.errors import ClosedError
from trellis.core.types import Reading
from trellis.store.base import (
    ROLLUP_MS,
    Aggregate,
    Bucket,
    DeviceLatest,
    Fill,
    Latest,
    Point,
    StorageUsage,
    TenantUsage,
    WriteResult,
    check_buckets,
    fill_gaps,
    split_valid,
    uses_rollup,
)

__all__ = ["MemoryTimeSeriesStore"]

_Key = tuple[str, str, str]
#: A rough size of one reading held in memory (struct, list slots, boxed numbers).
_READING_BYTES = 200
#: Reducers over one bucket's values in time order.
_REDUCERS: dict[Aggregate, Callable[[list[float]], float]] = {
    Aggregate.AVG: lambda values: math.fsum(values) / len(values),
    Aggregate.MIN: min,
    Aggregate.MAX: max,
    Aggregate.SUM: math.fsum,
    Aggregate.COUNT: lambda values: float(len(values)),
    Aggregate.FIRST: lambda values: values[0],
    Aggregate.LAST: lambda values: values[-1],
}


class _Minute:
    """One series' 1-minute rollup: enough to answer every Aggregate."""

    __slots__ = ("count", "first", "first_ts", "last", "last_ts", "max", "min", "sum")

    def __init__(self, reading: Reading) -> None:
        self.count, self.sum = 1, reading.value
        self.min = self.max = self.first = self.last = reading.value
        self.first_ts = self.last_ts = reading.ts

    def add(self, reading: Reading) -> None:
        self.count += 1
        self.sum += reading.value
        self.min, self.max = min(self.min, reading.value), max(self.max, reading.value)
        if reading.ts < self.first_ts:
            self.first, self.first_ts = reading.value, reading.ts
        if reading.ts > self.last_ts:
            self.last, self.last_ts = reading.value, reading.ts


def _reduce_minutes(minutes: list[_Minute], fn: Aggregate) -> float:
    if fn is Aggregate.AVG:
        return math.fsum(m.sum for m in minutes) / sum(m.count for m in minutes)
    if fn is Aggregate.SUM:
        return math.fsum(m.sum for m in minutes)
    if fn is Aggregate.COUNT:
        return float(sum(m.count for m in minutes))
    if fn is Aggregate.MIN:
        return min(m.min for m in minutes)
    if fn is Aggregate.MAX:
        return max(m.max for m in minutes)
    if fn is Aggregate.FIRST:
        return min(minutes, key=lambda m: m.first_ts).first
    return max(minutes, key=lambda m: m.last_ts).last


class MemoryTimeSeriesStore:
    """Readings in sorted per-series lists, guarded by one lock."""

    def __init__(self) -> None:
        self._series: dict[_Key, tuple[list[int], list[Reading]]] = {}
        self._rollup: dict[_Key, dict[int, _Minute]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("the time-series store is closed")

    def write(self, readings: Sequence[Reading]) -> WriteResult:
        good, rejected = split_valid(readings)
        inserted = 0
        with self._lock:
            self._check_open()
            for reading in good:
                times, rows = self._series.setdefault(
                    (reading.tenant, reading.device, reading.metric), ([], [])
                )
                at = bisect.bisect_left(times, reading.ts)
                if at < len(times) and times[at] == reading.ts:
                    continue
                times.insert(at, reading.ts)
                rows.insert(at, reading)
                inserted += 1
                minutes = self._rollup.setdefault(
                    (reading.tenant, reading.device, reading.metric), {}
                )
                minute = reading.ts - reading.ts % ROLLUP_MS
                if minute in minutes:
                    minutes[minute].add(reading)
                else:
                    minutes[minute] = _Minute(reading)
        return WriteResult(inserted, rejected)

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
        fill: Fill = Fill.NONE,
    ) -> list[Bucket]:
        check_buckets(start, end, bucket_ms)
        fn = Aggregate(fn)
        if uses_rollup(start, end, bucket_ms):
            with self._lock:
                self._check_open()
                stored = self._rollup.get((tenant, device, metric), {})
                by_bucket: dict[int, list[_Minute]] = {}
                for minute in sorted(m for m in stored if start <= m < end):
                    by_bucket.setdefault(minute - minute % bucket_ms, []).append(stored[minute])
                buckets = [Bucket(b, _reduce_minutes(ms, fn)) for b, ms in by_bucket.items()]
            return fill_gaps(buckets, start, end, bucket_ms, fill)
        reduce = _REDUCERS[fn]
        with self._lock:
            self._check_open()
            window = self._window((tenant, device, metric), start, end)
        grouped: dict[int, list[float]] = {}
        for r in window:
            grouped.setdefault(r.ts // bucket_ms * bucket_ms, []).append(r.value)
        buckets = [Bucket(start_ms, reduce(values)) for start_ms, values in grouped.items()]
        return fill_gaps(buckets, start, end, bucket_ms, fill)

    def latest(self, tenant: str, device: str) -> list[Latest]:
        return [Latest(d.metric, d.ts, d.value, d.unit) for d in self.latest_many(tenant, [device])]

    def latest_many(self, tenant: str, devices: Sequence[str] | None = None) -> list[DeviceLatest]:
        wanted = None if devices is None else set(devices)
        with self._lock:
            self._check_open()
            found = [
                DeviceLatest(d, metric, rows[-1].ts, rows[-1].value, rows[-1].unit)
                for (t, d, metric), (_, rows) in self._series.items()
                if t == tenant and (wanted is None or d in wanted) and rows
            ]
        return sorted(found, key=lambda latest: (latest.device, latest.metric))

    def delete_before(
        self, before: int, *, tenant: str | None = None, devices: Sequence[str] | None = None
    ) -> int:
        if devices is not None and tenant is None:
            raise ValueError("deleting by device needs the tenant the devices belong to")
        wanted = None if devices is None else set(devices)
        deleted = 0
        with self._lock:
            self._check_open()
            for (t, d, _), (times, rows) in self._series.items():
                if tenant not in (None, t) or (wanted is not None and d not in wanted):
                    continue
                cut = bisect.bisect_left(times, before)
                deleted += cut
                del times[:cut], rows[:cut]
        return deleted

    def delete_rollups_before(
        self, before: int, *, tenant: str | None = None, devices: Sequence[str] | None = None
    ) -> int:
        if devices is not None and tenant is None:
            raise ValueError("deleting by device needs the tenant the devices belong to")
        wanted = None if devices is None else set(devices)
        deleted = 0
        with self._lock:
            self._check_open()
            for (t, d, _), minutes in self._rollup.items():
                if tenant not in (None, t) or (wanted is not None and d not in wanted):
                    continue
                old = [m for m in minutes if m < before]
                deleted += len(old)
                for m in old:
                    del minutes[m]
        return deleted

    def usage(self, since: int) -> StorageUsage:
        tenants: dict[str, list[int]] = {}
        with self._lock:
            self._check_open()
            for (t, _, _), (times, _) in self._series.items():
                counts = tenants.setdefault(t, [0, 0])
                counts[0] += len(times)
                counts[1] += len(times) - bisect.bisect_left(times, since)
        total = sum(c[0] for c in tenants.values())
        return StorageUsage(
            bytes=total * _READING_BYTES,
            free_bytes=None,
            tenants=[TenantUsage(t, c[0], c[1]) for t, c in sorted(tenants.items()) if c[0]],
        )

    def count(self, tenant: str | None = None) -> int:
        with self._lock:
            self._check_open()
            return sum(
                len(times) for (t, _, _), (times, _) in self._series.items() if tenant in (None, t)
            )

    def close(self) -> None:
        with self._lock:
            self._closed = True
