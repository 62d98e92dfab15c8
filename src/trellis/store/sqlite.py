"""The embedded time-series backend: one SQLite file in WAL mode.

Chosen over DuckDB for the embedded default (measured, see DESIGN.md): SQLite
takes batched inserts at several hundred thousand rows/s through ``executemany``
while DuckDB's ``executemany`` manages ~1.4k rows/s, and a DuckDB file opened
read-write locks every other process out, which would stop ``trellis`` CLI
commands from reading while the platform runs.

The readings table is a ``WITHOUT ROWID`` table clustered on its primary key
(tenant, device, metric, ts): the key is also the only index, every range query
is one index seek, and ``INSERT OR IGNORE`` makes writes idempotent for free.
A small ``series`` table lists the series, so "latest value per metric" is one seek
per series to the end of its key range, not a scan.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from collections.abc import Sequence
from operator import itemgetter
from pathlib import Path

from msgspec.structs import astuple

from trellis.core.errors import ClosedError, SchemaError, StoreError, WriteRefusedError
from trellis.core.types import Reading
from trellis.store.base import (
    MIN_TS,
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

__all__ = ["SQLiteTimeSeriesStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    tenant TEXT NOT NULL,
    device TEXT NOT NULL,
    metric TEXT NOT NULL,
    ts INTEGER NOT NULL,
    value REAL NOT NULL,
    unit TEXT,
    quality INTEGER NOT NULL,
    seq INTEGER,
    source_msg TEXT,
    PRIMARY KEY (tenant, device, metric, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series (
    tenant TEXT NOT NULL,
    device TEXT NOT NULL,
    metric TEXT NOT NULL,
    PRIMARY KEY (tenant, device, metric)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup_1m (
    tenant TEXT NOT NULL,
    device TEXT NOT NULL,
    metric TEXT NOT NULL,
    minute INTEGER NOT NULL,
    count INTEGER NOT NULL,
    sum REAL NOT NULL,
    min REAL NOT NULL,
    max REAL NOT NULL,
    first_ts INTEGER NOT NULL,
    first REAL NOT NULL,
    last_ts INTEGER NOT NULL,
    last REAL NOT NULL,
    PRIMARY KEY (tenant, device, metric, minute)
) WITHOUT ROWID;
-- Device-minutes written since their rollup rows were last computed (see _REFRESH_ROLLUP).
CREATE TABLE IF NOT EXISTS rollup_pending (
    tenant TEXT NOT NULL,
    device TEXT NOT NULL,
    minute INTEGER NOT NULL,
    PRIMARY KEY (tenant, device, minute)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
"""

_INSERT = "INSERT OR IGNORE INTO readings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
# Only a new series writes a page; a known one is a read of a cached page.
_ADD_SERIES = "INSERT OR IGNORE INTO series VALUES (?, ?, ?)"
# Version 3 keeps no newest timestamp per series: updating it cost 40 % of a write.
_MIGRATE_SERIES = """
CREATE TABLE series_v3 (
    tenant TEXT NOT NULL,
    device TEXT NOT NULL,
    metric TEXT NOT NULL,
    PRIMARY KEY (tenant, device, metric)
) WITHOUT ROWID;
INSERT INTO series_v3 SELECT tenant, device, metric FROM series;
DROP TABLE series;
ALTER TABLE series_v3 RENAME TO series;
"""
# Rows older than the raw floor (see _RAW_FLOOR) merge into the rollup one by one.
_MERGE_ROLLUP = """
INSERT INTO rollup_1m VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (tenant, device, metric, minute) DO UPDATE SET
    count = count + 1,
    sum = sum + excluded.sum,
    min = min(min, excluded.min),
    max = max(max, excluded.max),
    first = CASE WHEN excluded.first_ts < first_ts THEN excluded.first ELSE first END,
    first_ts = min(first_ts, excluded.first_ts),
    last = CASE WHEN excluded.last_ts > last_ts THEN excluded.last ELSE last END,
    last_ts = max(last_ts, excluded.last_ts)
"""
_MARK_PENDING = "INSERT OR IGNORE INTO rollup_pending VALUES (?, ?, ?)"
# Recomputes the rollup rows of pending device-minutes from the readings, which are
# complete there (see _RAW_FLOOR): set-based, one seek per series and minute, and a
# replayed or late reading is counted exactly as often as it is stored, once. Going
# through ``series`` keeps every readings lookup on its key prefix; CROSS JOIN fixes
# that order (the planner otherwise prefers scanning readings).
_REFRESH_ROLLUP = """
WITH p AS MATERIALIZED (SELECT tenant, device, minute FROM rollup_pending WHERE {where}),
m AS (
    SELECT r.tenant, r.device, r.metric, p.minute, count(*) AS n, sum(r.value) AS s,
           min(r.value) AS lo, max(r.value) AS hi, min(r.ts) AS fts, max(r.ts) AS lts
    FROM p
    CROSS JOIN series s ON s.tenant = p.tenant AND s.device = p.device
    CROSS JOIN readings r ON r.tenant = s.tenant AND r.device = s.device AND r.metric = s.metric
        AND r.ts >= p.minute AND r.ts < p.minute + 60000
    GROUP BY r.tenant, r.device, r.metric, p.minute
)
INSERT OR REPLACE INTO rollup_1m
SELECT m.tenant, m.device, m.metric, m.minute, m.n, m.s, m.lo, m.hi, m.fts, f.value, m.lts, l.value
FROM m
JOIN readings f ON f.tenant = m.tenant AND f.device = m.device AND f.metric = m.metric
    AND f.ts = m.fts
JOIN readings l ON l.tenant = m.tenant AND l.device = m.device AND l.metric = m.metric
    AND l.ts = m.lts
"""
# Minutes below the raw floor may have lost readings to retention, so their rollup
# cannot be recomputed from readings: rows there take the one-by-one merge instead.
# It is the newest retention cut, rounded up to a minute, and only ever grows.
_RAW_FLOOR = "raw_floor"
# Bumped by every delete that may remove series, so each process's cache of series
# known to exist (which spares a lookup per series per batch) is dropped in time.
_SERIES_GENERATION = "series_generation"
# first/last use SQLite's documented bare-column rule: with a single min()/max() in
# the select list, a bare column takes its value from the row holding that extreme.
_AGGREGATES = {
    Aggregate.AVG: "avg(value)",
    Aggregate.MIN: "min(value)",
    Aggregate.MAX: "max(value)",
    Aggregate.SUM: "sum(value)",
    Aggregate.COUNT: "count(*)",
    Aggregate.FIRST: "value, min(ts)",
    Aggregate.LAST: "value, max(ts)",
}
# Version 1 files have readings but no rollup: build it once, when upgrading.
_BACKFILL_ROLLUP = """
WITH m AS (
    SELECT tenant, device, metric, ts - ts % 60000 AS minute, count(*) AS n, sum(value) AS s,
           min(value) AS lo, max(value) AS hi, min(ts) AS fts, max(ts) AS lts
    FROM readings GROUP BY tenant, device, metric, minute
)
INSERT OR REPLACE INTO rollup_1m
SELECT m.tenant, m.device, m.metric, m.minute, m.n, m.s, m.lo, m.hi, m.fts, f.value, m.lts, l.value
FROM m
JOIN readings f ON f.tenant = m.tenant AND f.device = m.device AND f.metric = m.metric
    AND f.ts = m.fts
JOIN readings l ON l.tenant = m.tenant AND l.device = m.device AND l.metric = m.metric
    AND l.ts = m.lts
"""
_ROLLUP_AGGREGATES = {
    Aggregate.AVG: "sum(sum) / sum(count)",
    Aggregate.MIN: "min(min)",
    Aggregate.MAX: "max(max)",
    Aggregate.SUM: "sum(sum)",
    Aggregate.COUNT: "sum(count)",
    Aggregate.FIRST: "first, min(first_ts)",
    Aggregate.LAST: "last, max(last_ts)",
}
# A whole-minute aggregate without writing: rollup rows where the minute is settled,
# and the same figures computed from the readings for the device's pending minutes
# (a few, recent, one key-range seek each). Readers never take the write lock.
_ROLLUP_READ = """
WITH p AS MATERIALIZED (
    SELECT minute FROM rollup_pending
    WHERE tenant = :t AND device = :d AND minute >= :s AND minute < :e
),
raw AS MATERIALIZED (
    SELECT p.minute, count(*) AS n, sum(x.value) AS s, min(x.value) AS lo, max(x.value) AS hi,
           min(x.ts) AS fts, max(x.ts) AS lts
    FROM p CROSS JOIN readings x ON x.tenant = :t AND x.device = :d AND x.metric = :m
        AND x.ts >= p.minute AND x.ts < p.minute + 60000
    GROUP BY p.minute
),
src AS (
    SELECT minute, count, sum, min, max, first_ts, first, last_ts, last FROM rollup_1m
    WHERE tenant = :t AND device = :d AND metric = :m AND minute >= :s AND minute < :e
        AND minute NOT IN (SELECT minute FROM p)
    UNION ALL
    SELECT minute, n, s, lo, hi,
        fts, (SELECT value FROM readings WHERE tenant = :t AND device = :d AND metric = :m
              AND ts = fts),
        lts, (SELECT value FROM readings WHERE tenant = :t AND device = :d AND metric = :m
              AND ts = lts)
    FROM raw
)
SELECT (minute / :b) * :b AS bucket, {expression} FROM src GROUP BY bucket ORDER BY bucket
"""
# One seek at the end of the series' key range (SQLite's max() optimisation).
_NEWEST_TS = (
    "SELECT max(ts) FROM readings x WHERE x.tenant = s.tenant AND x.device = s.device"
    " AND x.metric = s.metric"
)
# A device list travels as one JSON parameter, so there is no bound-parameter limit.
_DEVICES = "device IN (SELECT value FROM json_each(?))"
# 2: rollup_1m and its trigger; 3: the rollup refreshed per batch from rollup_pending
_SCHEMA_VERSION = 3
_SERIES_OF, _DEVICE_OF, _TS_OF = itemgetter(0, 1, 2), itemgetter(0, 1), itemgetter(3)
#: Pages of new files: 16 KiB pages doubled key-ordered inserts of 10,000 series
#: arriving time-major (fewer, fuller leaves to split), measured in bench/storage.py.
_PAGE_SIZE = 16_384


class SQLiteTimeSeriesStore:
    """Readings in one SQLite file; one connection per thread, WAL for concurrent reads."""

    def __init__(self, path: Path | str) -> None:
        self._path = str(path)
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._known_series: set[tuple[str, str, str]] = set()
        self._names_ok: set[tuple[str, str, str, str | None]] = set()
        self._series_generation = -1
        connection = self._connection()
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > _SCHEMA_VERSION:
            self.close()
            raise SchemaError(
                f"{self._path} has time-series schema version {version}, newer than "
                f"{_SCHEMA_VERSION}; upgrade Trellis to read it"
            )
        with connection:
            connection.executescript(_SCHEMA)
            connection.execute("DROP TRIGGER IF EXISTS readings_rollup_1m")
            if version in (1, 2):
                for statement in _MIGRATE_SERIES.split(";"):
                    if statement.strip():
                        connection.execute(statement)
            if version == 1:
                connection.execute(_BACKFILL_ROLLUP)
            connection.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise ClosedError("the time-series store is closed")
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
            connection.execute(f"PRAGMA page_size={_PAGE_SIZE}")  # only a new file takes it
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA busy_timeout=10000")
            connection.execute("PRAGMA cache_size=-65536")
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def write(self, readings: Sequence[Reading]) -> WriteResult:
        readings, rejected = split_valid(readings, self._names_ok)
        if not readings:
            self._connection()  # a closed store raises even for an empty batch
            return WriteResult(0, rejected)
        # Field order of Reading is the column order of the table.
        rows = [astuple(r) for r in readings]
        # itemgetter and map keep these per-row passes in C.
        series = set(map(_SERIES_OF, rows))
        oldest, newest = min(map(_TS_OF, rows)), max(map(_TS_OF, rows))
        newest_minute = newest - newest % ROLLUP_MS
        if oldest >= newest_minute:  # the usual batch: one minute of every device in it
            minutes = {(t, d, newest_minute) for t, d in set(map(_DEVICE_OF, rows))}
        else:
            minutes = {(r.tenant, r.device, r.ts - r.ts % ROLLUP_MS) for r in readings}
        connection = self._connection()
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                generation = self._meta(connection, _SERIES_GENERATION, 0)
                with self._lock:
                    if generation != self._series_generation:
                        self._known_series.clear()
                        self._series_generation = generation
                    new_series = sorted(series - self._known_series)
                floor = self._meta(connection, _RAW_FLOOR, MIN_TS)
                if oldest < floor:
                    inserted = self._insert_below_floor(connection, rows, floor)
                    rows = [row for row in rows if row[3] >= floor]
                    minutes = {m for m in minutes if m[2] >= floor}
                else:
                    inserted = 0
                # rowcount sums sqlite3_changes() per row: the rows really inserted.
                inserted += connection.executemany(_INSERT, rows).rowcount
                connection.executemany(_ADD_SERIES, new_series)
                connection.executemany(_MARK_PENDING, sorted(minutes))
                # Minutes before this batch's newest are (mostly) complete: roll them up
                # now, once per device-minute rather than once per reading.
                self._refresh_rollup(connection, "minute < ?", [newest_minute])
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            with self._lock:
                if generation == self._series_generation:
                    self._known_series.update(new_series)
        except (sqlite3.IntegrityError, sqlite3.DataError) as exc:  # a constraint or trigger
            raise WriteRefusedError(f"{self._path} refused a reading: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"writing {len(rows)} readings to {self._path} failed: {exc}") from exc
        return WriteResult(inserted, rejected)

    @staticmethod
    def _meta(connection: sqlite3.Connection, key: str, default: int) -> int:
        row = connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else default

    @staticmethod
    def _insert_below_floor(
        connection: sqlite3.Connection, rows: list[tuple[object, ...]], floor: int
    ) -> int:
        """Insert the rows older than the raw floor one by one, merging each new one into
        the rollup (retention may have removed the readings its minute was built from)."""
        inserted = 0
        for row in rows:
            tenant, device, metric, ts, value = row[:5]
            assert isinstance(ts, int)
            if ts >= floor or connection.execute(_INSERT, row).rowcount == 0:
                continue
            inserted += 1
            minute = ts - ts % ROLLUP_MS
            merged = (tenant, device, metric, minute, value, value, value, ts, value, ts, value)
            connection.execute(_MERGE_ROLLUP, merged)
        return inserted

    @staticmethod
    def _refresh_rollup(connection: sqlite3.Connection, where: str, params: list[object]) -> None:
        """Recompute the rollup of the pending device-minutes matching ``where``; in the
        caller's write transaction."""
        connection.execute(_REFRESH_ROLLUP.format(where=where), params)
        connection.execute(f"DELETE FROM rollup_pending WHERE {where}", params)

    def query(
        self, tenant: str, device: str, metric: str, start: int, end: int, limit: int = 10_000
    ) -> list[Point]:
        cursor = self._connection().execute(
            "SELECT ts, value FROM readings WHERE tenant = ? AND device = ? AND metric = ?"
            " AND ts >= ? AND ts < ? ORDER BY ts LIMIT ?",
            (tenant, device, metric, start, end, limit),
        )
        return [Point(ts, value) for ts, value in cursor]

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
        if uses_rollup(start, end, bucket_ms):
            query = _ROLLUP_READ.format(expression=_ROLLUP_AGGREGATES[Aggregate(fn)])
        else:
            query = (
                f"SELECT (ts / :b) * :b AS bucket, {_AGGREGATES[Aggregate(fn)]} FROM readings"
                " WHERE tenant = :t AND device = :d AND metric = :m AND ts >= :s AND ts < :e"
                " GROUP BY bucket ORDER BY bucket"
            )
        params = {"b": bucket_ms, "t": tenant, "d": device, "m": metric, "s": start, "e": end}
        cursor = self._connection().execute(query, params)
        buckets = [Bucket(row[0], float(row[1])) for row in cursor]
        return fill_gaps(buckets, start, end, bucket_ms, fill)

    def latest(self, tenant: str, device: str) -> list[Latest]:
        return [Latest(d.metric, d.ts, d.value, d.unit) for d in self.latest_many(tenant, [device])]

    def latest_many(self, tenant: str, devices: Sequence[str] | None = None) -> list[DeviceLatest]:
        where, params = "s.tenant = ?", list[object]([tenant])
        if devices is not None:
            where += " AND s." + _DEVICES
            params.append(json.dumps(list(devices)))
        cursor = self._connection().execute(
            "SELECT s.device, s.metric, r.ts, r.value, r.unit FROM series s CROSS JOIN readings r"
            " ON r.tenant = s.tenant AND r.device = s.device AND r.metric = s.metric"
            f" AND r.ts = ({_NEWEST_TS}) WHERE {where} ORDER BY s.device, s.metric",
            params,
        )
        return [DeviceLatest(*row) for row in cursor]

    def delete_before(
        self, before: int, *, tenant: str | None = None, devices: Sequence[str] | None = None
    ) -> int:
        return self._delete("readings", "ts", before, tenant, devices)

    def delete_rollups_before(
        self, before: int, *, tenant: str | None = None, devices: Sequence[str] | None = None
    ) -> int:
        return self._delete("rollup_1m", "minute", before, tenant, devices)

    def _delete(
        self,
        table: str,
        column: str,
        before: int,
        tenant: str | None,
        devices: Sequence[str] | None,
    ) -> int:
        if devices is not None and tenant is None:
            raise ValueError("deleting by device needs the tenant the devices belong to")
        where, params = f"{column} < ?", list[object]([before])
        series_where = (
            "NOT EXISTS (SELECT 1 FROM readings r WHERE r.tenant = series.tenant"
            " AND r.device = series.device AND r.metric = series.metric)"
        )
        series_params: list[object] = []
        if tenant is not None:
            where += " AND tenant = ?"
            series_where += " AND tenant = ?"
            params.append(tenant)
            series_params.append(tenant)
        if devices is not None:
            where += " AND " + _DEVICES
            series_where += " AND " + _DEVICES
            params.append(json.dumps(list(devices)))
            series_params.append(json.dumps(list(devices)))
        connection = self._connection()
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                # Roll every pending minute up while its readings are all still there.
                self._refresh_rollup(connection, "1", [])
                deleted = connection.execute(f"DELETE FROM {table} WHERE {where}", params).rowcount
                if table == "readings":
                    connection.execute(f"DELETE FROM series WHERE {series_where}", series_params)
                    floor = max(
                        self._meta(connection, _RAW_FLOOR, MIN_TS),
                        -(-before // ROLLUP_MS) * ROLLUP_MS,
                    )
                    generation = self._meta(connection, _SERIES_GENERATION, 0) + 1
                    connection.executemany(
                        "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                        [(_RAW_FLOOR, floor), (_SERIES_GENERATION, generation)],
                    )
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"deleting readings from {self._path} failed: {exc}") from exc
        return deleted

    def usage(self, since: int) -> StorageUsage:
        cursor = self._connection().execute(
            "SELECT tenant, count(*), sum(ts >= ?) FROM readings GROUP BY tenant ORDER BY tenant",
            (since,),
        )
        tenants = [TenantUsage(t, int(n), int(recent or 0)) for t, n, recent in cursor]
        if self._path == ":memory:":
            return StorageUsage(0, None, tenants)
        path = Path(self._path)
        used = sum(
            file.stat().st_size
            for file in (
                path,
                path.with_name(path.name + "-wal"),
                path.with_name(path.name + "-shm"),
            )
            if file.exists()
        )
        return StorageUsage(used, shutil.disk_usage(path.parent).free, tenants)

    def count(self, tenant: str | None = None) -> int:
        if tenant is None:
            row = self._connection().execute("SELECT count(*) FROM readings").fetchone()
        else:
            row = (
                self._connection()
                .execute("SELECT count(*) FROM readings WHERE tenant = ?", (tenant,))
                .fetchone()
            )
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for connection in self._connections:
                connection.close()
            self._connections.clear()
