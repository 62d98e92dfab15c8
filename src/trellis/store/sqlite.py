"""The embedded time-series backend: one SQLite file in WAL mode.

Chosen over DuckDB for the embedded default (measured, see DESIGN.md): SQLite
takes batched inserts at several hundred thousand rows/s through ``executemany``
while DuckDB's ``executemany`` manages ~1.4k rows/s, and a DuckDB file opened
read-write locks every other process out, which would stop ``trellis`` CLI
commands from reading while the platform runs.

Readings live in ``points``, a ``WITHOUT ROWID`` table clustered on
(series_id, ts): the key is also the only index, every range query is one index
seek, and ``INSERT OR IGNORE`` makes writes idempotent for free. ``series`` gives
each (tenant, device, metric) its integer id once; keys of two integers instead of
three names made a batch's inserts 1.5× faster (smaller rows, cheaper comparisons,
measured in bench/storage.py), and the store caches the ids so a known series costs
one dict lookup per reading. ``readings`` is a view with the names joined back, for
people and tools reading the file. "Latest value per metric" is one seek per series
to the end of its key range, not a scan.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from collections.abc import Sequence
from operator import attrgetter
from pathlib import Path

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

# Tables every version has (created when missing, so an old file gains them).
_COMMON = """
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
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID
"""
# Version 4: readings keyed by series id. AUTOINCREMENT never hands a deleted series'
# id to another, so an id cached by a writer can never name someone else's series.
_SERIES_AND_POINTS = """
CREATE TABLE series (
    series_id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    device TEXT NOT NULL,
    metric TEXT NOT NULL,
    UNIQUE (tenant, device, metric)
);
CREATE TABLE points (
    series_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    value REAL NOT NULL,
    unit TEXT,
    quality INTEGER NOT NULL,
    seq INTEGER,
    source_msg TEXT,
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID;
CREATE VIEW readings AS
    SELECT s.tenant, s.device, s.metric, p.ts, p.value, p.unit, p.quality, p.seq, p.source_msg
    FROM points p JOIN series s ON s.series_id = p.series_id
"""
# Versions 1-3 keyed readings by their names: move them under series ids, in key order.
_MIGRATE_TO_4 = """
ALTER TABLE readings RENAME TO readings_v3;
DROP TABLE IF EXISTS series;
{create};
INSERT INTO series (tenant, device, metric)
    SELECT DISTINCT tenant, device, metric FROM readings_v3 ORDER BY 1, 2, 3;
INSERT INTO points
    SELECT s.series_id, r.ts, r.value, r.unit, r.quality, r.seq, r.source_msg
    FROM readings_v3 r JOIN series s
        ON s.tenant = r.tenant AND s.device = r.device AND s.metric = r.metric
    ORDER BY s.series_id, r.ts;
DROP TABLE readings_v3
""".format(create=_SERIES_AND_POINTS.replace(";", ";\n"))

_INSERT = "INSERT OR IGNORE INTO points VALUES (?, ?, ?, ?, ?, ?, ?)"
_SERIES_ID = "SELECT series_id FROM series WHERE tenant = ? AND device = ? AND metric = ?"
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
# through ``series`` keeps every points lookup on its key prefix; CROSS JOIN fixes
# that order (the planner otherwise prefers scanning points).
_REFRESH_ROLLUP = """
WITH p AS MATERIALIZED (SELECT tenant, device, minute FROM rollup_pending WHERE {where}),
m AS (
    SELECT s.series_id, s.tenant, s.device, s.metric, p.minute, count(*) AS n,
           sum(x.value) AS s, min(x.value) AS lo, max(x.value) AS hi,
           min(x.ts) AS fts, max(x.ts) AS lts
    FROM p
    CROSS JOIN series s ON s.tenant = p.tenant AND s.device = p.device
    CROSS JOIN points x ON x.series_id = s.series_id
        AND x.ts >= p.minute AND x.ts < p.minute + 60000
    GROUP BY s.series_id, p.minute
)
INSERT OR REPLACE INTO rollup_1m
SELECT m.tenant, m.device, m.metric, m.minute, m.n, m.s, m.lo, m.hi, m.fts, f.value, m.lts, l.value
FROM m
JOIN points f ON f.series_id = m.series_id AND f.ts = m.fts
JOIN points l ON l.series_id = m.series_id AND l.ts = m.lts
"""
# Minutes below the raw floor may have lost readings to retention, so their rollup
# cannot be recomputed from readings: rows there take the one-by-one merge instead.
# It is the newest retention cut, rounded up to a minute, and only ever grows.
_RAW_FLOOR = "raw_floor"
# Bumped by every delete that may remove series, so each process's cache of series
# ids (which spares a lookup per series per batch) is dropped in time.
_SERIES_GENERATION = "series_generation"
# The id of the series a query names, as a scalar subquery: one index seek.
_THE_SERIES = "(SELECT series_id FROM series WHERE tenant = :t AND device = :d AND metric = :m)"
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
# Files without a rollup (version 1), and bulk loads, build it in one pass.
_BACKFILL_ROLLUP = """
WITH m AS (
    SELECT series_id, ts - ts % 60000 AS minute, count(*) AS n, sum(value) AS s,
           min(value) AS lo, max(value) AS hi, min(ts) AS fts, max(ts) AS lts
    FROM points GROUP BY series_id, minute
)
INSERT OR REPLACE INTO rollup_1m
SELECT s.tenant, s.device, s.metric, m.minute, m.n, m.s, m.lo, m.hi, m.fts, f.value, m.lts,
       l.value
FROM m
JOIN series s ON s.series_id = m.series_id
JOIN points f ON f.series_id = m.series_id AND f.ts = m.fts
JOIN points l ON l.series_id = m.series_id AND l.ts = m.lts
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
sid AS MATERIALIZED (SELECT series_id FROM series WHERE tenant = :t AND device = :d
    AND metric = :m),
raw AS MATERIALIZED (
    SELECT p.minute, count(*) AS n, sum(x.value) AS s, min(x.value) AS lo, max(x.value) AS hi,
           min(x.ts) AS fts, max(x.ts) AS lts
    FROM p CROSS JOIN sid CROSS JOIN points x ON x.series_id = sid.series_id
        AND x.ts >= p.minute AND x.ts < p.minute + 60000
    GROUP BY p.minute
),
src AS (
    SELECT minute, count, sum, min, max, first_ts, first, last_ts, last FROM rollup_1m
    WHERE tenant = :t AND device = :d AND metric = :m AND minute >= :s AND minute < :e
        AND minute NOT IN (SELECT minute FROM p)
    UNION ALL
    SELECT minute, n, s, lo, hi,
        fts, (SELECT value FROM points WHERE series_id = (SELECT series_id FROM sid)
              AND ts = fts),
        lts, (SELECT value FROM points WHERE series_id = (SELECT series_id FROM sid)
              AND ts = lts)
    FROM raw
)
SELECT (minute / :b) * :b AS bucket, {expression} FROM src GROUP BY bucket ORDER BY bucket
"""
# One seek at the end of the series' key range (SQLite's max() optimisation).
_NEWEST_TS = "SELECT max(ts) FROM points x WHERE x.series_id = s.series_id"
# A device list travels as one JSON parameter, so there is no bound-parameter limit.
_DEVICES = "device IN (SELECT value FROM json_each(?))"
# 2: rollup_1m and its trigger; 3: the rollup refreshed per batch from rollup_pending;
# 4: readings keyed by series id (points), names in series
_SCHEMA_VERSION = 4
_SERIES_OF = attrgetter("tenant", "device", "metric")
#: Pages of new files: 16 KiB pages doubled key-ordered inserts of 10,000 series
#: arriving time-major (fewer, fuller leaves to split), measured in bench/storage.py.
_PAGE_SIZE = 16_384


def _statements(script: str) -> list[str]:
    """The statements of a script without triggers (``;`` ends each one)."""
    return [s for s in script.split(";") if s.strip()]


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
        self._series_ids: dict[tuple[str, str, str], int] = {}
        self._names_ok: set[tuple[str, str, str, str | None]] = set()
        self._series_generation = -1
        connection = self._connection()
        try:
            self._upgrade(connection)
        except BaseException:
            self.close()
            raise

    def _upgrade(self, connection: sqlite3.Connection) -> None:
        """Create the schema of a new file, or bring an older one to this version, in one
        transaction (a second process opening the file waits, then finds it done)."""
        connection.execute("BEGIN IMMEDIATE")
        try:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise SchemaError(
                    f"{self._path} has time-series schema version {version}, newer than "
                    f"{_SCHEMA_VERSION}; upgrade Trellis to read it"
                )
            if version < _SCHEMA_VERSION:
                for statement in _statements(_COMMON):
                    connection.execute(statement)
                connection.execute("DROP TRIGGER IF EXISTS readings_rollup_1m")
                upgrade = _SERIES_AND_POINTS if version == 0 else _MIGRATE_TO_4
                for statement in _statements(upgrade):
                    connection.execute(statement)
                if version == 1:
                    connection.execute(_BACKFILL_ROLLUP)
                connection.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

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
        keys = list(map(_SERIES_OF, readings))
        oldest = min(r.ts for r in readings)
        newest = max(r.ts for r in readings)
        newest_minute = newest - newest % ROLLUP_MS
        if oldest >= newest_minute:  # the usual batch: one minute of every device in it
            minutes = {(t, d, newest_minute) for t, d, _ in set(keys)}
        else:
            minutes = {(r.tenant, r.device, r.ts - r.ts % ROLLUP_MS) for r in readings}
        connection = self._connection()
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                generation = self._meta(connection, _SERIES_GENERATION, 0)
                with self._lock:
                    if generation != self._series_generation:
                        self._series_ids.clear()
                        self._series_generation = generation
                    missing = set(keys).difference(self._series_ids)
                new_ids = self._add_series(connection, missing) if missing else {}
                ids = {**self._series_ids, **new_ids} if new_ids else self._series_ids
                # The columns of points, in order.
                rows = [
                    (ids[key], r.ts, r.value, r.unit, r.quality, r.seq, r.source_msg)
                    for key, r in zip(keys, readings, strict=True)
                ]
                floor = self._meta(connection, _RAW_FLOOR, MIN_TS)
                if oldest < floor:
                    inserted = self._insert_below_floor(connection, readings, rows, floor)
                    rows = [row for row in rows if row[1] >= floor]
                    minutes = {m for m in minutes if m[2] >= floor}
                else:
                    inserted = 0
                # rowcount sums sqlite3_changes() per row: the rows really inserted.
                inserted += connection.executemany(_INSERT, rows).rowcount
                connection.executemany(_MARK_PENDING, sorted(minutes))
                # Minutes before this batch's newest are (mostly) complete: roll them up
                # now, once per device-minute rather than once per reading.
                self._refresh_rollup(connection, "minute < ?", [newest_minute])
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            if new_ids:
                with self._lock:  # ids of a rolled-back batch never reach the cache
                    if generation == self._series_generation:
                        self._series_ids.update(new_ids)
        except (sqlite3.IntegrityError, sqlite3.DataError) as exc:  # a constraint or trigger
            raise WriteRefusedError(f"{self._path} refused a reading: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(
                f"writing {len(readings)} readings to {self._path} failed: {exc}"
            ) from exc
        return WriteResult(inserted, rejected)

    @staticmethod
    def _add_series(
        connection: sqlite3.Connection, keys: set[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], int]:
        """The ids of series this process has not cached, creating the new ones; in the
        caller's write transaction."""
        found: dict[tuple[str, str, str], int] = {}
        for key in sorted(keys):
            connection.execute(
                "INSERT OR IGNORE INTO series (tenant, device, metric) VALUES (?, ?, ?)", key
            )
            found[key] = connection.execute(_SERIES_ID, key).fetchone()[0]
        return found

    @staticmethod
    def _meta(connection: sqlite3.Connection, key: str, default: int) -> int:
        row = connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else default

    @staticmethod
    def _insert_below_floor(
        connection: sqlite3.Connection,
        readings: list[Reading],
        rows: list[tuple[object, ...]],
        floor: int,
    ) -> int:
        """Insert the rows older than the raw floor one by one, merging each new one into
        the rollup (retention may have removed the readings its minute was built from)."""
        inserted = 0
        for reading, row in zip(readings, rows, strict=True):
            ts, value = reading.ts, reading.value
            if ts >= floor or connection.execute(_INSERT, row).rowcount == 0:
                continue
            inserted += 1
            minute = ts - ts % ROLLUP_MS
            merged = (*_SERIES_OF(reading), minute, value, value, value, ts, value, ts, value)
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
            f"SELECT ts, value FROM points WHERE series_id = {_THE_SERIES}"
            " AND ts >= :s AND ts < :e ORDER BY ts LIMIT :n",
            {"t": tenant, "d": device, "m": metric, "s": start, "e": end, "n": limit},
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
                f"SELECT (ts / :b) * :b AS bucket, {_AGGREGATES[Aggregate(fn)]} FROM points"
                f" WHERE series_id = {_THE_SERIES} AND ts >= :s AND ts < :e"
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
            "SELECT s.device, s.metric, r.ts, r.value, r.unit FROM series s CROSS JOIN points r"
            f" ON r.series_id = s.series_id AND r.ts = ({_NEWEST_TS})"
            f" WHERE {where} ORDER BY s.device, s.metric",
            params,
        )
        return [DeviceLatest(*row) for row in cursor]

    def delete_before(
        self, before: int, *, tenant: str | None = None, devices: Sequence[str] | None = None
    ) -> int:
        return self._delete("points", "ts", before, tenant, devices)

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
        names, params = "1", list[object]()
        if tenant is not None:
            names += " AND tenant = ?"
            params.append(tenant)
        if devices is not None:
            names += " AND " + _DEVICES
            params.append(json.dumps(list(devices)))
        if table == "points":
            where = f"ts < ? AND series_id IN (SELECT series_id FROM series WHERE {names})"
        else:
            where = f"minute < ? AND {names}"
        connection = self._connection()
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                # Roll every pending minute up while its readings are all still there.
                self._refresh_rollup(connection, "1", [])
                deleted = connection.execute(
                    f"DELETE FROM {table} WHERE {where}", [before, *params]
                ).rowcount
                if table == "points":
                    connection.execute(
                        "DELETE FROM series WHERE NOT EXISTS (SELECT 1 FROM points p"
                        f" WHERE p.series_id = series.series_id) AND {names}",
                        params,
                    )
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
            "SELECT s.tenant, count(*), sum(p.ts >= ?) FROM points p"
            " JOIN series s ON s.series_id = p.series_id GROUP BY s.tenant ORDER BY s.tenant",
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
            row = self._connection().execute("SELECT count(*) FROM points").fetchone()
        else:
            row = (
                self._connection()
                .execute(
                    "SELECT count(*) FROM points WHERE series_id IN"
                    " (SELECT series_id FROM series WHERE tenant = ?)",
                    (tenant,),
                )
                .fetchone()
            )
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for connection in self._connections:
                connection.close()
            self._connections.clear()
