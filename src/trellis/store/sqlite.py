"""The embedded time-series backend: one SQLite file in WAL mode.

Chosen over DuckDB for the embedded default (measured, see DESIGN.md): SQLite
takes batched inserts at several hundred thousand rows/s through ``executemany``
while DuckDB's ``executemany`` manages ~1.4k rows/s, and a DuckDB file opened
read-write locks every other process out, which would stop ``trellis`` CLI
commands from reading while the platform runs.

The readings table is a ``WITHOUT ROWID`` table clustered on its primary key
(tenant, device, metric, ts): the key is also the only index, every range query
is one index seek, and ``INSERT OR IGNORE`` makes writes idempotent for free.
A small ``series`` table keeps each series' unit and newest timestamp so "latest
value per metric" is a join of a few rows, not a scan.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from msgspec.structs import astuple

from trellis.core.errors import ClosedError, SchemaError, StoreError
from trellis.core.types import Reading
from trellis.store.base import (
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
    unit TEXT,
    last_ts INTEGER NOT NULL,
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
-- Fires only for rows INSERT OR IGNORE actually inserted, so a redelivered reading
-- is never counted twice, and late data lands in its own minute.
CREATE TRIGGER IF NOT EXISTS readings_rollup_1m AFTER INSERT ON readings BEGIN
    INSERT INTO rollup_1m VALUES (
        NEW.tenant, NEW.device, NEW.metric, NEW.ts - NEW.ts % 60000, 1, NEW.value,
        NEW.value, NEW.value, NEW.ts, NEW.value, NEW.ts, NEW.value)
    ON CONFLICT (tenant, device, metric, minute) DO UPDATE SET
        count = count + 1,
        sum = sum + excluded.sum,
        min = min(min, excluded.min),
        max = max(max, excluded.max),
        first = CASE WHEN excluded.first_ts < first_ts THEN excluded.first ELSE first END,
        first_ts = min(first_ts, excluded.first_ts),
        last = CASE WHEN excluded.last_ts > last_ts THEN excluded.last ELSE last END,
        last_ts = max(last_ts, excluded.last_ts);
END;
"""

_INSERT = "INSERT OR IGNORE INTO readings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_UPSERT_SERIES = """
INSERT INTO series VALUES (?, ?, ?, ?, ?)
ON CONFLICT (tenant, device, metric) DO UPDATE SET
    unit = excluded.unit,
    last_ts = max(series.last_ts, excluded.last_ts)
"""
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
# A device list travels as one JSON parameter, so there is no bound-parameter limit.
_DEVICES = "device IN (SELECT value FROM json_each(?))"
_SCHEMA_VERSION = 2  # 2: rollup_1m and its trigger


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
            if version == 1:
                connection.execute(_BACKFILL_ROLLUP)
            connection.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise ClosedError("the time-series store is closed")
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA busy_timeout=10000")
            connection.execute("PRAGMA cache_size=-65536")
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def write(self, readings: Sequence[Reading]) -> WriteResult:
        readings, rejected = split_valid(readings)
        if not readings:
            self._connection()  # a closed store raises even for an empty batch
            return WriteResult(0, rejected)
        # Field order of Reading is the column order of the table.
        rows = [astuple(r) for r in readings]
        newest: dict[tuple[str, str, str], tuple[str | None, int]] = {}
        for r in readings:
            key = (r.tenant, r.device, r.metric)
            seen = newest.get(key)
            if seen is None or r.ts > seen[1]:
                newest[key] = (r.unit, r.ts)
        series = [(t, d, m, unit, ts) for (t, d, m), (unit, ts) in newest.items()]
        connection = self._connection()
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                # rowcount sums sqlite3_changes() per row: direct inserts only, not
                # the rollup trigger's writes (which total_changes would include).
                inserted = connection.executemany(_INSERT, rows).rowcount
                connection.executemany(_UPSERT_SERIES, series)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"writing {len(rows)} readings to {self._path} failed: {exc}") from exc
        return WriteResult(inserted, rejected)

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
            expression, table, column = _ROLLUP_AGGREGATES[Aggregate(fn)], "rollup_1m", "minute"
        else:
            expression, table, column = _AGGREGATES[Aggregate(fn)], "readings", "ts"
        cursor = self._connection().execute(
            f"SELECT ({column} / ?) * ? AS bucket, {expression} FROM {table}"
            f" WHERE tenant = ? AND device = ? AND metric = ? AND {column} >= ? AND {column} < ?"
            " GROUP BY bucket ORDER BY bucket",
            (bucket_ms, bucket_ms, tenant, device, metric, start, end),
        )
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
            "SELECT s.device, s.metric, r.ts, r.value, r.unit FROM series s JOIN readings r"
            " ON r.tenant = s.tenant AND r.device = s.device AND r.metric = s.metric"
            f" AND r.ts = s.last_ts WHERE {where} ORDER BY s.device, s.metric",
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
        series_where = "last_ts < ?"
        if tenant is not None:
            where += " AND tenant = ?"
            series_where += " AND tenant = ?"
            params.append(tenant)
        if devices is not None:
            where += " AND " + _DEVICES
            series_where += " AND " + _DEVICES
            params.append(json.dumps(list(devices)))
        connection = self._connection()
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                deleted = connection.execute(f"DELETE FROM {table} WHERE {where}", params).rowcount
                if table == "readings":
                    connection.execute(f"DELETE FROM series WHERE {series_where}", params)
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
