"""One conformance suite for every time-series backend.

Each backend is a factory in :data:`BACKENDS`; PostgreSQL joins by adding its own.
The in-memory store is the reference, and every expectation here is computed in the
test itself, not read back from another backend.
"""

from __future__ import annotations

import itertools
import math
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.services import postgres_url
from trellis.core.clock import parse_timestamp
from trellis.core.errors import ClosedError, LimitError
from trellis.core.types import Reading
from trellis.store import (
    Aggregate,
    Bucket,
    DeviceLatest,
    Fill,
    Latest,
    MemoryTimeSeriesStore,
    Point,
    SQLiteTimeSeriesStore,
    TimeSeriesStore,
)
from trellis.store.base import MAX_ABS_VALUE

T = TypeVar("T")

#: A store on a fresh, empty location inside the given directory.
StoreFactory = Callable[[Path], TimeSeriesStore]


def _postgres(_directory: Path) -> TimeSeriesStore:
    """A store in its own fresh schema of this run's PostgreSQL database."""
    from trellis.store.postgres import PostgresTimeSeriesStore

    return PostgresTimeSeriesStore(postgres_url(), schema=f"ts_{uuid.uuid4().hex[:12]}")


BACKENDS: list[tuple[str, StoreFactory]] = [
    ("memory", lambda _directory: MemoryTimeSeriesStore()),
    ("sqlite", lambda directory: SQLiteTimeSeriesStore(directory / "timeseries.db")),
    # Merging landing into points at every second row: reads meet both tables.
    (
        "sqlite-merging",
        lambda directory: SQLiteTimeSeriesStore(directory / "timeseries.db", merge_rows=2),
    ),
    ("postgres", _postgres),
]

T0 = 1_764_000_000_000  # a multiple of 60 s, so the bucket arithmetic below is easy to read


@pytest.fixture(params=[factory for _, factory in BACKENDS], ids=[name for name, _ in BACKENDS])
def store_factory(request: pytest.FixtureRequest) -> StoreFactory:
    """Each backend's factory in turn."""
    factory: StoreFactory = request.param
    return factory


@pytest.fixture
def store(store_factory: StoreFactory, tmp_path: Path) -> Iterator[TimeSeriesStore]:
    """A fresh, empty store of each backend, closed after the test."""
    opened = store_factory(tmp_path)
    yield opened
    opened.close()


def chunks(items: list[T], size: int) -> Iterator[list[T]]:
    """Consecutive slices of ``size`` items (itertools.batched is Python 3.12)."""
    for at in range(0, len(items), size):
        yield items[at : at + size]


def reading(
    ts: int,
    value: float = 1.0,
    *,
    tenant: str = "acme",
    device: str = "pump-1",
    metric: str = "temperature",
    unit: str | None = "Cel",
) -> Reading:
    """A reading with defaults for everything but the time."""
    return Reading(tenant, device, metric, ts, value, unit)


def test_backend_satisfies_protocol(store: TimeSeriesStore) -> None:
    """Every backend is a structural TimeSeriesStore."""
    assert isinstance(store, TimeSeriesStore)


def test_write_is_idempotent(store: TimeSeriesStore) -> None:
    """The same batch written twice is stored once; the second write reports 0 new."""
    batch = [reading(T0 + i * 1000, float(i)) for i in range(10)]
    assert store.write(batch).inserted == 10
    assert store.write(batch).inserted == 0
    assert store.count() == 10


def test_redelivery_keeps_first_value(store: TimeSeriesStore) -> None:
    """A second reading with an existing key is ignored, not an update."""
    store.write([reading(T0, 1.0)])
    assert store.write([reading(T0, 99.0)]).inserted == 0
    assert store.query("acme", "pump-1", "temperature", T0, T0 + 1) == [Point(T0, 1.0)]


def test_duplicates_inside_one_batch_count_once(store: TimeSeriesStore) -> None:
    """Repeated keys within one batch are stored and counted once."""
    assert store.write([reading(T0), reading(T0), reading(T0 + 1), reading(T0)]).inserted == 2
    assert store.count() == 2


def test_empty_write_is_a_no_op(store: TimeSeriesStore) -> None:
    """Writing an empty batch stores nothing and returns 0."""
    assert store.write([]).inserted == 0
    assert store.count() == 0


def test_out_of_order_writes_are_queried_in_time_order(store: TimeSeriesStore) -> None:
    """Readings written in shuffled batches come back sorted by time."""
    times = [T0 + i * 10 for i in range(200)]
    shuffled = times[:]
    random.Random(3).shuffle(shuffled)
    for chunk in chunks(shuffled, 17):
        store.write([reading(ts, float(ts - T0)) for ts in chunk])
    points = store.query("acme", "pump-1", "temperature", T0, T0 + 10_000)
    assert points == [Point(ts, float(ts - T0)) for ts in times]


def test_query_start_is_inclusive_and_end_exclusive(store: TimeSeriesStore) -> None:
    """query returns start <= ts < end."""
    store.write([reading(T0 + i) for i in range(10)])
    points = store.query("acme", "pump-1", "temperature", T0 + 2, T0 + 5)
    assert [p.ts for p in points] == [T0 + 2, T0 + 3, T0 + 4]
    assert store.query("acme", "pump-1", "temperature", T0 + 5, T0 + 5) == []


def test_query_limit_keeps_the_oldest(store: TimeSeriesStore) -> None:
    """limit cuts the time-ordered result after that many points."""
    store.write([reading(T0 + i) for i in reversed(range(10))])
    points = store.query("acme", "pump-1", "temperature", T0, T0 + 10, limit=3)
    assert [p.ts for p in points] == [T0, T0 + 1, T0 + 2]


def test_query_selects_one_series(store: TimeSeriesStore) -> None:
    """query returns only the asked device and metric."""
    store.write(
        [
            reading(T0, 1.0),
            reading(T0, 2.0, metric="pressure"),
            reading(T0, 3.0, device="pump-2"),
        ]
    )
    assert store.query("acme", "pump-1", "temperature", T0, T0 + 1) == [Point(T0, 1.0)]
    assert store.query("acme", "pump-1", "pressure", T0, T0 + 1) == [Point(T0, 2.0)]
    assert store.query("acme", "pump-9", "temperature", T0, T0 + 1) == []


def _expected_buckets(
    rows: list[tuple[int, float]], start: int, end: int, bucket_ms: int, fn: Aggregate
) -> list[Bucket]:
    grouped: dict[int, list[float]] = {}
    for ts, value in sorted(rows):
        if start <= ts < end:
            grouped.setdefault(ts - ts % bucket_ms, []).append(value)
    reduce: dict[Aggregate, Callable[[list[float]], float]] = {
        Aggregate.AVG: lambda v: sum(v) / len(v),
        Aggregate.MIN: min,
        Aggregate.MAX: max,
        Aggregate.SUM: sum,
        Aggregate.COUNT: lambda v: float(len(v)),
        Aggregate.FIRST: lambda v: v[0],
        Aggregate.LAST: lambda v: v[-1],
    }
    return [Bucket(b, reduce[fn](values)) for b, values in sorted(grouped.items())]


def _assert_buckets_equal(got: list[Bucket], expected: list[Bucket]) -> None:
    assert [b.start for b in got] == [b.start for b in expected]
    for g, e in zip(got, expected, strict=True):
        assert g.value == pytest.approx(e.value, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("fn", list(Aggregate))
def test_aggregate_buckets_are_epoch_aligned(store: TimeSeriesStore, fn: Aggregate) -> None:
    """Buckets start at multiples of bucket_ms since the epoch, not at ``start``."""
    rng = random.Random(11)
    # Every 7 s for 10 min, starting 13 s past a minute boundary.
    rows = [(T0 + 13_000 + i * 7_000, rng.uniform(-5.0, 50.0)) for i in range(86)]
    store.write([reading(ts, value) for ts, value in rows])
    start, end = T0 + 20_000, T0 + 500_000
    got = store.aggregate("acme", "pump-1", "temperature", start, end, 60_000, fn)
    _assert_buckets_equal(got, _expected_buckets(rows, start, end, 60_000, fn))
    assert got[0].start == T0  # the bucket holding ``start`` begins before it
    assert all(b.start % 60_000 == 0 for b in got)


def test_aggregate_omits_empty_buckets(store: TimeSeriesStore) -> None:
    """Buckets without readings are left out, not reported as zero."""
    store.write([reading(T0 + 1_000, 1.0), reading(T0 + 3 * 60_000 + 5, 3.0)])
    got = store.aggregate("acme", "pump-1", "temperature", T0, T0 + 600_000, 60_000)
    assert got == [Bucket(T0, 1.0), Bucket(T0 + 3 * 60_000, 3.0)]


def test_aggregate_accepts_plain_strings(store: TimeSeriesStore) -> None:
    """The function may be passed as its string name, as the API receives it."""
    store.write([reading(T0, 2.0), reading(T0 + 1, 4.0)])
    got = store.aggregate("acme", "pump-1", "temperature", T0, T0 + 10, 10, "max")  # type: ignore[arg-type]
    assert got == [Bucket(T0, 4.0)]


@pytest.mark.parametrize("bucket_ms", [0, -1, -60_000])
def test_aggregate_refuses_non_positive_bucket(store: TimeSeriesStore, bucket_ms: int) -> None:
    """bucket_ms <= 0 raises ValueError."""
    with pytest.raises(ValueError, match="bucket_ms"):
        store.aggregate("acme", "pump-1", "temperature", T0, T0 + 1, bucket_ms)


def test_latest_after_out_of_order_writes(store: TimeSeriesStore) -> None:
    """latest returns the newest value per metric even when it was written first."""
    store.write(
        [
            reading(T0 + 500, 5.0),
            reading(T0 + 900, 0.9, metric="pressure", unit="bar"),
        ]
    )
    store.write(
        [
            reading(T0 + 100, 1.0),
            reading(T0 + 400, 4.0),
            reading(T0 + 100, 0.1, metric="pressure", unit="bar"),
        ]
    )
    assert store.latest("acme", "pump-1") == [
        Latest("pressure", T0 + 900, 0.9, "bar"),
        Latest("temperature", T0 + 500, 5.0, "Cel"),
    ]


def test_latest_of_unknown_device_is_empty(store: TimeSeriesStore) -> None:
    """A device that never reported has no latest values."""
    store.write([reading(T0)])
    assert store.latest("acme", "pump-9") == []
    assert store.latest("other", "pump-1") == []


def test_count_per_tenant(store: TimeSeriesStore) -> None:
    """count() counts all tenants; count(tenant) only that tenant."""
    store.write([reading(T0 + i, tenant="acme") for i in range(3)])
    store.write([reading(T0 + i, tenant="globex") for i in range(5)])
    assert store.count() == 8
    assert store.count("acme") == 3
    assert store.count("globex") == 5
    assert store.count("initech") == 0


def test_tenants_are_isolated(store: TimeSeriesStore) -> None:
    """The same device, metric and time in two tenants are two readings that never mix."""
    assert (
        store.write([reading(T0, 1.0, tenant="acme"), reading(T0, 2.0, tenant="globex")]).inserted
        == 2
    )
    assert store.query("acme", "pump-1", "temperature", T0, T0 + 1) == [Point(T0, 1.0)]
    assert store.query("globex", "pump-1", "temperature", T0, T0 + 1) == [Point(T0, 2.0)]
    assert store.aggregate("globex", "pump-1", "temperature", T0, T0 + 1, 1000) == [Bucket(T0, 2.0)]
    assert store.latest("acme", "pump-1") == [Latest("temperature", T0, 1.0, "Cel")]


def test_large_batch(store: TimeSeriesStore) -> None:
    """One batch of 100,000 readings over 10 series is stored whole."""
    batch = [
        reading(T0 + i, float(i), device=f"pump-{i % 10}", metric="vibration")
        for i in range(100_000)
    ]
    assert store.write(batch).inserted == 100_000
    assert store.count() == 100_000
    points = store.query("acme", "pump-3", "vibration", T0, T0 + 100_000, limit=100_000)
    assert len(points) == 10_000
    assert points[:2] == [Point(T0 + 3, 3.0), Point(T0 + 13, 13.0)]


def test_concurrent_writers_lose_and_duplicate_nothing(store: TimeSeriesStore) -> None:
    """Threads writing overlapping batches at once store every key exactly once."""
    writers, per_writer, batch_size = 4, 3_000, 250
    # Each writer covers its own range plus half of the next writer's: overlapping keys.
    plans = [
        [
            reading(T0 + n, float(n))
            for n in range(w * per_writer, w * per_writer + per_writer * 3 // 2)
        ]
        for w in range(writers)
    ]
    distinct = {r.ts for plan in plans for r in plan}
    start = threading.Barrier(writers)

    def write_all(plan: list[Reading]) -> int:
        start.wait()
        return sum(store.write(chunk).inserted for chunk in chunks(plan, batch_size))

    with ThreadPoolExecutor(max_workers=writers) as pool:
        inserted = sum(pool.map(write_all, plans))
    assert inserted == len(distinct)
    assert store.count() == len(distinct)
    points = store.query("acme", "pump-1", "temperature", T0, T0 + 10**9, limit=10**9)
    assert [p.ts for p in points] == sorted(distinct)
    assert all(p.value == float(p.ts - T0) for p in points)
    counted = store.aggregate(
        "acme", "pump-1", "temperature", T0, T0 + 60_000, 60_000, Aggregate.COUNT
    )
    assert counted == [Bucket(T0, float(len(distinct)))]  # the rollup saw each key once


@pytest.mark.parametrize(
    "use",
    [
        pytest.param(lambda s: s.write([reading(T0)]), id="write"),
        pytest.param(lambda s: s.query("acme", "pump-1", "temperature", T0, T0 + 1), id="query"),
        pytest.param(
            lambda s: s.aggregate("acme", "pump-1", "temperature", T0, T0 + 1, 1000),
            id="aggregate",
        ),
        pytest.param(lambda s: s.latest("acme", "pump-1"), id="latest"),
        pytest.param(lambda s: s.count(), id="count"),
        pytest.param(lambda s: s.latest_many("acme"), id="latest_many"),
        pytest.param(lambda s: s.delete_before(T0), id="delete_before"),
        pytest.param(lambda s: s.delete_rollups_before(T0), id="delete_rollups_before"),
        pytest.param(lambda s: s.usage(T0), id="usage"),
        pytest.param(lambda s: s.write([]), id="empty-write"),
    ],
)
def test_closed_store_raises(
    store: TimeSeriesStore, use: Callable[[TimeSeriesStore], object]
) -> None:
    """Every method of a closed store raises ClosedError."""
    store.write([reading(T0)])
    store.close()
    with pytest.raises(ClosedError):
        use(store)


def test_first_and_last_go_by_time_not_by_write_order(store: TimeSeriesStore) -> None:
    """first/last pick the earliest/latest reading of a bucket even when written in reverse."""
    store.write([reading(T0 + 50, 5.0), reading(T0 + 90, 9.0)])
    store.write([reading(T0 + 10, 1.0), reading(T0 + 1_010, 7.0)])
    first = store.aggregate("acme", "pump-1", "temperature", T0, T0 + 2_000, 1_000, Aggregate.FIRST)
    last = store.aggregate("acme", "pump-1", "temperature", T0, T0 + 2_000, 1_000, Aggregate.LAST)
    assert first == [Bucket(T0, 1.0), Bucket(T0 + 1_000, 7.0)]
    assert last == [Bucket(T0, 9.0), Bucket(T0 + 1_000, 7.0)]


@pytest.mark.parametrize(
    ("fill", "expected"),
    [
        (Fill.NONE, [(0, 1.0), (3, 4.0), (4, 2.0)]),
        (Fill.ZERO, [(0, 1.0), (1, 0.0), (2, 0.0), (3, 4.0), (4, 2.0), (5, 0.0)]),
        (Fill.PREVIOUS, [(0, 1.0), (1, 1.0), (2, 1.0), (3, 4.0), (4, 2.0), (5, 2.0)]),
        (Fill.LINEAR, [(0, 1.0), (1, 2.0), (2, 3.0), (3, 4.0), (4, 2.0)]),
    ],
)
def test_gap_fill(store: TimeSeriesStore, fill: Fill, expected: list[tuple[int, float]]) -> None:
    """Empty buckets are left out, zeroed, carried forward or interpolated, as asked."""
    store.write([reading(T0 + 5, 1.0), reading(T0 + 3_000, 4.0), reading(T0 + 4_500, 2.0)])
    got = store.aggregate(
        "acme", "pump-1", "temperature", T0, T0 + 6_000, 1_000, Aggregate.AVG, fill
    )
    assert got == [Bucket(T0 + n * 1_000, value) for n, value in expected]


def test_gap_fill_leaves_out_buckets_before_the_first_value(store: TimeSeriesStore) -> None:
    """Nothing is invented before the first reading of the window."""
    store.write([reading(T0 + 2_000, 2.0)])
    got = store.aggregate(
        "acme", "pump-1", "temperature", T0, T0 + 4_000, 1_000, Aggregate.AVG, Fill.PREVIOUS
    )
    assert got == [Bucket(T0 + 2_000, 2.0), Bucket(T0 + 3_000, 2.0)]


def test_ten_years_at_one_second_is_refused_with_the_limit(store: TimeSeriesStore) -> None:
    """A query of ~315 million buckets raises LimitError naming the limit, before any work."""
    store.write([reading(T0)])
    ten_years = 10 * 365 * 86_400_000
    with pytest.raises(LimitError, match="at most 100000"):
        store.aggregate("acme", "pump-1", "temperature", T0 - ten_years, T0, 1_000)
    with pytest.raises(LimitError):
        store.aggregate(
            "acme", "pump-1", "temperature", T0 - ten_years, T0, 1_000, Aggregate.AVG, Fill.ZERO
        )


def test_late_data_lands_in_its_bucket(store: TimeSeriesStore) -> None:
    """A reading that arrives after newer ones changes the aggregate of its own bucket."""
    store.write([reading(T0 + 60_000 + i * 1_000, 10.0) for i in range(60)])
    store.write([reading(T0 + i * 1_000, 1.0) for i in range(0, 60, 2)])
    before = store.aggregate("acme", "pump-1", "temperature", T0, T0 + 120_000, 60_000)
    assert before == [Bucket(T0, 1.0), Bucket(T0 + 60_000, 10.0)]
    assert store.write([reading(T0 + 1_000, 31.0)]).inserted == 1  # late by two minutes
    after = store.aggregate(
        "acme", "pump-1", "temperature", T0, T0 + 120_000, 60_000, Aggregate.SUM
    )
    assert after == [Bucket(T0, 30 * 1.0 + 31.0), Bucket(T0 + 60_000, 600.0)]
    assert store.latest("acme", "pump-1") == [Latest("temperature", T0 + 119_000, 10.0, "Cel")]


def test_offsets_at_the_edge_are_one_instant_inside(store: TimeSeriesStore) -> None:
    """The same instant sent with different UTC offsets is one key; day buckets are UTC days."""
    same = ["2025-11-24T23:30:00+00:00", "2025-11-25T05:00:00+05:30", "2025-11-24T15:30:00-08:00"]
    stamps = [parse_timestamp(text) for text in same]
    assert store.write([reading(ts, 7.0) for ts in stamps]).inserted == 1
    store.write([reading(parse_timestamp("2025-11-25T00:10:00+01:00"), 3.0)])  # 23:10Z, the 24th
    day = 86_400_000
    got = store.aggregate("acme", "pump-1", "temperature", T0 - day, T0 + day, day, Aggregate.COUNT)
    assert got == [Bucket(parse_timestamp("2025-11-24T00:00:00Z"), 2.0)]


def test_huge_values_sum_to_a_finite_rollup(store: TimeSeriesStore) -> None:
    """Values at the storable limit, many in one minute, keep SUM finite on every backend
    (PostgreSQL raises on a double overflow, which would stall ingest forever)."""
    big = [reading(T0 + i, MAX_ABS_VALUE) for i in range(100)]
    assert store.write(big).inserted == 100
    start = T0 - T0 % 60_000
    buckets = store.aggregate(
        "acme", "pump-1", "temperature", start, start + 120_000, 60_000, Aggregate.SUM
    )
    assert buckets
    assert all(math.isfinite(b.value) for b in buckets)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        pytest.param(reading(T0, math.nan), "not a finite number", id="nan"),
        pytest.param(reading(T0, math.inf), "not a finite number", id="inf"),
        pytest.param(reading(T0, -math.inf), "not a finite number", id="-inf"),
        pytest.param(reading(T0, 1.7e308), "storable magnitude", id="huge-value"),
        pytest.param(reading(T0, "42"), "must be a number", id="string-value"),  # type: ignore[arg-type]
        pytest.param(reading(T0, True), "must be a number", id="bool-value"),
        pytest.param(reading(-1), "outside 1970", id="before-1970"),
        pytest.param(reading(4_102_444_800_000), "outside 1970", id="year-2100"),
        pytest.param(reading(10**15), "outside 1970", id="year-33658"),
        pytest.param(reading(float(T0)), "integer milliseconds", id="float-ts"),  # type: ignore[arg-type]
        pytest.param(reading(T0, device=""), "device is empty", id="empty-device"),
        pytest.param(reading(T0, metric="a\x00b"), "NUL", id="nul-in-metric"),
        pytest.param(reading(T0, metric="m" * 257), "longer than 256", id="long-metric"),
        pytest.param(reading(T0, unit=""), "unit is empty", id="empty-unit"),
    ],
)
def test_one_bad_row_is_reported_and_the_rest_stored(
    store: TimeSeriesStore, bad: Reading, reason: str
) -> None:
    """A batch with one bad reading stores the others and names the bad one with a reason."""
    batch = [reading(T0 + 1_000, 1.0), bad, reading(T0 + 2_000, 2.0, device="pump-2")]
    result = store.write(batch)
    assert result.inserted == 2
    assert [(r.index, r.reading) for r in result.rejected] == [(1, bad)]
    assert reason in result.rejected[0].reason
    assert store.count() == 2
    assert store.query("acme", "pump-1", "temperature", 0, 2**62) == [Point(T0 + 1_000, 1.0)]


def test_boundary_instants_are_accepted(store: TimeSeriesStore) -> None:
    """The epoch itself and the last millisecond before 2100 are storable."""
    assert store.write([reading(0, 1.0), reading(4_102_444_799_999, 2.0)]).inserted == 2
    assert store.query("acme", "pump-1", "temperature", 0, 2**62) == [
        Point(0, 1.0),
        Point(4_102_444_799_999, 2.0),
    ]


SQL_NAMES = [
    "'; DROP TABLE readings; --",
    'pump "1"',
    "100%",
    "a_b",
    "back\\slash",
    "$1",
    "?",
    "ünïcødé 温度",
    "🌡 beyond the BMP\ttab",
    "line\nbreak",
]


def test_sql_meaningful_names_are_stored_verbatim(store: TimeSeriesStore) -> None:
    """Quotes, wildcards, placeholders and unicode in names are data, never SQL."""
    batch = [
        reading(T0 + i, float(i), tenant=name, device=name, metric=name, unit=name)
        for i, name in enumerate(SQL_NAMES)
    ]
    assert store.write(batch).inserted == len(SQL_NAMES)
    for i, name in enumerate(SQL_NAMES):
        assert store.query(name, name, name, T0, T0 + 100) == [Point(T0 + i, float(i))]
        assert store.latest(name, name) == [Latest(name, T0 + i, float(i), name)]
        assert store.count(name) == 1
    # "a_b" and "100%" must not behave as LIKE patterns matching other names.
    assert store.latest_many("a_b") == [DeviceLatest("a_b", "a_b", T0 + 3, 3.0, "a_b")]
    assert store.delete_before(T0 + 100, tenant="100%", devices=["100%"]) == 1
    assert store.count() == len(SQL_NAMES) - 1


def test_latest_many_covers_every_device_and_metric(store: TimeSeriesStore) -> None:
    """latest_many gives the newest value of each metric of each asked device, sorted."""
    store.write(
        [
            reading(T0 + 5, 5.0, device="d2"),
            reading(T0 + 9, 9.0, device="d1", metric="rpm", unit=None),
            reading(T0 + 1, 1.0, device="d1"),
            reading(T0 + 3, 3.0, device="d1"),
            reading(T0 + 7, 7.0, device="d3"),
            reading(T0 + 8, 8.0, device="d1", tenant="other"),
        ]
    )
    assert store.latest_many("acme", ["d1", "d2", "d9"]) == [
        DeviceLatest("d1", "rpm", T0 + 9, 9.0, None),
        DeviceLatest("d1", "temperature", T0 + 3, 3.0, "Cel"),
        DeviceLatest("d2", "temperature", T0 + 5, 5.0, "Cel"),
    ]
    assert [(d.device, d.metric) for d in store.latest_many("acme")] == [
        ("d1", "rpm"),
        ("d1", "temperature"),
        ("d2", "temperature"),
        ("d3", "temperature"),
    ]
    assert store.latest_many("acme", []) == []


def test_retention_deletes_only_older_readings_of_the_scope(store: TimeSeriesStore) -> None:
    """delete_before removes ts < cutoff of the given tenant/devices and nothing else."""
    day = 86_400_000
    for tenant in ("acme", "globex"):
        for device in ("d1", "d2"):
            store.write(
                [
                    reading(T0 + n * day // 4, float(n), tenant=tenant, device=device)
                    for n in range(12)
                ]
            )
    assert store.delete_before(T0 + day, tenant="acme", devices=["d1"]) == 4
    assert store.count("acme") == 20
    assert store.query("acme", "d1", "temperature", 0, 2**62)[0] == Point(T0 + day, 4.0)
    assert store.delete_before(T0 + day // 2, tenant="globex") == 4
    assert store.count("globex") == 20
    assert store.delete_before(T0 + 2 * day) == 4 + 8 + 6 + 6  # acme d1, d2; globex d1, d2
    assert store.count() == 4 * 4
    assert store.query("globex", "d2", "temperature", 0, 2**62)[0] == Point(T0 + 2 * day, 8.0)
    assert store.delete_before(T0 + 2 * day) == 0


def test_retention_of_a_whole_series_forgets_its_latest(store: TimeSeriesStore) -> None:
    """When every reading of a metric is past retention, latest no longer lists it."""
    store.write([reading(T0, 1.0, metric="old"), reading(T0 + 10, 2.0, metric="new")])
    store.write([reading(T0 + 20, 3.0, metric="old", device="pump-2")])
    assert store.delete_before(T0 + 5) == 1
    assert store.latest("acme", "pump-1") == [Latest("new", T0 + 10, 2.0, "Cel")]
    assert store.latest("acme", "pump-2") == [Latest("old", T0 + 20, 3.0, "Cel")]


def test_retention_by_device_needs_a_tenant(store: TimeSeriesStore) -> None:
    """Device names are per tenant, so deleting by device without one is refused."""
    store.write([reading(T0)])
    with pytest.raises(ValueError, match="tenant"):
        store.delete_before(T0 + 1, devices=["pump-1"])
    assert store.count() == 1


def test_rollup_outlives_raw_retention(store: TimeSeriesStore) -> None:
    """After raw readings are deleted, whole-minute aggregates still come from the rollup."""
    rows = [(T0 + i * 13_000, float(i % 7)) for i in range(40)]  # ~8.7 minutes
    store.write([reading(ts, value) for ts, value in rows])
    window = (T0, T0 + 600_000)
    expected = {
        fn: store.aggregate("acme", "pump-1", "temperature", *window, 120_000, fn)
        for fn in Aggregate
    }
    for fn in Aggregate:
        _assert_buckets_equal(expected[fn], _expected_buckets(rows, *window, 120_000, fn))
    assert store.delete_before(T0 + 600_000) == 40
    assert store.query("acme", "pump-1", "temperature", *window) == []
    for fn in Aggregate:
        got = store.aggregate("acme", "pump-1", "temperature", *window, 120_000, fn)
        _assert_buckets_equal(got, expected[fn])
    # A window that is not whole minutes reads raw readings, which are gone.
    assert store.aggregate("acme", "pump-1", "temperature", T0 + 1, T0 + 600_000, 60_000) == []


def test_rollup_counts_redelivered_readings_once(store: TimeSeriesStore) -> None:
    """Writing the same readings again, alone or mixed with new ones, never inflates the rollup."""
    batch = [reading(T0 + i * 1_000, 1.0) for i in range(90)]
    store.write(batch)
    store.write([*batch[30:], reading(T0 + 95_000, 5.0)])
    got = store.aggregate(
        "acme", "pump-1", "temperature", T0, T0 + 120_000, 60_000, Aggregate.COUNT
    )
    assert got == [Bucket(T0, 60.0), Bucket(T0 + 60_000, 31.0)]


def test_late_data_updates_first_and_last_of_its_minute(store: TimeSeriesStore) -> None:
    """A late reading earlier (or later) than a minute's known ones becomes its first (or last)."""
    store.write([reading(T0 + 20_000, 2.0), reading(T0 + 40_000, 4.0)])
    store.write([reading(T0 + 59_999, 9.0)])
    store.write([reading(T0 + 1, 0.5)])
    args = ("acme", "pump-1", "temperature", T0, T0 + 60_000, 60_000)
    assert store.aggregate(*args, Aggregate.FIRST) == [Bucket(T0, 0.5)]
    assert store.aggregate(*args, Aggregate.LAST) == [Bucket(T0, 9.0)]
    assert store.aggregate(*args, Aggregate.MIN) == [Bucket(T0, 0.5)]
    assert store.aggregate(*args, Aggregate.AVG) == [Bucket(T0, (2.0 + 4.0 + 9.0 + 0.5) / 4)]


def test_late_data_older_than_raw_retention_adds_to_the_kept_rollup(
    store: TimeSeriesStore,
) -> None:
    """A reading for a minute whose raw readings retention already deleted is added to that
    minute's rollup, not recomputed from what is left (which would lose the old minute)."""
    store.write([reading(T0 + i * 10_000, 2.0) for i in range(6)])  # one minute, six readings
    store.write([reading(T0 + 60_000, 5.0)])
    assert store.delete_before(T0 + 60_000) == 6
    assert store.write([reading(T0 + 5_000, 8.0), reading(T0 + 5_000, 9.0)]).inserted == 1
    assert store.write([reading(T0 + 5_000, 8.0)]).inserted == 0  # replayed: counted once
    args = ("acme", "pump-1", "temperature", T0, T0 + 120_000, 60_000)
    assert store.aggregate(*args, Aggregate.COUNT) == [Bucket(T0, 7.0), Bucket(T0 + 60_000, 1.0)]
    assert store.aggregate(*args, Aggregate.SUM) == [Bucket(T0, 20.0), Bucket(T0 + 60_000, 5.0)]
    assert store.aggregate(*args, Aggregate.MAX) == [Bucket(T0, 8.0), Bucket(T0 + 60_000, 5.0)]


def test_a_series_emptied_by_retention_comes_back_when_written_again(
    store: TimeSeriesStore,
) -> None:
    """After retention forgets a series, writing it again lists it in latest and the rollup."""
    store.write([reading(T0, 1.0)])
    assert store.delete_before(T0 + 1) == 1
    assert store.latest("acme", "pump-1") == []
    store.write([reading(T0 + 120_000, 4.0)])
    assert store.latest("acme", "pump-1") == [Latest("temperature", T0 + 120_000, 4.0, "Cel")]
    window = ("acme", "pump-1", "temperature", T0, T0 + 180_000, 60_000, Aggregate.COUNT)
    assert store.aggregate(*window) == [Bucket(T0, 1.0), Bucket(T0 + 120_000, 1.0)]


def test_rollup_retention_is_scoped(store: TimeSeriesStore) -> None:
    """delete_rollups_before removes older minutes of the tenant/devices asked, nothing else."""
    for device in ("d1", "d2"):
        store.write([reading(T0 + m * 60_000, 1.0, device=device) for m in range(10)])
    store.write([reading(T0 + m * 60_000, 1.0, tenant="globex") for m in range(10)])
    assert store.delete_rollups_before(T0 + 300_000, tenant="acme", devices=["d1"]) == 5
    window = ("temperature", T0, T0 + 600_000, 60_000, Aggregate.COUNT)
    assert len(store.aggregate("acme", "d1", *window)) == 5
    assert len(store.aggregate("acme", "d2", *window)) == 10
    assert store.delete_rollups_before(T0 + 600_000) == 5 + 10 + 10
    assert store.aggregate("globex", "pump-1", *window) == []
    assert store.count() == 30  # raw readings are untouched


def test_usage_counts_readings_per_tenant(store: TimeSeriesStore) -> None:
    """usage() reports bytes used and, per tenant, readings in all and since the cutoff."""
    store.write([reading(T0 + i * 1_000, tenant="acme") for i in range(10)])
    store.write([reading(T0 + i * 1_000, tenant="globex", device="d'2") for i in range(4)])
    usage = store.usage(T0 + 6_000)
    assert usage.bytes > 0
    assert [(t.tenant, t.readings, t.readings_since) for t in usage.tenants] == [
        ("acme", 10, 4),
        ("globex", 4, 0),
    ]


# Few tenants, devices, metrics and instants, so generated readings collide often.
readings_strategy = st.lists(
    st.builds(
        Reading,
        tenant=st.sampled_from(["acme", "globex"]),
        device=st.sampled_from(["d1", "d2"]),
        metric=st.sampled_from(["m1", "m2"]),
        ts=st.integers(T0, T0 + 40),
        value=st.floats(min_value=-MAX_ABS_VALUE, max_value=MAX_ABS_VALUE),
    ),
    max_size=60,
)


@pytest.mark.parametrize(
    "factory", [factory for _, factory in BACKENDS], ids=[name for name, _ in BACKENDS]
)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(readings=readings_strategy, cuts=st.lists(st.integers(0, 60), max_size=4))
def test_property_distinct_keys_first_write_wins(
    factory: StoreFactory,
    tmp_path_factory: pytest.TempPathFactory,
    readings: list[Reading],
    cuts: list[int],
) -> None:
    """Any batches store each distinct key once, first value wins, queried in time order."""
    store = factory(tmp_path_factory.mktemp("prop"))
    try:
        bounds = [0, *sorted(cuts), len(readings)]
        inserted = sum(
            store.write(readings[a:b]).inserted for a, b in itertools.pairwise(bounds) if a < b
        )
        first: dict[tuple[str, str, str, int], float] = {}
        for r in readings:
            first.setdefault((r.tenant, r.device, r.metric, r.ts), r.value)
        assert inserted == len(first)
        assert store.count() == len(first)
        for tenant in ("acme", "globex"):
            assert store.count(tenant) == sum(1 for key in first if key[0] == tenant)
        for tenant, device, metric in itertools.product(
            ("acme", "globex"), ("d1", "d2"), ("m1", "m2")
        ):
            expected = sorted(
                (ts, value)
                for (t, d, m, ts), value in first.items()
                if (t, d, m) == (tenant, device, metric)
            )
            got = store.query(tenant, device, metric, T0, T0 + 41)
            assert [(p.ts, p.value) for p in got] == expected
    finally:
        store.close()


@pytest.mark.parametrize(
    "factory", [factory for _, factory in BACKENDS], ids=[name for name, _ in BACKENDS]
)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.dictionaries(
        st.integers(T0, T0 + 10_000),
        st.floats(-1e6, 1e6, allow_nan=False),
        max_size=80,
    ),
    bucket_ms=st.integers(1, 5_000),
    window=st.tuples(st.integers(T0 - 100, T0 + 10_100), st.integers(0, 10_000)),
    fn=st.sampled_from(list(Aggregate)),
)
def test_property_aggregate_matches_reference(
    factory: StoreFactory,
    tmp_path_factory: pytest.TempPathFactory,
    rows: dict[int, float],
    bucket_ms: int,
    window: tuple[int, int],
    fn: Aggregate,
) -> None:
    """For any readings, bucket size and window, aggregate equals the computation here."""
    start, length = window
    store = factory(tmp_path_factory.mktemp("agg"))
    try:
        store.write([reading(ts, value) for ts, value in rows.items()])
        got = store.aggregate("acme", "pump-1", "temperature", start, start + length, bucket_ms, fn)
        expected = _expected_buckets(list(rows.items()), start, start + length, bucket_ms, fn)
        assert [b.start for b in got] == [b.start for b in expected]
        for g, e in zip(got, expected, strict=True):
            # Sums of values up to 1e6 in magnitude: compare with an absolute tolerance.
            assert math.isclose(g.value, e.value, rel_tol=1e-9, abs_tol=1e-3)
    finally:
        store.close()


@pytest.mark.parametrize(
    "factory", [factory for _, factory in BACKENDS], ids=[name for name, _ in BACKENDS]
)
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(
        st.dictionaries(
            st.integers(T0, T0 + 30 * 60_000), st.floats(-1e6, 1e6, allow_nan=False), max_size=40
        ),
        max_size=4,
    ),
    minutes=st.integers(1, 7),
    window=st.tuples(st.integers(-2, 30), st.integers(1, 40)),
    fn=st.sampled_from(list(Aggregate)),
)
def test_property_rollup_matches_reference(
    factory: StoreFactory,
    tmp_path_factory: pytest.TempPathFactory,
    batches: list[dict[int, float]],
    minutes: int,
    window: tuple[int, int],
    fn: Aggregate,
) -> None:
    """Whole-minute aggregates (from the rollup) equal the computation over first-written values."""
    start = T0 + window[0] * 60_000
    end = start + window[1] * 60_000
    store = factory(tmp_path_factory.mktemp("rollup"))
    try:
        first: dict[int, float] = {}
        for batch in batches:  # later batches redeliver some keys with other values
            store.write([reading(ts, value) for ts, value in batch.items()])
            for ts, value in batch.items():
                first.setdefault(ts, value)
        got = store.aggregate("acme", "pump-1", "temperature", start, end, minutes * 60_000, fn)
        expected = _expected_buckets(list(first.items()), start, end, minutes * 60_000, fn)
        assert [b.start for b in got] == [b.start for b in expected]
        for g, e in zip(got, expected, strict=True):
            assert math.isclose(g.value, e.value, rel_tol=1e-9, abs_tol=1e-3)
    finally:
        store.close()
