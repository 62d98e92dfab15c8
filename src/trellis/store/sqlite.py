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
    WriteResult,
    check_buckets,
    fill_gaps,
    split_valid,
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
# A device list travels as one JSON parameter, so there is no bound-parameter limit.
_DEVICES = "device IN (SELECT value FROM json_each(?))"
_SCHEMA_VERSION = 1


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
                before = connection.total_changes
                connection.executemany(_INSERT, rows)
                inserted = connection.total_changes - before
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
        expression = _AGGREGATES[Aggregate(fn)]
        cursor = self._connection().execute(
            f"SELECT (ts / ?) * ? AS bucket, {expression} FROM readings"
            " WHERE tenant = ? AND device = ? AND metric = ? AND ts >= ? AND ts < ?"
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
        if devices is not None and tenant is None:
            raise ValueError("deleting by device needs the tenant the devices belong to")
        where, params = "ts < ?", list[object]([before])
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
                deleted = connection.execute(f"DELETE FROM readings WHERE {where}", params).rowcount
                connection.execute(f"DELETE FROM series WHERE {series_where}", params)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"deleting readings from {self._path} failed: {exc}") from exc
        return deleted

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
