"""The PostgreSQL time-series backend (psycopg 3), for fleets beyond one machine's disk.

``series`` gives each (tenant, device, metric) an integer ``series_id`` once;
``readings`` and ``rollup_1m`` are keyed by (series_id, ts) and (series_id, minute).
A key of two integers costs half the index work per row of the three names it
replaced (a binary COPY into a table keyed by names ran at 0.25 of an unindexed
COPY, keyed by ids at 0.5). Each process caches the ids; ``meta.series_generation``,
bumped by retention (which may delete series), makes every process look them up again.

A batch of new keys, the usual case, is one binary ``COPY`` straight into the readings
table; the unique key refuses it whole if any key is stored already, and the whole
transaction rolls back (no savepoint: nothing else was written yet but new series).
Such a batch (a replay, a redelivery) takes the idempotent path instead, in a new
transaction: a binary ``COPY`` into a per-connection temporary staging table, then one
``INSERT … SELECT … ORDER BY key ON CONFLICT DO NOTHING``. Sorting by key gives every
writer there the same lock order, and the batch ordinal breaks ties so the first copy
of a key in a batch wins, as on every other backend. The rows added mark their
device-minutes in ``rollup_pending``; when a process's newest minute moves on, it
recomputes the closed ones into ``rollup_1m`` set-based (see ``_REFRESH``), and
whole-minute reads compute still-pending minutes from the readings (``_ROLLUP_READ``).

Layout, chosen once per schema when it is created:

* **Native declarative partitioning** (always available): ``readings`` is
  partitioned by range of ``ts`` into one table per UTC day. Partitions are created
  ahead (:meth:`PostgresTimeSeriesStore.ensure_partitions`) and on demand for late or
  early data; retention drops whole days with ``DROP TABLE`` instead of deleting rows.
* **TimescaleDB** (only when ``CREATE EXTENSION timescaledb`` succeeds and
  ``timescale=True``): ``readings`` becomes a hypertable with daily chunks and native
  compression segmented by series. This path is not exercised by the test suite on
  machines without the extension; see docs/storage.md.

``series`` also keeps, per series, the start of the day of its newest reading, written
once a day per series rather than per batch, so "latest value of every metric of
1,000 devices" is one backward index seek per series from that day. Name columns use
the ``C`` collation: byte order, the same order Python sorts in.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from operator import attrgetter
from typing import Any, NamedTuple, cast

from trellis.core.clock import now_ms
from trellis.core.errors import (
    ClosedError,
    ConfigError,
    SchemaError,
    StoreError,
    WriteRefusedError,
)
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

try:
    import psycopg
    from psycopg import sql
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the PostgreSQL backend needs psycopg 3: pip install 'trellis-aiot[postgres]'"
    ) from exc

__all__ = ["PostgresTimeSeriesStore", "normalise_url"]

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
# 2: the rollup refreshed from rollup_pending, not merged per row; 3: series keeps the
# start of each series' newest day (since), not its newest value; 4: readings and
# rollup_1m keyed by an integer series id instead of (tenant, device, metric)
_SCHEMA_VERSION = 4
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_PARTITION_NAME = re.compile(r"^readings_(\d{8})$")
_EPOCH = dt.date(1970, 1, 1)

_AGGREGATES = {
    Aggregate.AVG: "avg(value)",
    Aggregate.MIN: "min(value)",
    Aggregate.MAX: "max(value)",
    Aggregate.SUM: "sum(value)",
    Aggregate.COUNT: "count(*)",
    Aggregate.FIRST: "(array_agg(value ORDER BY ts))[1]",
    Aggregate.LAST: "(array_agg(value ORDER BY ts DESC))[1]",
}
_ROLLUP_AGGREGATES = {
    Aggregate.AVG: "sum(sum) / sum(count)",
    Aggregate.MIN: "min(min)",
    Aggregate.MAX: "max(max)",
    Aggregate.SUM: "sum(sum)",
    Aggregate.COUNT: "sum(count)",
    Aggregate.FIRST: "(array_agg(first ORDER BY first_ts))[1]",
    Aggregate.LAST: "(array_agg(last ORDER BY last_ts DESC))[1]",
}
_COLUMNS = "series_id, ts, value, unit, quality, seq, source_msg"
_COPY_TYPES = ["int4", "int4", "int8", "float8", "text", "int2", "int8", "text"]
_SERIES_OF = attrgetter("tenant", "device", "metric")
_TS_OF = attrgetter("ts")
#: A reading's columns after its series id, in _COLUMNS order.
_ROW_OF = attrgetter("ts", "value", "unit", "quality", "seq", "source_msg")
#: Bumped by every retention run, which may delete series: each process then forgets
#: the series ids (and days, ``series.since``) it knows and looks them up again.
_SERIES_GENERATION = "series_generation"
#: Counts refreshes that took marks: while it stands, a mark this process made is still
#: there and need not be made again by its next batches (1,000 marks a batch, measured
#: 7 ms even when every one exists).
_REFRESHES = "refreshes"
#: Most series ids, and most marks, a process remembers before it starts afresh.
_SERIES_CACHED = 1_000_000
_MARKS_CACHED = 100_000
#: Minutes below this (the newest retention cut, rounded up to a minute) may have lost
#: readings, so rows there merge into the rollup one by one instead of marking it pending.
_RAW_FLOOR = "raw_floor"
#: SQLSTATE classes that depend on the rows, not the server: data exceptions (22, e.g. a
#: double overflow) and integrity violations (23); with P0001, an exception a trigger
#: raised. Everything else (connections, locks, resources) is worth retrying.
_REFUSED_CLASSES = ("22", "23")
_PENDING_TABLE = (
    'CREATE TABLE IF NOT EXISTS {}.rollup_pending (tenant text COLLATE "C" NOT NULL,'
    ' device text COLLATE "C" NOT NULL, minute int8 NOT NULL,'
    " PRIMARY KEY (tenant, device, minute))"
)
_SERIES_TABLE = (
    "CREATE TABLE {}.series (series_id int4 GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    ' tenant text COLLATE "C" NOT NULL, device text COLLATE "C" NOT NULL,'
    ' metric text COLLATE "C" NOT NULL, since int8 NOT NULL, UNIQUE (tenant, device, metric))'
)
_READINGS_TABLE = (
    "CREATE TABLE {}.readings (series_id int4 NOT NULL, ts int8 NOT NULL,"
    " value float8 NOT NULL, unit text, quality int2 NOT NULL, seq int8, source_msg text,"
    " PRIMARY KEY (series_id, ts))"
)
_ROLLUP_TABLE = (
    "CREATE TABLE {}.rollup_1m (series_id int4 NOT NULL, minute int8 NOT NULL,"
    " count int8 NOT NULL, sum float8 NOT NULL, min float8 NOT NULL, max float8 NOT NULL,"
    " first_ts int8 NOT NULL, first float8 NOT NULL, last_ts int8 NOT NULL,"
    " last float8 NOT NULL, PRIMARY KEY (series_id, minute)) WITH (fillfactor = 70)"
)
#: The one series a read names, as a scalar subquery: the readings index is then
#: searched on (series_id, ts) with the id known at run time.
_ONE_SERIES = (
    "(SELECT series_id FROM {series} WHERE tenant = %(t)s AND device = %(d)s AND metric = %(m)s)"
)
# One series-minute's rollup figures from its readings (``x``; the query names the
# series ``{sid}`` and the minute ``{minute}``), as a LATERAL subquery: one index range
# seek on both key columns. As a plain join the planner searched the index on
# series_id alone and filtered the minute out of the series' whole day (measured
# 3× slower at 70 s of data, growing with the day). First and last are the values at
# the smallest and largest [ts, value] pair (ts is unique in a series, exact as float8
# below 2^53): no per-group sort, as array_agg(… ORDER BY ts) needs (20 % faster).
_MINUTE_FIGURES = (
    "SELECT count(*) AS count, sum(x.value) AS sum, min(x.value) AS min, max(x.value) AS max,"
    " min(x.ts) AS first_ts, (min(ARRAY[x.ts::float8, x.value]))[2] AS first,"
    " max(x.ts) AS last_ts, (max(ARRAY[x.ts::float8, x.value]))[2] AS last"
    " FROM {{readings}} x WHERE x.series_id = {sid} AND x.ts >= {minute}"
    " AND x.ts < {minute} + 60000"
)
# A whole-minute aggregate without writing: rollup rows where the minute is settled,
# and the same figures computed from the readings for the device's pending minutes
# (a few, recent, each one key-range seek), in one round trip.
_ROLLUP_READ = (
    "WITH k AS (SELECT " + _ONE_SERIES + " AS series_id),"
    " p AS (SELECT minute FROM {pending} WHERE tenant = %(t)s AND device = %(d)s"
    " AND minute >= %(s)s AND minute < %(e)s),"
    " src AS (SELECT minute, count, sum, min, max, first_ts, first, last_ts, last"
    " FROM {rollup} r JOIN k ON r.series_id = k.series_id WHERE minute >= %(s)s"
    " AND minute < %(e)s AND minute NOT IN (SELECT minute FROM p)"
    " UNION ALL SELECT p.minute, a.* FROM p CROSS JOIN k CROSS JOIN LATERAL ("
    + _MINUTE_FIGURES.format(sid="k.series_id", minute="p.minute")
    + ") a WHERE a.count > 0)"
    " SELECT minute / %(b)s * %(b)s AS bucket, {expression} FROM src"
    " GROUP BY bucket ORDER BY bucket"
)
# The new rows of a batch mark their device-minutes pending. An existing mark is left
# alone: no refresh runs while a batch is open (_refresh), so it cannot be taken away
# before this batch's readings are visible.
_ADD_AND_MARK = (
    "WITH added AS (INSERT INTO {readings} SELECT " + _COLUMNS + " FROM staging"
    " WHERE ts >= %s ORDER BY series_id, ts, ord ON CONFLICT DO NOTHING"
    " RETURNING series_id, ts),"
    " marked AS (INSERT INTO {pending} SELECT DISTINCT s.tenant, s.device, a.ts - a.ts %% 60000"
    " FROM added a JOIN {series} s ON s.series_id = a.series_id ORDER BY 1, 2, 3"
    " ON CONFLICT (tenant, device, minute) DO NOTHING)"
    " SELECT count(*) FROM added"
)
# A batch whose rows were all added marks its device-minutes (computed by the writer).
_MARK = (
    "INSERT INTO {pending} SELECT * FROM unnest(%b::text[], %b::text[], %b::int8[])"
    " ORDER BY 1, 2, 3 ON CONFLICT (tenant, device, minute) DO NOTHING"
)
# Series a process does not know are looked up (ids and days as arrays in the order of
# the names), and those still missing added in key order (concurrent writers lock them
# in one order), then looked up. The insert is plain on the fast path (a conflict sends
# the batch to the merging path) and ON CONFLICT DO NOTHING there (speculative
# insertion: measured about twice the plain insert's 50 ms for 10,000). Arrays go as
# binary parameters (%b): half the time of text for 10,000 names.
_SERIES_IDS = (
    "SELECT coalesce(array_agg(s.series_id ORDER BY k.n), '{{}}'),"
    " coalesce(array_agg(s.since ORDER BY k.n), '{{}}')"
    " FROM unnest(%b::text[], %b::text[], %b::text[]) WITH ORDINALITY AS k(tenant, device,"
    " metric, n) LEFT JOIN {series} s ON s.tenant = k.tenant AND s.device = k.device"
    " AND s.metric = k.metric"
)
_ADD_SERIES = (
    "INSERT INTO {series} (tenant, device, metric, since) SELECT * FROM unnest(%b::text[],"
    " %b::text[], %b::text[], %b::int8[]) ORDER BY 1, 2, 3 {conflict}"
)
# A series' row holds the start of the newest day it has readings in: every reading
# newer than that lies at or after it, so "latest" seeks only there (see latest_many).
# Written when a series first reaches a day, not per batch.
_NOTE_SINCE = (
    "UPDATE {series} s SET since = k.since FROM unnest(%b::int4[], %b::int8[])"
    " AS k(series_id, since) WHERE s.series_id = k.series_id AND s.since < k.since"
)
# Rows below the raw floor: the rows the INSERT really added merge into the rollup.
_ADD_AND_MERGE = (
    "WITH added AS (INSERT INTO {readings} SELECT " + _COLUMNS + " FROM staging"
    " WHERE ts < %s ORDER BY series_id, ts, ord ON CONFLICT DO NOTHING"
    " RETURNING series_id, ts, value),"
    " rolled AS (INSERT INTO {rollup} AS r SELECT series_id,"
    " ts - ts %% 60000 AS minute, count(*), sum(value), min(value), max(value),"
    " min(ts), (array_agg(value ORDER BY ts))[1],"
    " max(ts), (array_agg(value ORDER BY ts DESC))[1]"
    " FROM added GROUP BY 1, 2 ORDER BY 1, 2"
    " ON CONFLICT (series_id, minute) DO UPDATE SET"
    " count = r.count + excluded.count, sum = r.sum + excluded.sum,"
    " min = least(r.min, excluded.min), max = greatest(r.max, excluded.max),"
    " first = CASE WHEN excluded.first_ts < r.first_ts THEN excluded.first ELSE r.first END,"
    " first_ts = least(r.first_ts, excluded.first_ts),"
    " last = CASE WHEN excluded.last_ts > r.last_ts THEN excluded.last ELSE r.last END,"
    " last_ts = greatest(r.last_ts, excluded.last_ts))"
    " SELECT count(*) FROM added"
)
# Recomputes the rollup rows of the taken device-minutes from their readings, which are
# complete above the raw floor: each device's series, then one key-range seek each
# (_MINUTE_FIGURES).
# Runs as its own statement after the marks were deleted, so its snapshot includes
# every batch that held one of those marks.
_REFRESH = (
    "INSERT INTO {rollup} AS r SELECT s.series_id, p.minute, a.*"
    " FROM unnest(%b::text[], %b::text[], %b::int8[]) AS p(tenant, device, minute)"
    " JOIN {series} s ON s.tenant = p.tenant AND s.device = p.device CROSS JOIN LATERAL ("
    + _MINUTE_FIGURES.format(sid="s.series_id", minute="p.minute")
    + ") a WHERE a.count > 0 ORDER BY 1, 2"
    " ON CONFLICT (series_id, minute) DO UPDATE SET count = excluded.count,"
    " sum = excluded.sum, min = excluded.min, max = excluded.max, first_ts = excluded.first_ts,"
    " first = excluded.first, last_ts = excluded.last_ts, last = excluded.last"
)
# Version 3 to 4: the old tables' rows, each with its series' id (series got the ids).
_V3_READINGS = (
    "INSERT INTO {readings} SELECT s.series_id, r.ts, r.value, r.unit, r.quality, r.seq,"
    " r.source_msg FROM {old} r JOIN {series} s USING (tenant, device, metric)"
)
_V3_ROLLUP = (
    "INSERT INTO {rollup} SELECT s.series_id, r.minute, r.count, r.sum, r.min, r.max,"
    " r.first_ts, r.first, r.last_ts, r.last FROM {old} r"
    " JOIN {series} s USING (tenant, device, metric)"
)


def normalise_url(url: str) -> str:
    """A libpq URL from ``postgresql://`` or SQLAlchemy's ``postgresql+psycopg://``."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise ConfigError(f"not a PostgreSQL URL: {url!r} (expected postgresql://…)")
    return "postgresql://" + rest


def _day_of(ms: int) -> int:
    return ms // DAY_MS


def _partition_name(day: int) -> str:
    return f"readings_{(_EPOCH + dt.timedelta(days=day)):%Y%m%d}"


class _Fresh(NamedTuple):
    """Series a write looked up in ``series``: id to names, id to since."""

    keys: dict[int, tuple[str, str, str]]
    since: dict[int, int]


_NONE_FRESH = _Fresh({}, {})


class _Duplicate(Exception):
    """A batch's COPY met a stored key: its transaction rolled back, merge it instead."""


class _Batch:
    """One write's readings with what every step needs of them, computed once."""

    __slots__ = ("_series", "keys", "newest", "oldest", "readings", "sids", "stamps")

    def __init__(self, readings: list[Reading]) -> None:
        self.readings = readings
        self.stamps: list[int] = list(map(_TS_OF, readings))
        self.oldest, self.newest = min(self.stamps), max(self.stamps)
        self.keys: list[tuple[str, str, str]] = list(map(_SERIES_OF, readings))
        self.sids: list[int] = []
        self._series: set[int] | None = None

    def series(self) -> set[int]:
        """The batch's series ids (``sids`` filled in)."""
        if self._series is None:
            self._series = set(self.sids)
        return self._series


class _SeriesCache:
    """What one process knows of ``series``, valid for one series generation (retention
    may delete series): each series' id, tenant and device, and the newest day recorded
    for it (``since``); and the rollup marks it made, valid for one refresh count.
    Guarded by ``lock``; filled only after the transaction that read or wrote it commits."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.generation = -1
        self.ids: dict[tuple[str, str, str], int] = {}
        self.devices: dict[int, tuple[str, str, str]] = {}
        self.since: dict[int, int] = {}
        #: The newest single day a batch reached, and the series recorded at it (a set,
        #: so a batch checks its 10,000 series in one set difference).
        self.day = -1
        self.day_sids: set[int] = set()
        self.refreshes = -1
        self.marked: set[tuple[str, str, int]] = set()
        #: The newest single minute a batch marked, and the series whose device it marked.
        self.mark_minute = -1
        self.minute_sids: set[int] = set()

    def reset(self, generation: int) -> None:
        self.generation = generation
        self.ids, self.devices, self.since = {}, {}, {}
        self.day, self.day_sids = -1, set()

    def device_of(self, sid: int, fresh: _Fresh) -> tuple[str, str]:
        found = self.devices.get(sid)
        tenant, device, _ = fresh.keys[sid] if found is None else found
        return tenant, device

    def since_of(self, sid: int, fresh: _Fresh) -> int:
        found = self.since.get(sid)
        return found if found is not None else fresh.since[sid]

    def remember(
        self,
        batch: _Batch,
        generation: int,
        fresh: _Fresh,
        notes: dict[int, int],
        refreshes: int,
        marks: set[tuple[str, str, int]] | None,
    ) -> None:
        """Take in what a committed batch looked up and recorded; ``marks`` is None for
        a merged batch, whose device-minutes this process did not all mark."""
        if generation == self.generation:
            if len(self.ids) + len(fresh.keys) > _SERIES_CACHED:
                self.reset(generation)
            else:
                self.ids.update(zip(fresh.keys.values(), fresh.keys, strict=True))
                self.devices.update(fresh.keys)
                self.since.update(fresh.since)
                self.since.update(notes)
                day = batch.newest - batch.newest % DAY_MS
                if batch.oldest >= day and day >= self.day:
                    if day > self.day:
                        self.day, self.day_sids = day, set()
                    self.day_sids |= batch.series()
        if refreshes != self.refreshes or len(self.marked) > _MARKS_CACHED:
            self.marked.clear()
            self.refreshes, self.mark_minute, self.minute_sids = refreshes, -1, set()
        if marks is None:
            return
        self.marked.update(marks)
        minute = batch.newest - batch.newest % ROLLUP_MS
        if batch.oldest >= minute and minute >= self.mark_minute:
            if minute > self.mark_minute:
                self.mark_minute, self.minute_sids = minute, set()
            self.minute_sids |= batch.series()


class PostgresTimeSeriesStore:
    """Readings in PostgreSQL, through a pool of psycopg connections."""

    def __init__(
        self,
        url: str,
        *,
        schema: str = "trellis",
        pool_size: int = 4,
        partitions_ahead: int = 3,
        timescale: bool = True,
        connect_timeout_s: float = 10.0,
    ) -> None:
        if not _SCHEMA_NAME.match(schema) or schema.startswith("pg_"):
            raise ConfigError(
                f"schema {schema!r} must match {_SCHEMA_NAME.pattern} and not start with pg_"
            )
        self._schema = schema
        self._s = sql.Identifier(schema)
        self._closed = False
        self._partitions: set[int] = set()
        self._partitions_lock = threading.Lock()
        self._names_ok: set[tuple[str, str, str, str | None]] = set()
        self._cache = _SeriesCache()
        # The newest minute this process checked for pending minutes to roll up before.
        self._checked_minute = -1
        self._pool = ConnectionPool(
            normalise_url(url),
            min_size=1,
            max_size=pool_size,
            open=False,
            configure=self._configure,
            # Reads are one statement each: autocommit saves the BEGIN/COMMIT round trips.
            # Writes open an explicit transaction (_transaction).
            kwargs={"autocommit": True},
            name=f"trellis-{schema}",
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout_s)
        except PoolTimeout as exc:
            self._pool.close()
            raise StoreError(
                f"cannot connect to PostgreSQL at {_redacted(url)} within {connect_timeout_s} s"
            ) from exc
        try:
            self.timescale = self._create_schema(timescale)
            if not self.timescale:
                today = _day_of(now_ms())
                self.ensure_partitions(today, today + partitions_ahead)
        except BaseException:
            self._pool.close()
            raise

    # -- setup ------------------------------------------------------------------

    def _configure(self, connection: psycopg.Connection[Any]) -> None:
        """Each pooled connection gets its own staging table, emptied at every commit."""
        connection.execute(
            "CREATE TEMP TABLE IF NOT EXISTS staging (ord int4, series_id int4, ts int8,"
            " value float8, unit text, quality int2, seq int8, source_msg text)"
            " ON COMMIT DELETE ROWS"
        )

    def _create_schema(self, want_timescale: bool) -> bool:
        s = self._s
        with self._transaction() as cur:
            # One creator at a time, across processes: DDL races end in duplicate-key errors.
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"trellis:{self._schema}",))
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(s))
            cur.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {}.meta (key text PRIMARY KEY, value text)"
                ).format(s)
            )
            cur.execute(sql.SQL("SELECT key, value FROM {}.meta").format(s))
            meta = dict(cur.fetchall())
            if meta:
                version = int(meta["version"])
                if version > _SCHEMA_VERSION:
                    raise SchemaError(
                        f"schema {self._schema!r} has time-series version {version}, newer than "
                        f"{_SCHEMA_VERSION}; upgrade Trellis to read it"
                    )
                timescale = meta.get("layout") == "timescale"
                if version < 2:  # version 1 merged every row into the rollup as written
                    cur.execute(sql.SQL(_PENDING_TABLE).format(s))
                if version < 3:
                    self._series_since_day(cur)
                if version < 4:
                    self._integer_series_ids(cur, timescale)
                if version < _SCHEMA_VERSION:
                    cur.execute(
                        sql.SQL("UPDATE {}.meta SET value = %s WHERE key = 'version'").format(s),
                        (str(_SCHEMA_VERSION),),
                    )
                return timescale
            timescale = want_timescale and self._try_timescale(cur)
            cur.execute(sql.SQL(_SERIES_TABLE).format(s))
            self._create_data_tables(cur, timescale)
            cur.execute(sql.SQL(_PENDING_TABLE).format(s))
            cur.execute(
                sql.SQL("INSERT INTO {}.meta VALUES ('version', %s), ('layout', %s)").format(s),
                (str(_SCHEMA_VERSION), "timescale" if timescale else "partitioned"),
            )
        return timescale

    def _create_data_tables(self, cur: psycopg.Cursor[Any], timescale: bool) -> None:
        """``readings`` (partitioned by day, or a hypertable) and ``rollup_1m``."""
        readings = _READINGS_TABLE + ("" if timescale else " PARTITION BY RANGE (ts)")
        cur.execute(sql.SQL(readings).format(self._s))
        cur.execute(sql.SQL(_ROLLUP_TABLE).format(self._s))
        if timescale:
            self._make_hypertable(cur)

    def _has_column(self, cur: psycopg.Cursor[Any], table: str, column: str) -> bool:
        """Whether this schema's ``table`` has ``column`` (what tells an old layout)."""
        cur.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = %s"
            " AND table_name = %s AND column_name = %s",
            (self._schema, table, column),
        )
        return cur.fetchone() is not None

    def _series_since_day(self, cur: psycopg.Cursor[Any]) -> None:
        """Version 2 kept each series' newest value, rewritten by every batch (a third of
        the write time); version 3 keeps the start of its newest day."""
        if not self._has_column(cur, "series", "last_ts"):
            return
        series = self._table("series")
        cur.execute(sql.SQL("ALTER TABLE {} ADD COLUMN since int8").format(series))
        cur.execute(
            sql.SQL("UPDATE {} SET since = last_ts - last_ts %% %s").format(series), (DAY_MS,)
        )
        cur.execute(
            sql.SQL(
                "ALTER TABLE {} ALTER COLUMN since SET NOT NULL, DROP COLUMN unit,"
                " DROP COLUMN last_ts, DROP COLUMN last_value, RESET (fillfactor)"
            ).format(series)
        )

    def _integer_series_ids(self, cur: psycopg.Cursor[Any], timescale: bool) -> None:
        """Version 3 keyed readings and rollup_1m by (tenant, device, metric); version 4
        by an integer series id (half the index work per row; see docs/storage.md).

        ``series`` gains the ids; the old tables and their indexes are renamed out of the
        way (``v3_…``), new ones created with the same daily partitions, the rows copied
        across in key order, and the old tables dropped, in the caller's transaction."""
        if not self._has_column(cur, "readings", "tenant"):
            return
        log.warning(
            "upgrading time-series schema %r to integer series ids: every reading is copied"
            " once, which takes a while on a large store",
            self._schema,
        )
        series = self._table("series")
        # Every series with readings or rollup rows has a row and an id.
        cur.execute(
            sql.SQL(
                "ALTER TABLE {} DROP CONSTRAINT series_pkey, ADD COLUMN series_id int4"
                " GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
                " ADD UNIQUE (tenant, device, metric)"
            ).format(series)
        )
        cur.execute(
            sql.SQL(
                "INSERT INTO {series} (tenant, device, metric, since) SELECT tenant, device,"
                " metric, max(minute) - max(minute) %% %s FROM {rollup} GROUP BY 1, 2, 3"
                " ON CONFLICT DO NOTHING"
            ).format(series=series, rollup=self._table("rollup_1m")),
            (DAY_MS,),
        )
        # Readings with no series row could only come from a writer that failed between
        # its COPY and its series note, which version 3 did in one transaction.
        cur.execute(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN"
            " ('r', 'p', 'i', 'I') AND (c.relname LIKE 'readings%%'"
            " OR c.relname LIKE 'rollup\\_1m%%')",
            (self._schema,),
        )
        days = []
        for name, kind in cur.fetchall():
            match = _PARTITION_NAME.match(name)
            if match:
                days.append((dt.datetime.strptime(match[1], "%Y%m%d").date() - _EPOCH).days)
            what = "INDEX" if kind in ("i", "I") else "TABLE"
            cur.execute(
                sql.SQL("ALTER " + what + " {} RENAME TO {}").format(
                    sql.Identifier(self._schema, name), sql.Identifier("v3_" + name)
                )
            )
        self._create_data_tables(cur, timescale)
        self._partitions.clear()
        self._create_partitions(cur, sorted(days))
        old_readings, old_rollup = (
            sql.Identifier(self._schema, "v3_readings"),
            sql.Identifier(self._schema, "v3_rollup_1m"),
        )
        cur.execute(
            sql.SQL(_V3_READINGS).format(
                readings=self._table("readings"), old=old_readings, series=series
            )
        )
        cur.execute(
            sql.SQL(_V3_ROLLUP).format(
                rollup=self._table("rollup_1m"), old=old_rollup, series=series
            )
        )
        cur.execute(sql.SQL("DROP TABLE {}, {} CASCADE").format(old_readings, old_rollup))
        cur.execute(sql.SQL("ANALYZE {}").format(series))

    def _try_timescale(self, cur: psycopg.Cursor[Any]) -> bool:
        """Whether TimescaleDB can be used: the extension is (or can be) created."""
        cur.execute("SAVEPOINT timescale")
        try:
            cur.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        except psycopg.Error as exc:
            cur.execute("ROLLBACK TO SAVEPOINT timescale")
            log.info("TimescaleDB not available (%s); using native daily partitions", exc)
            return False
        cur.execute("RELEASE SAVEPOINT timescale")
        return True

    def _make_hypertable(self, cur: psycopg.Cursor[Any]) -> None:
        """Daily chunks, compression segmented by series, compressed after 7 days."""
        table = f"{self._schema}.readings"
        now_fn = sql.Identifier(self._schema, "now_ms")
        cur.execute(
            sql.SQL(
                "CREATE OR REPLACE FUNCTION {}() RETURNS int8 LANGUAGE sql STABLE AS"
                " $$ SELECT (extract(epoch FROM now()) * 1000)::int8 $$"
            ).format(now_fn)
        )
        cur.execute(
            "SELECT create_hypertable(%s, 'ts', chunk_time_interval => %s)", (table, DAY_MS)
        )
        cur.execute("SELECT set_integer_now_func(%s, %s)", (table, f"{self._schema}.now_ms"))
        cur.execute(
            sql.SQL(
                "ALTER TABLE {}.readings SET (timescaledb.compress,"
                " timescaledb.compress_segmentby = 'series_id',"
                " timescaledb.compress_orderby = 'ts')"
            ).format(self._s)
        )
        cur.execute("SELECT add_compression_policy(%s, %s::int8)", (table, 7 * DAY_MS))

    def ensure_partitions(self, first_day: int, last_day: int) -> None:
        """Create the daily partitions for days ``first_day..last_day`` (days since 1970)."""
        if self.timescale:
            return
        missing = [d for d in range(first_day, last_day + 1) if d not in self._partitions]
        if not missing:
            return
        with self._partitions_lock, self._transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"trellis:{self._schema}",))
            self._create_partitions(cur, missing)

    def _create_partitions(self, cur: psycopg.Cursor[Any], days: Sequence[int]) -> None:
        """Create the daily partitions of ``days`` that do not exist, in the caller's
        transaction."""
        for day in days:
            # DDL takes no bound parameters: the bounds are integers we computed.
            cur.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})"
                ).format(
                    sql.Identifier(self._schema, _partition_name(day)),
                    sql.Identifier(self._schema, "readings"),
                    sql.Literal(day * DAY_MS),
                    sql.Literal((day + 1) * DAY_MS),
                )
            )
        self._partitions.update(days)

    def partitions(self) -> list[str]:
        """Names of the daily partitions that exist, oldest first."""
        with self._transaction(read_only=True) as cur:
            cur.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = to_regclass(%s) ORDER BY c.relname",
                (f"{self._schema}.readings",),
            )
            return [name for (name,) in cur.fetchall()]

    # -- plumbing ---------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, *, read_only: bool = False) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor inside one transaction (or, for one-statement reads, autocommit)."""
        if self._closed:
            raise ClosedError("the time-series store is closed")
        try:
            with self._pool.connection() as connection:
                scope = contextlib.nullcontext() if read_only else connection.transaction()
                with scope, connection.cursor() as cur:
                    yield cur
        except psycopg.Error as exc:
            if (exc.sqlstate or "")[:2] in _REFUSED_CLASSES or exc.sqlstate == "P0001":
                raise WriteRefusedError(f"PostgreSQL ({self._schema}): {exc}") from exc
            raise StoreError(f"PostgreSQL ({self._schema}): {exc}") from exc
        except PoolTimeout as exc:
            raise StoreError(f"no PostgreSQL connection free ({self._schema}): {exc}") from exc

    def _table(self, name: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(self._s, sql.Identifier(name))

    # -- the protocol -----------------------------------------------------------

    def write(self, readings: Sequence[Reading]) -> WriteResult:
        good, rejected = split_valid(readings, self._names_ok)
        if not good:
            if self._closed:
                raise ClosedError("the time-series store is closed")
            return WriteResult(0, rejected)
        batch = _Batch(good)
        first_day, last_day = _day_of(batch.oldest), _day_of(batch.newest)
        days = {first_day} if first_day == last_day else set(map(_day_of, batch.stamps))
        for day in days:
            self.ensure_partitions(day, day)
        try:
            inserted = self._write(batch)
        except StoreError as exc:
            if "no partition" not in str(exc):
                raise
            # Another process dropped a day this process still had cached: recreate.
            with self._partitions_lock:
                self._partitions.clear()
            for day in days:
                self.ensure_partitions(day, day)
            inserted = self._write(batch)
        return WriteResult(inserted, rejected)

    def _write(self, batch: _Batch) -> int:
        try:
            inserted = self._write_once(batch, merging=False)
        except _Duplicate:
            # A key is stored already, or repeats within the batch (a replay, a redelivery),
            # or another batch is adding some of these keys in another order (a deadlock):
            # the whole transaction rolled back; the merging path inserts in key order, as
            # every writer there does.
            inserted = self._write_once(batch, merging=True)
        # Minutes before this batch's newest are (mostly) complete: roll them up, once per
        # device-minute, outside the write so no batch waits on another's locks. Checked
        # when this process's newest minute moves on (once a minute at 1 Hz), or when the
        # batch reached back into older minutes. The batch has committed: if this fails,
        # the marks stay for the next write or read, and the caller must not see an error
        # (a retry would count its rows as duplicates).
        newest_minute = batch.newest - batch.newest % ROLLUP_MS
        if newest_minute > self._checked_minute or batch.oldest < newest_minute:
            self._checked_minute = max(self._checked_minute, newest_minute)
            try:
                self._refresh(sql.SQL("minute < %s"), [newest_minute], exclusive=False)
            except StoreError as exc:
                log.warning("rolling up pending minutes failed, left for later: %s", exc)
        return inserted

    def _write_once(self, batch: _Batch, *, merging: bool) -> int:
        """One transaction: the batch's series ids, its rows, its rollup marks, its series'
        newest days. Raises _Duplicate (rolled back) when a key of a ``merging=False``
        batch is stored already."""
        cache = self._cache
        with self._transaction() as cur:
            # Shared: writers run side by side; retention takes it exclusively (_retention_lock).
            cur.execute(
                sql.SQL(
                    "SELECT pg_advisory_xact_lock_shared(hashtext(%s)),"
                    " (SELECT value FROM {meta} WHERE key = %s),"
                    " (SELECT value FROM {meta} WHERE key = %s),"
                    " (SELECT value FROM {meta} WHERE key = %s)"
                ).format(meta=self._table("meta")),
                (self._floor_key, _RAW_FLOOR, _SERIES_GENERATION, _REFRESHES),
            )
            row = cur.fetchone()
            floor, generation, refreshes = (int(v) if v else 0 for v in (row or (0,) * 4)[1:])
            fresh = self._series_ids(cur, batch, generation, merging=merging)
            marks: set[tuple[str, str, int]] | None = None
            if merging or batch.oldest < floor:  # rows below the raw floor merge one by one
                inserted = self._copy_merging(cur, batch, floor)
            else:
                self._copy_new(cur, batch)
                inserted = len(batch.readings)
                marks = self._mark(cur, batch, fresh, refreshes)
            notes = self._note_since(cur, batch, fresh)
        with cache.lock:  # committed: what this batch recorded may be remembered
            cache.remember(batch, generation, fresh, notes, refreshes, marks)
        return inserted

    def _series_ids(
        self, cur: psycopg.Cursor[Any], batch: _Batch, generation: int, *, merging: bool
    ) -> _Fresh:
        """Fill ``batch.sids``: the cached ids, and for series this process does not know,
        the ids in ``series``, added first where missing. Return those looked up (id:
        tenant, device, since), to be cached once the transaction commits."""
        cache = self._cache
        with cache.lock:
            if generation != cache.generation:
                cache.reset(generation)
            known = list(map(cache.ids.get, batch.keys))
        if None not in known:
            batch.sids = cast("list[int]", known)
            return _NONE_FRESH
        missing: dict[tuple[str, str, str], int] = {}
        for key, sid, ts in zip(batch.keys, known, batch.stamps, strict=True):
            if sid is None and ts - ts % DAY_MS > missing.get(key, -1):
                missing[key] = ts - ts % DAY_MS
        # Column lists of the batch's own key tuples, ids and days back as arrays in the
        # same order: no new tuple per series (30,000 more, living through the write, set
        # off a full garbage collection: 60-100 ms).
        keys = list(missing)
        names = [[k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]]
        ids, since = self._lookup_series(cur, names)
        if None in ids:
            absent = [i for i, sid in enumerate(ids) if sid is None]
            columns: list[list[Any]] = [[column[i] for i in absent] for column in names]
            columns.append([missing[keys[i]] for i in absent])
            conflict = "ON CONFLICT DO NOTHING" if merging else ""
            try:
                cur.execute(
                    sql.SQL(_ADD_SERIES).format(
                        series=self._table("series"), conflict=sql.SQL(conflict)
                    ),
                    columns,
                )
            except (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected) as exc:
                raise _Duplicate from exc  # another writer added one since the lookup
            added, added_since = self._lookup_series(cur, columns[:3])
            for i, sid, day in zip(absent, added, added_since, strict=True):
                ids[i], since[i] = sid, day
        got = cast("list[int]", ids)
        fresh = _Fresh(dict(zip(got, keys, strict=True)), dict(zip(got, since, strict=True)))
        found = dict(zip(keys, got, strict=True))
        batch.sids = [
            found[key] if sid is None else sid for key, sid in zip(batch.keys, known, strict=True)
        ]
        return fresh

    def _lookup_series(
        self, cur: psycopg.Cursor[Any], names: list[list[Any]]
    ) -> tuple[list[int | None], list[int]]:
        """The id and since of each series named by the column lists ``names`` (tenants,
        devices, metrics), in their order; None where there is none."""
        cur.execute(sql.SQL(_SERIES_IDS).format(series=self._table("series")), names)
        row = cur.fetchone()
        return (row[0], row[1]) if row else ([], [])

    def _copy_new(self, cur: psycopg.Cursor[Any], batch: _Batch) -> None:
        """The usual batch, all new keys: one binary COPY straight into the readings.
        Raises _Duplicate when a key is stored already (or repeats within the batch)."""
        try:
            with cur.copy(
                sql.SQL("COPY {} (" + _COLUMNS + ") FROM STDIN (FORMAT BINARY)").format(
                    self._table("readings")
                )
            ) as copy:
                copy.set_types(_COPY_TYPES[1:])
                write_row = copy.write_row
                for sid, r in zip(batch.sids, batch.readings, strict=True):
                    write_row((sid, *_ROW_OF(r)))
        except (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected) as exc:
            raise _Duplicate from exc

    def _copy_merging(self, cur: psycopg.Cursor[Any], batch: _Batch, floor: int) -> int:
        """Any batch: COPY into the staging table, then INSERT … ON CONFLICT DO NOTHING,
        marking (or, below the raw floor, merging) the rollup minutes of the rows added."""
        with cur.copy("COPY staging FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_COPY_TYPES)
            write_row = copy.write_row
            for ord_, (sid, r) in enumerate(zip(batch.sids, batch.readings, strict=True)):
                write_row((ord_, sid, *_ROW_OF(r)))
        tables = {
            "readings": self._table("readings"),
            "rollup": self._table("rollup_1m"),
            "pending": self._table("rollup_pending"),
            "series": self._table("series"),
        }
        inserted = 0
        if batch.oldest < floor:
            cur.execute(sql.SQL(_ADD_AND_MERGE).format(**tables), (floor,))
            inserted += self._count(cur)
        # Only the rows the INSERT really added (RETURNING) mark a minute, so a
        # redelivered reading never touches the rollup; late data marks its minute.
        cur.execute(sql.SQL(_ADD_AND_MARK).format(**tables), (floor,))
        inserted += self._count(cur)
        return inserted

    def _mark(
        self,
        cur: psycopg.Cursor[Any],
        batch: _Batch,
        fresh: _Fresh,
        refreshes: int,
    ) -> set[tuple[str, str, int]]:
        """Mark the device-minutes of a batch whose rows were all added; return the
        marks made. Marks this process made since the last refresh (``refreshes``, read
        under the write lock, so none can run before this batch commits) still stand."""
        cache = self._cache
        minute = batch.newest - batch.newest % ROLLUP_MS
        with cache.lock:
            if batch.oldest >= minute:  # the usual batch: one minute of every device in it
                todo = batch.series()
                if refreshes == cache.refreshes and minute == cache.mark_minute:
                    todo = todo - cache.minute_sids
                pairs = ((cache.device_of(sid, fresh), minute) for sid in todo)
            else:
                pairs = (
                    (cache.device_of(sid, fresh), ts - ts % ROLLUP_MS)
                    for sid, ts in zip(batch.sids, batch.stamps, strict=True)
                )
            marks = {(t, d, m) for (t, d), m in pairs}
            if refreshes == cache.refreshes:
                marks.difference_update(cache.marked)
        if marks:
            tenants, devices, minutes = (list(c) for c in zip(*marks, strict=True))
            cur.execute(
                sql.SQL(_MARK).format(pending=self._table("rollup_pending")),
                (tenants, devices, minutes),
            )
        return marks

    def _note_since(self, cur: psycopg.Cursor[Any], batch: _Batch, fresh: _Fresh) -> dict[int, int]:
        """Record in ``series`` the start of the newest day each series of the batch
        reached, where this process does not know it is recorded; return what it
        recorded."""
        cache = self._cache
        day = batch.newest - batch.newest % DAY_MS
        with cache.lock:
            if batch.oldest >= day:  # the usual batch: one day, nearly always known
                todo = batch.series()
                if day == cache.day:
                    todo = todo - cache.day_sids
                notes = {sid: day for sid in todo if cache.since_of(sid, fresh) < day}
            else:
                notes = {}
                for sid, ts in zip(batch.sids, batch.stamps, strict=True):
                    start = ts - ts % DAY_MS
                    if start > notes.get(sid, -1) and start > cache.since_of(sid, fresh):
                        notes[sid] = start
        if notes:
            ordered = sorted(notes.items())
            cur.execute(
                sql.SQL(_NOTE_SINCE).format(series=self._table("series")),
                [list(column) for column in zip(*ordered, strict=True)],
            )
        return notes

    @property
    def _floor_key(self) -> str:
        return f"trellis:{self._schema}:raw_floor"

    def _raw_floor(self, cur: psycopg.Cursor[Any]) -> int:
        cur.execute(
            sql.SQL("SELECT value FROM {}.meta WHERE key = %s").format(self._s), (_RAW_FLOOR,)
        )
        row = cur.fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    def _count(cur: psycopg.Cursor[Any]) -> int:
        row = cur.fetchone()
        return int(row[0]) if row else 0

    def _refresh(self, where: sql.Composable, params: list[object], *, exclusive: bool) -> None:
        """Recompute the rollup of the pending device-minutes matching ``where``.

        When there are any, it takes the lock every write holds shared, exclusively
        (``exclusive``: the caller already did): no batch is open while the marks are
        taken and the minutes recomputed, so the recompute sees every batch that marked
        them, and a write needs no row lock on a mark. Writers wait for that moment
        (once a minute at 1 Hz) instead of every batch updating each of its marks to
        lock it (measured: 17 ms a batch).
        """
        with self._transaction() as cur:
            if not exclusive:
                cur.execute(
                    sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {})").format(
                        self._table("rollup_pending"), where
                    ),
                    params,
                )
                row = cur.fetchone()
                if not (row and row[0]):
                    return
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self._floor_key,))
            self._refresh_in(cur, where, params)

    def _refresh_in(
        self, cur: psycopg.Cursor[Any], where: sql.Composable, params: list[object]
    ) -> None:
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE {} RETURNING tenant, device, minute").format(
                self._table("rollup_pending"), where
            ),
            params,
        )
        taken = cur.fetchall()
        if not taken:
            return
        cur.execute(
            sql.SQL(
                "INSERT INTO {}.meta VALUES (%s, '1') ON CONFLICT (key) DO UPDATE"
                " SET value = (meta.value::int8 + 1)::text"
            ).format(self._s),
            (_REFRESHES,),
        )
        tenants, devices, minutes = (list(column) for column in zip(*taken, strict=True))
        cur.execute(
            sql.SQL(_REFRESH).format(
                rollup=self._table("rollup_1m"),
                series=self._table("series"),
                readings=self._table("readings"),
            ),
            (tenants, devices, minutes),
        )

    def query(
        self, tenant: str, device: str, metric: str, start: int, end: int, limit: int = 10_000
    ) -> list[Point]:
        with self._transaction(read_only=True) as cur:
            cur.execute(
                sql.SQL(
                    "SELECT ts, value FROM {readings} WHERE series_id = "
                    + _ONE_SERIES
                    + " AND ts >= %(s)s AND ts < %(e)s ORDER BY ts LIMIT %(n)s"
                ).format(readings=self._table("readings"), series=self._table("series")),
                {"t": tenant, "d": device, "m": metric, "s": start, "e": end, "n": limit},
            )
            return [Point(ts, value) for ts, value in cur.fetchall()]

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
        params = {
            "b": bucket_ms,
            "t": tenant,
            "d": device,
            "m": metric,
            "s": start,
            "e": end,
        }
        if uses_rollup(start, end, bucket_ms):
            query = sql.SQL(_ROLLUP_READ).format(
                pending=self._table("rollup_pending"),
                rollup=self._table("rollup_1m"),
                readings=self._table("readings"),
                series=self._table("series"),
                expression=sql.SQL(_ROLLUP_AGGREGATES[Aggregate(fn)]),
            )
        else:
            query = sql.SQL(
                "SELECT ts / %(b)s * %(b)s AS bucket, " + _AGGREGATES[Aggregate(fn)] + " FROM"
                " {readings} WHERE series_id = " + _ONE_SERIES + " AND ts >= %(s)s"
                " AND ts < %(e)s GROUP BY bucket ORDER BY bucket"
            ).format(readings=self._table("readings"), series=self._table("series"))
        with self._transaction(read_only=True) as cur:
            cur.execute(query, params)
            buckets = [Bucket(int(b), float(v)) for b, v in cur.fetchall()]
        return fill_gaps(buckets, start, end, bucket_ms, fill)

    @contextlib.contextmanager
    def _retention_lock(self) -> Iterator[psycopg.Cursor[Any]]:
        """A transaction that no write overlaps, with every pending minute rolled up:
        retention may then delete readings and raise the raw floor safely."""
        with self._transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self._floor_key,))
            self._refresh_in(cur, sql.SQL("true"), [])
            yield cur

    def latest(self, tenant: str, device: str) -> list[Latest]:
        return [Latest(d.metric, d.ts, d.value, d.unit) for d in self.latest_many(tenant, [device])]

    def latest_many(self, tenant: str, devices: Sequence[str] | None = None) -> list[DeviceLatest]:
        where = sql.SQL("tenant = %s")
        params: list[object] = [tenant]
        if devices is not None:
            where = sql.SQL("tenant = %s AND device = ANY(%s)")
            params.append(list(devices))
        with self._transaction(read_only=True) as cur:
            # Per series, one backward index seek from the end of its key range, only in
            # the partitions from its newest day on (pruned at run time on s.since).
            cur.execute(
                sql.SQL(
                    "SELECT s.device, s.metric, r.ts, r.value, r.unit FROM {} s"
                    " CROSS JOIN LATERAL (SELECT ts, value, unit FROM {} x"
                    " WHERE x.series_id = s.series_id AND x.ts >= s.since"
                    " ORDER BY x.ts DESC LIMIT 1) r"
                    " WHERE {} ORDER BY s.device, s.metric"
                ).format(self._table("series"), self._table("readings"), where),
                params,
            )
            return [DeviceLatest(*row) for row in cur.fetchall()]

    def delete_before(
        self, before: int, *, tenant: str | None = None, devices: Sequence[str] | None = None
    ) -> int:
        if devices is not None and tenant is None:
            raise ValueError("deleting by device needs the tenant the devices belong to")
        with self._retention_lock() as cur:
            cur.execute(
                sql.SQL(
                    "INSERT INTO {}.meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE"
                    " SET value = greatest(meta.value::int8, excluded.value::int8)::text"
                ).format(self._s),
                (_RAW_FLOOR, str(-(-before // ROLLUP_MS) * ROLLUP_MS)),
            )
        deleted = 0
        if tenant is None and not self.timescale:
            deleted += self._drop_partitions_before(before)
        which, params = self._which_series(tenant, devices)
        where = sql.SQL("ts < %s") if which is None else sql.SQL("ts < %s AND {}").format(which)
        with self._transaction() as cur:
            if self.timescale and tenant is None:
                cur.execute(
                    "SELECT drop_chunks(%s, older_than => %s::int8)",
                    (f"{self._schema}.readings", before),
                )
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE {}").format(self._table("readings"), where),
                [before, *params],
            )
            deleted += cur.rowcount
        # A series whose newest day is older than the cut may have no readings left; with
        # no rollup rows either, its id goes. With no write open (the lock), the generation
        # bump makes every writer look its series up again, so none writes a stale id.
        series_where = sql.SQL(
            "since < %s AND NOT EXISTS (SELECT 1 FROM {readings} r WHERE r.series_id ="
            " s.series_id) AND NOT EXISTS (SELECT 1 FROM {rollup} r WHERE r.series_id ="
            " s.series_id)"
        ).format(readings=self._table("readings"), rollup=self._table("rollup_1m"))
        if which is not None:
            series_where = sql.SQL("{} AND s.{}").format(series_where, which)
        with self._retention_lock() as cur:
            cur.execute(
                sql.SQL("DELETE FROM {} s WHERE {}").format(self._table("series"), series_where),
                [before, *params],
            )
            cur.execute(
                sql.SQL(
                    "INSERT INTO {}.meta VALUES (%s, '1') ON CONFLICT (key) DO UPDATE"
                    " SET value = (meta.value::int8 + 1)::text"
                ).format(self._s),
                (_SERIES_GENERATION,),
            )
        return deleted

    def delete_rollups_before(
        self, before: int, *, tenant: str | None = None, devices: Sequence[str] | None = None
    ) -> int:
        if devices is not None and tenant is None:
            raise ValueError("deleting by device needs the tenant the devices belong to")
        which, params = self._which_series(tenant, devices)
        where: sql.Composable = sql.SQL("minute < %s")
        if which is not None:
            where = sql.SQL("{} AND {}").format(where, which)
        with self._retention_lock() as cur:
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE {}").format(self._table("rollup_1m"), where),
                [before, *params],
            )
            return cur.rowcount

    def _which_series(
        self, tenant: str | None, devices: Sequence[str] | None
    ) -> tuple[sql.Composable | None, list[object]]:
        """A condition on ``series_id`` selecting a tenant's (or some of its devices')
        series, with its parameters; None for every series."""
        if tenant is None:
            return None, []
        if devices is None:
            condition = sql.SQL("tenant = %s")
            params: list[object] = [tenant]
        else:
            condition = sql.SQL("tenant = %s AND device = ANY(%s)")
            params = [tenant, list(devices)]
        return (
            sql.SQL("series_id IN (SELECT series_id FROM {} WHERE {})").format(
                self._table("series"), condition
            ),
            params,
        )

    def _drop_partitions_before(self, before: int) -> int:
        """Drop every daily partition wholly older than ``before``; return its row count."""
        dropped = 0
        for name in self.partitions():
            match = _PARTITION_NAME.match(name)
            if not match:
                continue
            day = (dt.datetime.strptime(match[1], "%Y%m%d").date() - _EPOCH).days
            if (day + 1) * DAY_MS > before:
                continue
            table = sql.Identifier(self._schema, name)
            with self._partitions_lock, self._transaction() as cur:
                cur.execute(sql.SQL("SELECT count(*) FROM {}").format(table))
                row = cur.fetchone()
                dropped += int(row[0]) if row else 0
                cur.execute(sql.SQL("DROP TABLE {}").format(table))
                self._partitions.discard(day)
        return dropped

    def usage(self, since: int) -> StorageUsage:
        """Free disk is not visible to a client, so ``free_bytes`` is None here
        (``storage.capacity_bytes`` supplies the budget instead)."""
        with self._transaction(read_only=True) as cur:
            cur.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relkind IN ('r', 'm')",
                (self._schema,),
            )
            row = cur.fetchone()
            used = int(row[0]) if row else 0
            cur.execute(
                sql.SQL(
                    "SELECT s.tenant, count(*), count(*) FILTER (WHERE r.ts >= %s) FROM {} r"
                    " JOIN {} s ON s.series_id = r.series_id GROUP BY s.tenant ORDER BY s.tenant"
                ).format(self._table("readings"), self._table("series")),
                (since,),
            )
            tenants = [TenantUsage(t, int(n), int(recent)) for t, n, recent in cur.fetchall()]
        return StorageUsage(used, None, tenants)

    def count(self, tenant: str | None = None) -> int:
        query = sql.SQL("SELECT count(*) FROM {}").format(self._table("readings"))
        which, params = self._which_series(tenant, None)
        if which is not None:
            query = sql.SQL("{} WHERE {}").format(query, which)
        with self._transaction(read_only=True) as cur:
            cur.execute(query, params)
            row = cur.fetchone()
            return int(row[0]) if row else 0

    def close(self) -> None:
        self._closed = True
        self._pool.close()


def _redacted(url: str) -> str:
    """The URL without its password, for error messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
