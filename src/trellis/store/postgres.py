"""The PostgreSQL time-series backend (psycopg 3), for fleets beyond one machine's disk.

A batch of new keys, the usual case, is one binary ``COPY`` straight into the readings
table, in a savepoint: the unique key refuses it whole if any key is stored already.
Such a batch (a replay, a redelivery) takes the idempotent path instead: a binary
``COPY`` into a per-connection temporary staging table, then one ``INSERT … SELECT …
ORDER BY key ON CONFLICT DO NOTHING``. Sorting by key gives every writer there the
same lock order, and the batch ordinal breaks ties so the first copy of a key in a
batch wins, as on every other backend. The rows added mark their device-minutes in
``rollup_pending``; after the commit the write recomputes the closed ones into
``rollup_1m`` set-based (see ``_REFRESH``), and whole-minute reads compute
still-pending minutes from the readings (``_ROLLUP_READ``).

Layout, chosen once per schema when it is created:

* **Native declarative partitioning** (always available): ``readings`` is
  partitioned by range of ``ts`` into one table per UTC day. Partitions are created
  ahead (:meth:`PostgresTimeSeriesStore.ensure_partitions`) and on demand for late or
  early data; retention drops whole days with ``DROP TABLE`` instead of deleting rows.
* **TimescaleDB** (only when ``CREATE EXTENSION timescaledb`` succeeds and
  ``timescale=True``): ``readings`` becomes a hypertable with daily chunks and native
  compression segmented by series. This path is not exercised by the test suite on
  machines without the extension; see docs/storage.md.

``series`` lists each (tenant, device, metric) with the start of the day of its newest
reading, written once a day per series rather than per batch, so "latest value of
every metric of 1,000 devices" is one backward index seek per series from that day.
Text columns use the ``C`` collation: byte order, the same order Python sorts in,
and cheaper comparisons in the key.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from operator import attrgetter
from typing import Any

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
# start of each series' newest day (since), not its newest value
_SCHEMA_VERSION = 3
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
_COPY_TYPES = ["int4", "text", "text", "text", "int8", "float8", "text", "int2", "int8", "text"]
_SERIES_OF = attrgetter("tenant", "device", "metric")
_DEVICE_OF, _TS_OF = attrgetter("tenant", "device"), attrgetter("ts")
#: Bumped by every retention run, which may delete series: each process then forgets
#: which series it has recorded (``series.since``) and records them again.
_SERIES_GENERATION = "series_generation"
#: Counts refreshes that took marks: while it stands, a mark this process made is still
#: there and need not be made again by its next batches (1,000 marks a batch, measured
#: 7 ms even when every one exists).
_REFRESHES = "refreshes"
#: Most marks a process remembers before it starts afresh.
_MARKS_CACHED = 100_000
_COLUMNS = "tenant, device, metric, ts, value, unit, quality, seq, source_msg"
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
# A whole-minute aggregate without writing: rollup rows where the minute is settled,
# and the same figures computed from the readings for the device's pending minutes
# (a few, recent, each one key-range seek per series), in one round trip.
_ROLLUP_READ = (
    "WITH p AS (SELECT minute FROM {pending} WHERE tenant = %(t)s AND device = %(d)s"
    " AND minute >= %(s)s AND minute < %(e)s),"
    " src AS (SELECT minute, count, sum, min, max, first_ts, first, last_ts, last FROM {rollup}"
    " WHERE tenant = %(t)s AND device = %(d)s AND metric = %(m)s AND minute >= %(s)s"
    " AND minute < %(e)s AND minute NOT IN (SELECT minute FROM p)"
    " UNION ALL SELECT p.minute, count(*), sum(x.value), min(x.value), max(x.value), min(x.ts),"
    " (array_agg(x.value ORDER BY x.ts))[1], max(x.ts), (array_agg(x.value ORDER BY x.ts DESC))[1]"
    " FROM p JOIN {readings} x ON x.tenant = %(t)s AND x.device = %(d)s AND x.metric = %(m)s"
    " AND x.ts >= p.minute AND x.ts < p.minute + 60000 GROUP BY p.minute)"
    " SELECT minute / %(b)s * %(b)s AS bucket, {expression} FROM src"
    " GROUP BY bucket ORDER BY bucket"
)
# The new rows of a batch mark their device-minutes pending. An existing mark is left
# alone: no refresh runs while a batch is open (_refresh), so it cannot be taken away
# before this batch's readings are visible.
_ADD_AND_MARK = (
    "WITH added AS (INSERT INTO {readings} SELECT " + _COLUMNS + " FROM staging"
    " WHERE ts >= %s ORDER BY tenant, device, metric, ts, ord ON CONFLICT DO NOTHING"
    " RETURNING tenant, device, ts),"
    " marked AS (INSERT INTO {pending} SELECT DISTINCT tenant, device, ts - ts %% 60000"
    " FROM added ORDER BY 1, 2, 3 ON CONFLICT (tenant, device, minute)"
    " DO NOTHING)"
    " SELECT count(*) FROM added"
)
# A batch whose rows were all added marks its device-minutes (computed by the writer).
_MARK = (
    "INSERT INTO {pending} SELECT * FROM unnest(%s::text[], %s::text[], %s::int8[])"
    " ON CONFLICT (tenant, device, minute) DO NOTHING"
)
# A series' row holds the start of the newest day it has readings in: every reading
# newer than that lies at or after it, so "latest" seeks only there (see latest_many).
# Written when a series first reaches a day, not per batch.
_NOTE_SERIES = (
    "INSERT INTO {series} AS s SELECT * FROM unnest(%s::text[], %s::text[], %s::text[],"
    " %s::int8[]) ON CONFLICT (tenant, device, metric) DO UPDATE SET since = excluded.since"
    " WHERE excluded.since > s.since"
)
# Rows below the raw floor: the rows the INSERT really added merge into the rollup.
_ADD_AND_MERGE = (
    "WITH added AS (INSERT INTO {readings} SELECT " + _COLUMNS + " FROM staging"
    " WHERE ts < %s ORDER BY tenant, device, metric, ts, ord ON CONFLICT DO NOTHING"
    " RETURNING tenant, device, metric, ts, value),"
    " rolled AS (INSERT INTO {rollup} AS r SELECT tenant, device, metric,"
    " ts - ts %% 60000 AS minute, count(*), sum(value), min(value), max(value),"
    " min(ts), (array_agg(value ORDER BY ts))[1],"
    " max(ts), (array_agg(value ORDER BY ts DESC))[1]"
    " FROM added GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
    " ON CONFLICT (tenant, device, metric, minute) DO UPDATE SET"
    " count = r.count + excluded.count, sum = r.sum + excluded.sum,"
    " min = least(r.min, excluded.min), max = greatest(r.max, excluded.max),"
    " first = CASE WHEN excluded.first_ts < r.first_ts THEN excluded.first ELSE r.first END,"
    " first_ts = least(r.first_ts, excluded.first_ts),"
    " last = CASE WHEN excluded.last_ts > r.last_ts THEN excluded.last ELSE r.last END,"
    " last_ts = greatest(r.last_ts, excluded.last_ts))"
    " SELECT count(*) FROM added"
)
# Recomputes the rollup rows of the taken device-minutes from their readings, which are
# complete above the raw floor. Through ``series`` so each readings lookup uses the
# whole key prefix. Runs as its own statement after the marks were deleted, so its
# snapshot includes every batch that held one of those marks.
_REFRESH = (
    "INSERT INTO {rollup} AS r SELECT x.tenant, x.device, x.metric, p.minute, count(*),"
    " sum(x.value), min(x.value), max(x.value), min(x.ts), (array_agg(x.value ORDER BY x.ts))[1],"
    " max(x.ts), (array_agg(x.value ORDER BY x.ts DESC))[1]"
    " FROM unnest(%s::text[], %s::text[], %s::int8[]) AS p(tenant, device, minute)"
    " JOIN {series} s ON s.tenant = p.tenant AND s.device = p.device"
    " JOIN {readings} x ON x.tenant = s.tenant AND x.device = s.device AND x.metric = s.metric"
    " AND x.ts >= p.minute AND x.ts < p.minute + 60000"
    " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
    " ON CONFLICT (tenant, device, metric, minute) DO UPDATE SET count = excluded.count,"
    " sum = excluded.sum, min = excluded.min, max = excluded.max, first_ts = excluded.first_ts,"
    " first = excluded.first, last_ts = excluded.last_ts, last = excluded.last"
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
        # The start of each series' newest day as recorded in ``series`` (see _NOTE_SERIES),
        # valid while the schema's _SERIES_GENERATION is the one read with it.
        self._series_since: dict[tuple[str, str, str], int] = {}
        self._series_generation = -1
        self._series_lock = threading.Lock()
        # Rollup marks this process made since the refresh count it read with them.
        self._marked: set[tuple[str, str, int]] = set()
        self._marked_refreshes = -1
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
            'CREATE TEMP TABLE IF NOT EXISTS staging (ord int4, tenant text COLLATE "C",'
            ' device text COLLATE "C", metric text COLLATE "C", ts int8, value float8,'
            " unit text, quality int2, seq int8, source_msg text) ON COMMIT DELETE ROWS"
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
                if version < 2:  # version 1 merged every row into the rollup as written
                    cur.execute(sql.SQL(_PENDING_TABLE).format(s))
                if version < 3:
                    self._series_since_day(cur)
                if version < _SCHEMA_VERSION:
                    cur.execute(
                        sql.SQL("UPDATE {}.meta SET value = %s WHERE key = 'version'").format(s),
                        (str(_SCHEMA_VERSION),),
                    )
                return meta.get("layout") == "timescale"
            timescale = want_timescale and self._try_timescale(cur)
            cur.execute(
                sql.SQL(
                    'CREATE TABLE {}.readings (tenant text COLLATE "C" NOT NULL,'
                    ' device text COLLATE "C" NOT NULL, metric text COLLATE "C" NOT NULL,'
                    " ts int8 NOT NULL, value float8 NOT NULL, unit text, quality int2 NOT NULL,"
                    " seq int8, source_msg text, PRIMARY KEY (tenant, device, metric, ts))"
                    + ("" if timescale else " PARTITION BY RANGE (ts)")
                ).format(s)
            )
            cur.execute(
                sql.SQL(
                    'CREATE TABLE {}.series (tenant text COLLATE "C" NOT NULL,'
                    ' device text COLLATE "C" NOT NULL, metric text COLLATE "C" NOT NULL,'
                    " since int8 NOT NULL, PRIMARY KEY (tenant, device, metric))"
                ).format(s)
            )
            cur.execute(
                sql.SQL(
                    'CREATE TABLE {}.rollup_1m (tenant text COLLATE "C" NOT NULL,'
                    ' device text COLLATE "C" NOT NULL, metric text COLLATE "C" NOT NULL,'
                    " minute int8 NOT NULL, count int8 NOT NULL, sum float8 NOT NULL,"
                    " min float8 NOT NULL, max float8 NOT NULL, first_ts int8 NOT NULL,"
                    " first float8 NOT NULL, last_ts int8 NOT NULL, last float8 NOT NULL,"
                    " PRIMARY KEY (tenant, device, metric, minute)) WITH (fillfactor = 70)"
                ).format(s)
            )
            cur.execute(sql.SQL(_PENDING_TABLE).format(s))
            if timescale:
                self._make_hypertable(cur)
            cur.execute(
                sql.SQL("INSERT INTO {}.meta VALUES ('version', %s), ('layout', %s)").format(s),
                (str(_SCHEMA_VERSION), "timescale" if timescale else "partitioned"),
            )
        return timescale

    def _series_since_day(self, cur: psycopg.Cursor[Any]) -> None:
        """Version 2 kept each series' newest value, rewritten by every batch (a third of
        the write time); version 3 keeps the start of its newest day."""
        cur.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = %s"
            " AND table_name = 'series' AND column_name = 'last_ts'",
            (self._schema,),
        )
        if cur.fetchone() is None:
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
                "CREATE FUNCTION {}() RETURNS int8 LANGUAGE sql STABLE AS"
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
                " timescaledb.compress_segmentby = 'tenant, device, metric',"
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
            for day in missing:
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
            self._partitions.update(missing)

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
        first_day, last_day = _day_of(min(map(_TS_OF, good))), _day_of(max(map(_TS_OF, good)))
        days = {first_day} if first_day == last_day else {_day_of(r.ts) for r in good}
        for day in days:
            self.ensure_partitions(day, day)
        try:
            inserted = self._write(good)
        except StoreError as exc:
            if "no partition" not in str(exc):
                raise
            # Another process dropped a day this process still had cached: recreate.
            with self._partitions_lock:
                self._partitions.clear()
            for day in days:
                self.ensure_partitions(day, day)
            inserted = self._write(good)
        return WriteResult(inserted, rejected)

    def _write(self, readings: list[Reading]) -> int:
        stamps = list(map(_TS_OF, readings))
        oldest, newest = min(stamps), max(stamps)
        newest_minute = newest - newest % ROLLUP_MS
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
            inserted = None
            marked: set[tuple[str, str, int]] = set()
            if oldest >= floor:
                inserted = self._copy_new(cur, readings)
            if inserted is None:  # duplicates, or rows below the raw floor
                inserted = self._copy_merging(cur, readings, floor)
            else:
                marked = self._mark(cur, readings, stamps, oldest, newest_minute, refreshes)
            seen = self._note_series(cur, readings, stamps, oldest, newest, generation)
        with self._series_lock:  # committed: what this batch recorded may be remembered
            if generation != self._series_generation:
                self._series_since.clear()
                self._series_generation = generation
            self._series_since.update(seen)
            if refreshes != self._marked_refreshes or len(self._marked) > _MARKS_CACHED:
                self._marked.clear()
                self._marked_refreshes = refreshes
            self._marked.update(marked)
        # Minutes before this batch's newest are (mostly) complete: roll them up now,
        # once per device-minute, outside the write so no batch waits on another's locks.
        # The batch has committed: if this fails, the marks stay for the next write or read,
        # and the caller must not see an error (a retry would count its rows as duplicates).
        try:
            self._refresh(sql.SQL("minute < %s"), [newest_minute], exclusive=False)
        except StoreError as exc:
            log.warning("rolling up pending minutes failed, left for later: %s", exc)
        return inserted

    def _copy_new(self, cur: psycopg.Cursor[Any], readings: list[Reading]) -> int | None:
        """The usual batch, all new keys: one binary COPY straight into the readings, in a
        savepoint. None when a key is already stored (or repeats within the batch): the
        savepoint is rolled back and the caller takes the merging path."""
        try:
            with (
                cur.connection.transaction(),
                cur.copy(
                    sql.SQL("COPY {} (" + _COLUMNS + ") FROM STDIN (FORMAT BINARY)").format(
                        self._table("readings")
                    )
                ) as copy,
            ):
                copy.set_types(_COPY_TYPES[1:])
                write_row = copy.write_row
                for r in readings:
                    write_row(
                        (
                            r.tenant,
                            r.device,
                            r.metric,
                            r.ts,
                            r.value,
                            r.unit,
                            int(r.quality),
                            r.seq,
                            r.source_msg,
                        )
                    )
        except (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected):
            # A deadlock: another batch is adding some of these keys in another order;
            # the merging path inserts in key order, as every writer there does.
            return None
        return len(readings)

    def _copy_merging(self, cur: psycopg.Cursor[Any], readings: list[Reading], floor: int) -> int:
        """Any batch: COPY into the staging table, then INSERT … ON CONFLICT DO NOTHING,
        marking (or, below the raw floor, merging) the rollup minutes of the rows added."""
        with cur.copy("COPY staging FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_COPY_TYPES)
            write_row = copy.write_row
            for ord_, r in enumerate(readings):
                write_row(
                    (
                        ord_,
                        r.tenant,
                        r.device,
                        r.metric,
                        r.ts,
                        r.value,
                        r.unit,
                        int(r.quality),
                        r.seq,
                        r.source_msg,
                    )
                )
        tables = {
            "readings": self._table("readings"),
            "rollup": self._table("rollup_1m"),
            "pending": self._table("rollup_pending"),
        }
        inserted = 0
        if min(r.ts for r in readings) < floor:
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
        readings: list[Reading],
        stamps: list[int],
        oldest: int,
        newest_minute: int,
        refreshes: int,
    ) -> set[tuple[str, str, int]]:
        """Mark the device-minutes of a batch whose rows were all added; return the
        marks made. Marks this process made since the last refresh (``refreshes``, read
        under the write lock, so none can run before this batch commits) still stand."""
        if oldest >= newest_minute:  # the usual batch: one minute of every device in it
            marks = {(t, d, newest_minute) for t, d in set(map(_DEVICE_OF, readings))}
        else:
            marks = {
                (t, d, ts - ts % ROLLUP_MS)
                for (t, d), ts in zip(map(_DEVICE_OF, readings), stamps, strict=True)
            }
        with self._series_lock:
            if refreshes == self._marked_refreshes:
                marks.difference_update(self._marked)
        if marks:
            tenants, devices, minutes = (list(c) for c in zip(*sorted(marks), strict=True))
            cur.execute(
                sql.SQL(_MARK).format(pending=self._table("rollup_pending")),
                (tenants, devices, minutes),
            )
        return marks

    def _note_series(
        self,
        cur: psycopg.Cursor[Any],
        readings: list[Reading],
        stamps: list[int],
        oldest: int,
        newest: int,
        generation: int,
    ) -> dict[tuple[str, str, str], int]:
        """Record each series of the batch, and the start of the newest day it reached,
        where this process does not know it already; return what it now knows."""
        with self._series_lock:
            known = self._series_since if generation == self._series_generation else {}
            day = newest - newest % DAY_MS
            if oldest >= day:  # the usual batch: one day, every series known (no key kept)
                new = [key for key in map(_SERIES_OF, readings) if known.get(key, -1) < day]
                since = dict.fromkeys(new, day)
            else:
                since = {}
                for key, ts in zip(map(_SERIES_OF, readings), stamps, strict=True):
                    start = ts - ts % DAY_MS
                    if start > since.get(key, -1) and start > known.get(key, -1):
                        since[key] = start
        if since:
            ordered = sorted(since.items())
            cur.execute(
                sql.SQL(_NOTE_SERIES).format(series=self._table("series")),
                [list(column) for column in zip(*((*k, v) for k, v in ordered), strict=True)],
            )
        return since

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
                    "SELECT ts, value FROM {} WHERE tenant = %s AND device = %s AND metric = %s"
                    " AND ts >= %s AND ts < %s ORDER BY ts LIMIT %s"
                ).format(self._table("readings")),
                (tenant, device, metric, start, end, limit),
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
                expression=sql.SQL(_ROLLUP_AGGREGATES[Aggregate(fn)]),
            )
        else:
            query = sql.SQL(
                "SELECT ts / %(b)s * %(b)s AS bucket, " + _AGGREGATES[Aggregate(fn)] + " FROM {}"
                " WHERE tenant = %(t)s AND device = %(d)s AND metric = %(m)s AND ts >= %(s)s"
                " AND ts < %(e)s GROUP BY bucket ORDER BY bucket"
            ).format(self._table("readings"))
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
                    " WHERE x.tenant = s.tenant AND x.device = s.device AND x.metric = s.metric"
                    " AND x.ts >= s.since ORDER BY x.ts DESC LIMIT 1) r"
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
        conditions = [sql.SQL("ts < %s")]
        params: list[object] = [before]
        if tenant is not None:
            conditions.append(sql.SQL("tenant = %s"))
            params.append(tenant)
        if devices is not None:
            conditions.append(sql.SQL("device = ANY(%s)"))
            params.append(list(devices))
        where = sql.SQL(" AND ").join(conditions)
        with self._transaction() as cur:
            if self.timescale and tenant is None:
                cur.execute(
                    "SELECT drop_chunks(%s, older_than => %s::int8)",
                    (f"{self._schema}.readings", before),
                )
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE {}").format(self._table("readings"), where), params
            )
            deleted += cur.rowcount
        # A series whose newest day is older than the cut may have no readings left. With
        # no write open (the lock), the generation bump makes every writer record its
        # series again, so none is left without its row.
        series_where = sql.SQL(" AND ").join(
            [
                sql.SQL("since < %s"),
                *conditions[1:],
                sql.SQL(
                    "NOT EXISTS (SELECT 1 FROM {} r WHERE r.tenant = s.tenant"
                    " AND r.device = s.device AND r.metric = s.metric)"
                ).format(self._table("readings")),
            ]
        )
        with self._retention_lock() as cur:
            cur.execute(
                sql.SQL("DELETE FROM {} s WHERE {}").format(self._table("series"), series_where),
                params,
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
        conditions = [sql.SQL("minute < %s")]
        params: list[object] = [before]
        if tenant is not None:
            conditions.append(sql.SQL("tenant = %s"))
            params.append(tenant)
        if devices is not None:
            conditions.append(sql.SQL("device = ANY(%s)"))
            params.append(list(devices))
        with self._retention_lock() as cur:
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE {}").format(
                    self._table("rollup_1m"), sql.SQL(" AND ").join(conditions)
                ),
                params,
            )
            return cur.rowcount

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
                    "SELECT tenant, count(*), count(*) FILTER (WHERE ts >= %s) FROM {}"
                    " GROUP BY tenant ORDER BY tenant"
                ).format(self._table("readings")),
                (since,),
            )
            tenants = [TenantUsage(t, int(n), int(recent)) for t, n, recent in cur.fetchall()]
        return StorageUsage(used, None, tenants)

    def count(self, tenant: str | None = None) -> int:
        query = sql.SQL("SELECT count(*) FROM {}").format(self._table("readings"))
        params: tuple[object, ...] = ()
        if tenant is not None:
            query = sql.SQL("{} WHERE tenant = %s").format(query)
            params = (tenant,)
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
