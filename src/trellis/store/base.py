"""The time-series storage interface that every backend implements.

Writes are idempotent on (tenant, device, metric, ts): a redelivered reading is a
no-op and is reported as a duplicate, never stored twice. Methods are synchronous
because the embedded backend is; callers on the event loop run them in a thread
(the ingest pipeline owns one writer thread, the API reads from its thread pool).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import msgspec

from trellis.core.types import Reading

__all__ = ["Aggregate", "Bucket", "Latest", "Point", "TimeSeriesStore"]


class Aggregate(enum.StrEnum):
    """Functions a time bucket can be reduced with."""

    AVG = "avg"
    MIN = "min"
    MAX = "max"
    SUM = "sum"
    COUNT = "count"


class Point(msgspec.Struct, frozen=True, array_like=True):
    """One stored value: ``[ts, value]`` on the wire, as charts want it."""

    ts: int
    value: float


class Bucket(msgspec.Struct, frozen=True, array_like=True):
    """One time bucket: its start and the aggregate of the values inside it."""

    start: int
    value: float


class Latest(msgspec.Struct, frozen=True):
    """The newest value of one metric of one device."""

    metric: str
    ts: int
    value: float
    unit: str | None


@runtime_checkable
class TimeSeriesStore(Protocol):
    """Durable storage of readings."""

    def write(self, readings: Sequence[Reading]) -> int:
        """Store a batch in one transaction; return how many readings were new."""
        ...

    def query(
        self, tenant: str, device: str, metric: str, start: int, end: int, limit: int = 10_000
    ) -> list[Point]:
        """Values with ``start <= ts < end`` in time order, at most ``limit``."""
        ...

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
        """Buckets of ``bucket_ms`` aligned to the epoch; empty buckets are omitted."""
        ...

    def latest(self, tenant: str, device: str) -> list[Latest]:
        """The newest value of every metric the device has reported."""
        ...

    def count(self, tenant: str | None = None) -> int:
        """How many readings are stored (for one tenant, or in all)."""
        ...

    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""
        ...
