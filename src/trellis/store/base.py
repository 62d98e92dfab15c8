"""The time-series storage interface that every backend implements.

Writes are idempotent on (tenant, device, metric, ts): a redelivered reading is a
no-op and is reported as a duplicate, never stored twice. Every backend checks each
reading at its boundary (:func:`check_reading`) and stores the rest of a batch when
one row is bad, reporting that row in :class:`WriteResult`. Methods are synchronous
because the embedded backend is; callers on the event loop run them in a thread
(the ingest pipeline owns one writer thread, the API reads from its thread pool).

The pure helpers here (:func:`check_reading`, :func:`check_buckets`, :func:`fill_gaps`)
are shared by every backend, so the limits and the gap-fill rules are the same on all.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from operator import attrgetter
from typing import Annotated, Protocol, runtime_checkable

import msgspec

from trellis.core.errors import LimitError
from trellis.core.types import Reading

__all__ = [
    "MAX_ABS_VALUE",
    "MAX_BUCKETS",
    "MAX_NAME_CHARS",
    "MAX_TS",
    "MIN_TS",
    "ROLLUP_MS",
    "Aggregate",
    "Bucket",
    "DeviceLatest",
    "Fill",
    "Latest",
    "Point",
    "RejectedReading",
    "StorageUsage",
    "TenantUsage",
    "TimeSeriesStore",
    "WriteResult",
    "check_buckets",
    "check_reading",
    "fill_gaps",
    "numbers_in_range",
    "split_valid",
    "uses_rollup",
]

#: Oldest storable instant: the Unix epoch (1970-01-01T00:00:00Z), in ms.
MIN_TS = 0
#: First instant that is no longer storable: 2100-01-01T00:00:00Z, in ms.
MAX_TS = 4_102_444_800_000
#: Largest storable magnitude. Far beyond any physical reading, and small enough that
#: sums over any number of readings (rollups, SUM and AVG buckets) stay finite: a
#: PostgreSQL double that overflows is an error, and one such batch would stall ingest.
MAX_ABS_VALUE = 1e200
#: Longest tenant, device, metric or unit name, in characters.
MAX_NAME_CHARS = 256
#: Width of the rollup every backend maintains on write.
ROLLUP_MS = 60_000
#: Most buckets one aggregate may span (about 69 days at 1 minute, 27 hours at 1 s).
MAX_BUCKETS = 100_000


class Aggregate(enum.StrEnum):
    """Functions a time bucket can be reduced with; first/last go by time."""

    AVG = "avg"
    MIN = "min"
    MAX = "max"
    SUM = "sum"
    COUNT = "count"
    FIRST = "first"
    LAST = "last"


class Fill(enum.StrEnum):
    """What an empty bucket becomes.

    ``none`` leaves it out; ``previous`` carries the last bucket's value forward;
    ``linear`` interpolates between the buckets either side; ``zero`` reports 0.
    Buckets before the first value (and, for ``linear``, after the last) stay out:
    there is nothing honest to put there.
    """

    NONE = "none"
    PREVIOUS = "previous"
    LINEAR = "linear"
    ZERO = "zero"


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


class DeviceLatest(msgspec.Struct, frozen=True):
    """The newest value of one metric of one device, naming the device."""

    device: str
    metric: str
    ts: int
    value: float
    unit: str | None


class TenantUsage(msgspec.Struct, frozen=True):
    """How much one tenant stores: raw readings in all, and those with ``ts >= since``."""

    tenant: str
    readings: int
    readings_since: int


class StorageUsage(msgspec.Struct, frozen=True):
    """Bytes the store occupies, free bytes where it can tell, and readings per tenant."""

    bytes: int
    free_bytes: int | None
    tenants: list[TenantUsage]


class RejectedReading(msgspec.Struct, frozen=True):
    """A reading the store refused: its position in the batch and why."""

    index: int
    reading: Reading
    reason: str


class WriteResult(msgspec.Struct, frozen=True):
    """What one write did: readings newly stored, and the ones refused."""

    inserted: int
    rejected: list[RejectedReading] = []


def _bad_name(what: str, name: object) -> str | None:
    if not isinstance(name, str):
        return f"{what} must be a string, got {type(name).__name__}"
    if not name:
        return f"{what} is empty"
    if len(name) > MAX_NAME_CHARS:
        return f"{what} is longer than {MAX_NAME_CHARS} characters"
    if "\x00" in name:
        return f"{what} contains a NUL character"
    return None


def check_reading(reading: Reading) -> str | None:
    """Why ``reading`` cannot be stored, or None when it can.

    Names may hold any character but NUL (quotes and semicolons are stored as they
    are, since every backend binds parameters); values are finite numbers of magnitude
    at most :data:`MAX_ABS_VALUE`; times lie in [1970, 2100).
    """
    for what, name in (
        ("tenant", reading.tenant),
        ("device", reading.device),
        ("metric", reading.metric),
    ):
        problem = _bad_name(what, name)
        if problem:
            return problem
    if reading.unit is not None and (problem := _bad_name("unit", reading.unit)):
        return problem
    value: object = reading.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"value of {reading.metric!r} must be a number, got {type(value).__name__}"
    # An int is always finite (and may be too large for math.isfinite to convert).
    if isinstance(value, float) and not math.isfinite(value):
        return f"value of {reading.metric!r} is {value}, not a finite number"
    if abs(value) > MAX_ABS_VALUE:
        return (
            f"value {value!r} of {reading.metric!r} exceeds the storable magnitude "
            f"{MAX_ABS_VALUE:g}"
        )
    ts: object = reading.ts
    if isinstance(ts, bool) or not isinstance(ts, int):
        return f"timestamp must be integer milliseconds, got {type(ts).__name__}"
    if not MIN_TS <= ts < MAX_TS:
        return f"timestamp {ts} ms is outside 1970-01-01..2100-01-01 (UTC)"
    return None


#: Most name tuples a :func:`split_valid` cache holds before it starts afresh.
_NAMES_CACHE_MAX = 100_000
_NAMES_OF = attrgetter("tenant", "device", "metric", "unit")
_VALUE_OF, _TS_OF = attrgetter("value"), attrgetter("ts")
# What a clean batch's values and timestamps convert to without a ValidationError:
# msgspec refuses bools, strings, NaN (it fails every comparison) and the infinities.
_VALUES = list[Annotated[float, msgspec.Meta(ge=-MAX_ABS_VALUE, le=MAX_ABS_VALUE)]]
_STAMPS = list[Annotated[int, msgspec.Meta(ge=MIN_TS, lt=MAX_TS)]]


def _names_known(
    readings: Sequence[Reading], names_ok: set[tuple[str, str, str, str | None]]
) -> bool:
    """Whether every reading's (tenant, device, metric, unit) is in ``names_ok``; False
    for a name that cannot be hashed (a list, say), which check_reading then refuses."""
    try:
        return names_ok.issuperset(map(_NAMES_OF, readings))
    except TypeError:
        return False


def numbers_in_range(readings: Sequence[Reading]) -> bool:
    """Whether every value and timestamp of the batch is storable, by two passes in C.
    False may be wrong (a number type msgspec does not take as a float but
    :func:`check_reading` does): the caller then checks reading by reading."""
    try:
        msgspec.convert(list(map(_VALUE_OF, readings)), _VALUES)
        msgspec.convert(list(map(_TS_OF, readings)), _STAMPS)
    except msgspec.ValidationError:
        return False
    return True


def split_valid(
    readings: Sequence[Reading], names_ok: set[tuple[str, str, str, str | None]] | None = None
) -> tuple[list[Reading], list[RejectedReading]]:
    """The storable readings of a batch, and the refused ones with their reasons.

    ``names_ok`` caches (tenant, device, metric, unit) tuples already found valid; a
    store passes the same set to every call so each series' names are checked once.
    """
    # The full check cost as much as the database insert, and even the loop below 2-3 ms
    # a batch of 10,000: a batch whose names are all known and whose numbers pass
    # msgspec's checks (in C) is taken whole, in about 1.5 ms.
    if names_ok is None:
        names_ok = set()
    elif len(names_ok) > _NAMES_CACHE_MAX:
        names_ok.clear()
    elif _names_known(readings, names_ok) and numbers_in_range(readings):
        return list(readings), []
    good: list[Reading] = []
    bad: list[RejectedReading] = []
    # Otherwise names are checked once each, and plain numbers in range take the
    # comparisons below (NaN and the infinities fail them and get the full check).
    for index, reading in enumerate(readings):
        value, ts = reading.value, reading.ts
        names = _NAMES_OF(reading)
        try:
            cheap = (
                (type(value) is float or type(value) is int)
                and -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE
                and type(ts) is int
                and MIN_TS <= ts < MAX_TS
                and names in names_ok
            )
        except TypeError:  # a name that cannot be hashed: check_reading refuses it
            cheap = False
        if cheap:
            good.append(reading)
            continue
        problem = check_reading(reading)
        if problem is None:
            good.append(reading)
            names_ok.add(names)
        else:
            bad.append(RejectedReading(index, reading, problem))
    return good, bad


def check_buckets(start: int, end: int, bucket_ms: int) -> None:
    """Refuse a non-positive bucket, or a window of more than :data:`MAX_BUCKETS` buckets."""
    if bucket_ms <= 0:
        raise ValueError(f"bucket_ms must be positive, got {bucket_ms}")
    buckets = max(0, -(-end // bucket_ms) - start // bucket_ms)
    if buckets > MAX_BUCKETS:
        raise LimitError(
            f"{buckets} buckets of {bucket_ms} ms requested; at most {MAX_BUCKETS} per query: "
            "widen the bucket or narrow the time range"
        )


def uses_rollup(start: int, end: int, bucket_ms: int) -> bool:
    """Whether an aggregate is answered from the 1-minute rollup instead of raw readings:
    when its window and buckets are whole minutes, so the answer is the same."""
    return bucket_ms % ROLLUP_MS == 0 and start % ROLLUP_MS == 0 and end % ROLLUP_MS == 0


def fill_gaps(
    buckets: list[Bucket], start: int, end: int, bucket_ms: int, fill: Fill
) -> list[Bucket]:
    """Insert the empty buckets between ``start`` and ``end`` as ``fill`` says."""
    fill = Fill(fill)
    if fill is Fill.NONE or not buckets:
        return buckets
    check_buckets(start, end, bucket_ms)
    first_start = start - start % bucket_ms
    by_start = {b.start: b.value for b in buckets}
    out: list[Bucket] = []
    known = sorted(by_start)
    after = 0  # index into ``known`` of the next bucket with a value
    for at in range(first_start, end, bucket_ms):
        while after < len(known) and known[after] < at:
            after += 1
        if at in by_start:
            out.append(Bucket(at, by_start[at]))
            continue
        if fill is Fill.ZERO:
            out.append(Bucket(at, 0.0))
            continue
        if after == 0:
            continue  # before the first value
        before_start = known[after - 1]
        if fill is Fill.PREVIOUS:
            out.append(Bucket(at, by_start[before_start]))
        elif after < len(known):
            next_start = known[after]
            share = (at - before_start) / (next_start - before_start)
            low, high = by_start[before_start], by_start[next_start]
            out.append(Bucket(at, low + (high - low) * share))
    return out


@runtime_checkable
class TimeSeriesStore(Protocol):
    """Durable storage of readings."""

    def write(self, readings: Sequence[Reading]) -> WriteResult:
        """Store a batch in one transaction; bad rows are refused, the rest stored.

        ``inserted`` counts readings that were new (duplicates are not counted);
        ``rejected`` names each refused reading with its reason.
        """
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
        fill: Fill = Fill.NONE,
    ) -> list[Bucket]:
        """Buckets of ``bucket_ms`` aligned to the epoch, gaps filled per ``fill``.

        When the window and buckets are whole minutes (:func:`uses_rollup`) the answer
        comes from the 1-minute rollup, which is maintained on every write (late data
        included) and outlives raw retention: that is how a year of history stays
        queryable after raw readings are gone. Raises ValueError for ``bucket_ms <= 0``
        and :class:`LimitError` beyond :data:`MAX_BUCKETS` buckets, before any work.
        """
        ...

    def latest(self, tenant: str, device: str) -> list[Latest]:
        """The newest value of every metric the device has reported."""
        ...

    def latest_many(self, tenant: str, devices: Sequence[str] | None = None) -> list[DeviceLatest]:
        """The newest value of every metric of each device (all of the tenant's when
        None), ordered by device then metric."""
        ...

    def delete_before(
        self, before: int, *, tenant: str | None = None, devices: Sequence[str] | None = None
    ) -> int:
        """Retention: delete readings with ``ts < before`` (of one tenant, or of some of
        its devices); return how many were deleted."""
        ...

    def delete_rollups_before(
        self, before: int, *, tenant: str | None = None, devices: Sequence[str] | None = None
    ) -> int:
        """Retention of the 1-minute rollup: delete minutes starting before ``before``;
        return how many rollup rows were deleted."""
        ...

    def usage(self, since: int) -> StorageUsage:
        """Bytes used (tables, indexes, journal), free bytes on the store's disk when the
        store can see it, and per tenant the readings stored and those with ts >= since."""
        ...

    def count(self, tenant: str | None = None) -> int:
        """How many readings are stored (for one tenant, or in all)."""
        ...

    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""
        ...
