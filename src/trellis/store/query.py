"""Queries over many devices and metrics at once, shared by the REST API and the CLI.

The limits are checked before any series is read, so an over-large request is
refused at once with the limit it broke, instead of hanging a server.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import msgspec

from trellis.core.errors import LimitError
from trellis.store.base import Aggregate, Fill, Point, TimeSeriesStore, check_buckets

__all__ = ["MAX_POINTS", "MAX_SERIES", "Series", "SeriesQuery", "plan", "run"]

#: Most (device, metric) series one query may ask for.
MAX_SERIES = 2_000
#: Most values one query may return in all (series × per-series limit or buckets).
MAX_POINTS = 2_000_000


class Series(msgspec.Struct, frozen=True):
    """The values of one metric of one device: raw ``[ts, value]`` pairs, or
    ``[bucket_start, aggregate]`` pairs when the query asked for buckets."""

    device: str
    metric: str
    points: list[Point]


class SeriesQuery(msgspec.Struct, frozen=True):
    """What to read: devices × metrics over ``[start, end)``, raw or bucketed."""

    tenant: str
    devices: list[str]
    metrics: list[str] | None
    start: int
    end: int
    bucket_ms: int | None = None
    fn: Aggregate = Aggregate.AVG
    fill: Fill = Fill.NONE
    limit: int = 10_000


def plan(store: TimeSeriesStore, query: SeriesQuery) -> list[tuple[str, str]]:
    """The (device, metric) pairs to read, after checking every limit.

    Without metrics, each device's reported metrics are read. Raises
    :class:`LimitError` when the query would be too large.
    """
    if query.start >= query.end:
        raise ValueError(f"start ({query.start}) must be before end ({query.end})")
    if query.metrics is None:
        pairs = [(d.device, d.metric) for d in store.latest_many(query.tenant, query.devices)]
    else:
        pairs = [(device, metric) for device in query.devices for metric in query.metrics]
    if len(pairs) > MAX_SERIES:
        raise LimitError(
            f"{len(pairs)} series requested; at most {MAX_SERIES} per query: "
            "ask for fewer devices or metrics"
        )
    if query.bucket_ms is None:
        per_series = query.limit
    else:
        check_buckets(query.start, query.end, query.bucket_ms)
        per_series = -(-(query.end - query.start) // query.bucket_ms) + 1
    if len(pairs) * per_series > MAX_POINTS:
        raise LimitError(
            f"up to {len(pairs) * per_series} values requested; at most {MAX_POINTS} per query: "
            "use wider buckets, a shorter range, a lower limit or fewer series"
        )
    return pairs


def run(
    store: TimeSeriesStore, query: SeriesQuery, pairs: Sequence[tuple[str, str]]
) -> Iterator[Series]:
    """Read each planned series in turn (the caller can show progress between them)."""
    for device, metric in pairs:
        if query.bucket_ms is None:
            points = store.query(query.tenant, device, metric, query.start, query.end, query.limit)
        else:
            buckets = store.aggregate(
                query.tenant,
                device,
                metric,
                query.start,
                query.end,
                query.bucket_ms,
                query.fn,
                query.fill,
            )
            points = [Point(b.start, b.value) for b in buckets]
        yield Series(device, metric, points)
