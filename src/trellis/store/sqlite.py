"""The embedded time-series backend: one SQLite file in WAL mode.

Chosen over DuckDB for the embedded default (measured, see DESIGN.md): SQLite
takes batched inserts at several hundred thousand rows/s through ``executemany``
while DuckDB's ``executemany`` manages ~1.4k rows/s, and a DuckDB file opened
read-write locks every other process out, which would stop ``trellis`` CLI
commands from reading while the platform runs.

Readings live in ``points``, a ``WITHOUT ROWID`` table clustered on
(series_id, ts): the key is also the only index and every range query is one index
seek. ``series`` gives each (tenant, device, metric) its integer id once; keys of two
integers instead of three names made inserts 1.5× faster (smaller rows, cheaper
comparisons), and the store caches the ids, so a known series costs one dict lookup
per reading.

Writes land in ``landing``, a small table of the same shape, and are merged into
``points`` in bulk (:data:`_MERGE_ROWS` at a time, by the write that fills it, and by
:meth:`SQLiteTimeSeriesStore.compact`). A fleet reports time-major (every series at
one instant) while ``points`` is series-major, so a batch written straight into it
dirtied about one page per series and rewrote them all at each commit (measured:
two thirds of the write time); ``landing`` stays a few hundred pages, and a merge
writes each series' page once for many batches. Every read combines both tables,
which never hold the same key: a write checks ``points`` for a row's key unless the
row is newer than everything merged for its series (cached per process), and
``INSERT OR IGNORE`` into ``landing`` drops the rest. ``readings`` is a view of both
with the names joined back, for people and tools reading the file. "Latest value per
metric" is one seek per series and table to the end of its key range, not a scan.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from operator import attrgetter
from pathlib import Path

from trellis.core.errors import ClosedError, SchemaError, StoreError, WriteRefusedError
from trellis.core.types import Quality, Reading
from trellis.store.base import (
    MIN_TS,
    ROLLUP_MS,
    Aggregate,
    Bucket,
    DeviceLatest,
    Fill,
    Latest,
    Point,
    RejectedReading,
    StorageUsage,
    TenantUsage,
    WriteResult,
    check_buckets,
    fill_gaps,
    numbers_in_range,
    split_valid,
    uses_rollup,
)

__all__ = ["SQLiteTimeSeriesStore"]

log = logging.getLogger(__name__)

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
CREATE TABLE landing (
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
    FROM (SELECT * FROM points UNION ALL SELECT * FROM landing) p
    JOIN series s ON s.series_id = p.series_id
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

# A row newer than everything merged for its series cannot be in points: it takes
# _LAND. Any other row lands only if points does not hold its key (replays, late data):
# _LAND_CHECKED. ``{values}`` is landing's columns as _landing_columns makes them.
_LAND = "INSERT OR IGNORE INTO landing VALUES ({values})"
_LAND_CHECKED = (
    "INSERT OR IGNORE INTO landing SELECT {values}"
    " WHERE NOT EXISTS (SELECT 1 FROM points WHERE series_id = ?1 AND ts = ?2)"
)
#: Rows ``landing`` takes before a write merges it into ``points``. Measured: 100,000
#: to 200,000 rows keep the merge's share of a write small and ``landing`` a few MB.
_MERGE_ROWS = 200_000
# Both key-ordered, so the merge walks points once, front to back.
_MERGE = ("INSERT OR IGNORE INTO points SELECT * FROM landing", "DELETE FROM landing")
# Each series' newest timestamp in points, for the per-process cache (see write).
_MERGED_NEWEST = (
    "SELECT s.series_id, s.tenant, s.device, s.metric,"
    " (SELECT max(ts) FROM points p WHERE p.series_id = s.series_id) FROM series s"
)
# The ids of the series a JSON array of [tenant, device, metric] names.
_SERIES_IDS = (
    "SELECT s.series_id, s.tenant, s.device, s.metric FROM json_each(?) k CROSS JOIN series s"
    " ON s.tenant = k.value ->> 0 AND s.device = k.value ->> 1 AND s.metric = k.value ->> 2"
)
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
# complete there (see _RAW_FLOOR): set-based, a few seeks per series and minute, and a
# replayed or late reading is counted exactly as often as it is stored, once. The join
# runs in rollup_pending's key order and then series' (tenant, device, metric) index,
# so each branch's rows arrive grouped and GROUP BY needs no sort of the raw readings
# (grouping by series_id did: a temp B-tree of every reading, 20 % of the statement);
# CROSS JOIN fixes that order (the planner otherwise prefers scanning points).
_REFRESH_ROLLUP = """
WITH parts AS (
    SELECT p.tenant, p.device, p.minute, s.metric, s.series_id, count(*) AS n,
           sum(x.value) AS s, min(x.value) AS lo, max(x.value) AS hi,
           {edges_in_points}
    FROM rollup_pending p CROSS JOIN series s ON s.tenant = p.tenant AND s.device = p.device
    CROSS JOIN points x ON x.series_id = s.series_id
        AND x.ts >= p.minute AND x.ts < p.minute + 60000
    WHERE {where}
    GROUP BY p.tenant, p.device, p.minute, s.metric
    UNION ALL
    SELECT p.tenant, p.device, p.minute, s.metric, s.series_id, count(*), sum(x.value),
           min(x.value), max(x.value), {edges_in_landing}
    FROM rollup_pending p CROSS JOIN series s ON s.tenant = p.tenant AND s.device = p.device
    CROSS JOIN landing x ON x.series_id = s.series_id
        AND x.ts >= p.minute AND x.ts < p.minute + 60000
    WHERE {where}
    GROUP BY p.tenant, p.device, p.minute, s.metric
),
m AS (
    SELECT tenant, device, metric, minute, series_id, sum(n) AS n, sum(s) AS s,
           min(lo) AS lo, max(hi) AS hi, min(fts) AS fts, max(lts) AS lts
    FROM parts GROUP BY tenant, device, metric, minute
)
INSERT OR REPLACE INTO rollup_1m
SELECT tenant, device, metric, minute, n, s, lo, hi, fts, {value_at_fts}, lts, {value_at_lts}
FROM m
"""
# A group's first and last timestamps, each one seek to an end of its key range
# (SQLite's min/max optimisation) instead of two more aggregates over every reading:
# 10-20 % of the refresh, measured on a 600,000-reading minute.
_EDGES = (
    "(SELECT min(ts) FROM {table} y WHERE y.series_id = s.series_id AND y.ts >= p.minute"
    " AND y.ts < p.minute + 60000) AS fts,"
    " (SELECT max(ts) FROM {table} y WHERE y.series_id = s.series_id AND y.ts >= p.minute"
    " AND y.ts < p.minute + 60000) AS lts"
)
_REFRESH_ROLLUP = _REFRESH_ROLLUP.replace(
    "{edges_in_points}", _EDGES.format(table="points")
).replace("{edges_in_landing}", _EDGES.format(table="landing"))
# The value of a series (``m.series_id``) at a timestamp, from whichever table holds it.
_VALUE_AT = (
    "coalesce((SELECT value FROM points WHERE series_id = m.series_id AND ts = m.{ts}),"
    " (SELECT value FROM landing WHERE series_id = m.series_id AND ts = m.{ts}))"
)
_REFRESH_ROLLUP = _REFRESH_ROLLUP.replace("{value_at_fts}", _VALUE_AT.format(ts="fts")).replace(
    "{value_at_lts}", _VALUE_AT.format(ts="lts")
)
# Minutes below the raw floor may have lost readings to retention, so their rollup
# cannot be recomputed from readings: rows there take the one-by-one merge instead.
# It is the newest retention cut, rounded up to a minute, and only ever grows.
_RAW_FLOOR = "raw_floor"
# Bumped by every merge and every delete that may remove series, so each process's
# caches (series ids, newest merged timestamps) are dropped in time.
_SERIES_GENERATION = "series_generation"
# Bumped by every refresh that removes rollup_pending marks, so each process's cache of
# the marks it made is dropped in time.
_ROLLUP_REFRESHES = "rollup_refreshes"
#: Minutes whose marks a process caches at most (a batch usually holds one).
_MARKED_MINUTES = 4
# Rows in landing (counted by the writes), so a write knows when to merge.
_LANDING_ROWS = "landing_rows"
# The id of the series a query names, as a scalar subquery: one index seek.
_THE_SERIES = "(SELECT series_id FROM series WHERE tenant = :t AND device = :d AND metric = :m)"
# The readings of that series in [:s, :e), from both tables (never the same key twice).
_SERIES_RANGE = (
    f"(SELECT ts, value FROM points WHERE series_id = {_THE_SERIES} AND ts >= :s AND ts < :e"
    f" UNION ALL SELECT ts, value FROM landing WHERE series_id = {_THE_SERIES}"
    " AND ts >= :s AND ts < :e)"
)
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
parts AS (
    SELECT p.minute, count(*) AS n, sum(x.value) AS s, min(x.value) AS lo, max(x.value) AS hi,
           min(x.ts) AS fts, max(x.ts) AS lts
    FROM p CROSS JOIN sid CROSS JOIN points x ON x.series_id = sid.series_id
        AND x.ts >= p.minute AND x.ts < p.minute + 60000
    GROUP BY p.minute
    UNION ALL
    SELECT p.minute, count(*), sum(x.value), min(x.value), max(x.value), min(x.ts), max(x.ts)
    FROM p CROSS JOIN sid CROSS JOIN landing x ON x.series_id = sid.series_id
        AND x.ts >= p.minute AND x.ts < p.minute + 60000
    GROUP BY p.minute
),
raw AS MATERIALIZED (
    SELECT minute, sum(n) AS n, sum(s) AS s, min(lo) AS lo, max(hi) AS hi, min(fts) AS fts,
           max(lts) AS lts
    FROM parts GROUP BY minute
),
src AS (
    SELECT minute, count, sum, min, max, first_ts, first, last_ts, last FROM rollup_1m
    WHERE tenant = :t AND device = :d AND metric = :m AND minute >= :s AND minute < :e
        AND minute NOT IN (SELECT minute FROM p)
    UNION ALL
    SELECT minute, n, s, lo, hi, fts, {first}, lts, {last} FROM raw
)
SELECT (minute / :b) * :b AS bucket, {expression} FROM src GROUP BY bucket ORDER BY bucket
"""
_VALUE_OF_SID = (
    "coalesce((SELECT value FROM points WHERE series_id = (SELECT series_id FROM sid)"
    " AND ts = {ts}), (SELECT value FROM landing WHERE series_id = (SELECT series_id FROM sid)"
    " AND ts = {ts}))"
)
_ROLLUP_READ = _ROLLUP_READ.replace("{first}", _VALUE_OF_SID.format(ts="fts")).replace(
    "{last}", _VALUE_OF_SID.format(ts="lts")
)
# The newest reading of each series ``{where}`` selects: one seek at the end of its key
# range in each table (SQLite's max() optimisation), then the newer of the two, whose
# value and unit come with it (the bare-column rule above).
_NEWEST_IN = (
    "SELECT k.series_id, k.device, k.metric, r.ts, r.value, r.unit FROM k CROSS JOIN {table} r"
    " ON r.series_id = k.series_id"
    " AND r.ts = (SELECT max(ts) FROM {table} x WHERE x.series_id = k.series_id)"
)
_LATEST = (
    "WITH k AS (SELECT series_id, device, metric FROM series WHERE {where})"
    " SELECT device, metric, max(ts), value, unit FROM ("
    + _NEWEST_IN.format(table="points")
    + " UNION ALL "
    + _NEWEST_IN.format(table="landing")
    + ") GROUP BY series_id ORDER BY device, metric"
)
# A device list travels as one JSON parameter, so there is no bound-parameter limit.
_DEVICES = "device IN (SELECT value FROM json_each(?))"
# 2: rollup_1m and its trigger; 3: the rollup refreshed per batch from rollup_pending;
# 4: readings keyed by series id (points), names in series; 5: the same tables, and
# writers that cache their rollup_pending marks (meta.rollup_refreshes tells them when a
# refresh removed marks; a version-4 writer would not, so it must not write the file)
_SCHEMA_VERSION = 5
_SERIES_OF, _TS_OF = attrgetter("tenant", "device", "metric"), attrgetter("ts")
_DEVICE_OF = attrgetter("tenant", "device")
_NAMES_OF = attrgetter("tenant", "device", "metric", "unit")
#: Most (names, unit) keys a store remembers series ids for before it starts afresh.
_NAMES_IDS_MAX = 100_000
_VALUE_OF = attrgetter("value")
# landing's columns after value, in order.
_OPTIONAL_OF = tuple((name, attrgetter(name)) for name in ("unit", "quality", "seq", "source_msg"))
_QUALITIES, _ONLY_NONE = set(Quality), {None}
#: Pages of new files: 16 KiB pages doubled key-ordered inserts of 10,000 series
#: arriving time-major (fewer, fuller leaves to split), measured in bench/storage.py.
_PAGE_SIZE = 16_384


def _statements(script: str) -> list[str]:
    """The statements of a script without triggers (``;`` ends each one)."""
    return [s for s in script.split(";") if s.strip()]


def _landing_columns(readings: Sequence[Reading]) -> tuple[str, list[Iterable[object]]]:
    """Landing's values for this batch (numbered parameters and literals, in column
    order), and the columns of the parameters after (series_id, ts).

    sqlite3 binds int, float and str straight away but sends every other object (None,
    the ``Quality`` enum) through its adapter lookup, which cost 12 of the 30 ms that
    inserting a batch of 10,000 took (measured, bench workload). So a column that is None
    in every reading of the batch is a ``NULL`` literal, a quality the whole batch shares
    is an integer literal, and mixed qualities are bound as plain ints.
    """
    values = ["?1", "?2", "?3"]
    columns: list[Iterable[object]] = [map(_VALUE_OF, readings)]

    def bind(column: Iterable[object]) -> None:
        columns.append(column)
        values.append(f"?{len(columns) + 2}")

    for name, get in _OPTIONAL_OF:
        try:
            found = set(map(get, readings))
        except TypeError:  # unhashable: bound as it is, and sqlite3 refuses it
            bind(map(get, readings))
            continue
        if name != "quality":
            if found == _ONLY_NONE:
                values.append("NULL")
            else:
                bind(map(get, readings))
        elif not found <= _QUALITIES:  # not a Quality: bound as it is (nothing checks it)
            bind(map(get, readings))
        elif len(found) == 1:
            values.append(str(int(found.pop())))
        else:
            bind(map(int, map(get, readings)))
    return ", ".join(values), columns


class SQLiteTimeSeriesStore:
    """Readings in one SQLite file; one connection per thread, WAL for concurrent reads.

    ``merge_rows`` is how many rows ``landing`` takes before a write merges it (tests
    pass a small number so every read meets both tables in every state).
    """

    def __init__(self, path: Path | str, *, merge_rows: int = _MERGE_ROWS) -> None:
        if merge_rows < 1:
            raise ValueError(f"merge_rows must be at least 1, got {merge_rows}")
        self._merge_rows = merge_rows
        self._path = str(path)
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        # Caches of this process, valid for one generation of the file (_SERIES_GENERATION):
        # series ids by name, and each series' newest timestamp in points.
        self._series_ids: dict[tuple[str, str, str], int] = {}
        self._merged_newest: dict[int, int] = {}
        self._merged_max = -1  # the newest of those
        self._generation = -1
        self._names_ok: set[tuple[str, str, str, str | None]] = set()
        # rollup_pending marks this process made: series ids by minute, valid while the
        # file's _ROLLUP_REFRESHES count stays at _marked_refreshes.
        self._marked: dict[int, set[int | None]] = {}
        self._marked_refreshes = -1
        # Series ids by checked (tenant, device, metric, unit), and how often the caches
        # were reloaded (the ids then may be stale).
        self._names_ids: dict[tuple[str, str, str, str | None], int | None] = {}
        self._reloads = 0
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
            if 0 < version < 4:
                # A one-time copy of every reading: say so, or a large file looks hung.
                log.warning(
                    "%s: upgrading the time-series schema from version %d to %d; every "
                    "reading is copied once, which takes a while on a large file",
                    self._path,
                    version,
                    _SCHEMA_VERSION,
                )
            if version < 4:
                for statement in _statements(_COMMON):
                    connection.execute(statement)
                connection.execute("DROP TRIGGER IF EXISTS readings_rollup_1m")
                upgrade = _SERIES_AND_POINTS if version == 0 else _MIGRATE_TO_4
                for statement in _statements(upgrade):
                    connection.execute(statement)
                if version == 1:
                    connection.execute(_BACKFILL_ROLLUP)
            if version < _SCHEMA_VERSION:  # 4 to 5 changes no table
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
        # The usual batch: every reading's names (unit included) were checked before and
        # have a series id, and its numbers are in range; one pass each, in C, instead of
        # split_valid's name check and a second lookup by name (2.5 ms a batch of 10,000).
        reloads = self._reloads
        series_ids: list[int | None] | None
        try:
            series_ids = list(map(self._names_ids.get, map(_NAMES_OF, readings)))
        except TypeError:  # a name that cannot be hashed: split_valid refuses it
            series_ids = [None]
        rejected: list[RejectedReading] = []
        if None in series_ids or not numbers_in_range(readings):
            readings, rejected = split_valid(readings, self._names_ok)
            series_ids = None
        if not readings:
            self._connection()  # a closed store raises even for an empty batch
            return WriteResult(0, rejected)
        # map, zip and attrgetter keep these per-reading passes in C, and no pass keeps a
        # new object per reading alive: 10,000 live tuples a batch woke the garbage
        # collector often enough to cost more than building them (measured 5x).
        stamps = list(map(_TS_OF, readings))
        oldest, newest = min(stamps), max(stamps)
        newest_minute = newest - newest % ROLLUP_MS
        one_minute = oldest >= newest_minute  # the usual batch: one minute of each device
        connection = self._connection()
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                generation = self._cached_generation(connection)
                new_ids: dict[tuple[str, str, str], int] = {}
                learn = series_ids is None or reloads != self._reloads  # (ids may be stale)
                if learn:
                    reloads = self._reloads
                    ids = self._series_ids
                    series_ids = list(map(ids.get, map(_SERIES_OF, readings)))
                    if None in series_ids:
                        missing = set(map(_SERIES_OF, readings)).difference(ids)
                        new_ids = self._add_series(connection, missing)
                        ids = {**ids, **new_ids}
                        series_ids = list(map(ids.__getitem__, map(_SERIES_OF, readings)))
                assert series_ids is not None
                # The columns of landing, in order; zip hands executemany one tuple at a time.
                values, rest = _landing_columns(readings)
                land, land_checked = (
                    _LAND.format(values=values),
                    _LAND_CHECKED.format(values=values),
                )
                landing = zip(series_ids, stamps, *rest, strict=True)
                floor = self._meta(connection, _RAW_FLOOR, MIN_TS)
                minutes, refreshes = self._marks_to_make(
                    connection, readings, series_ids, newest_minute if one_minute else None
                )
                # rowcount sums sqlite3_changes() per row: the rows really inserted.
                if oldest > max(self._merged_max, floor - 1):  # live data, the usual batch
                    inserted = connection.executemany(land, landing).rowcount
                else:
                    rows = list(landing)
                    inserted = 0
                    if oldest < floor:
                        inserted += self._insert_below_floor(
                            connection, land_checked, readings, rows, floor
                        )
                        rows = [row for row in rows if row[1] >= floor]
                        minutes = {m for m in minutes if m[2] >= floor}
                        one_minute = one_minute and newest_minute >= floor
                    newest_of = self._merged_newest.get
                    fresh = [row for row in rows if row[1] > newest_of(row[0], -1)]
                    older = [row for row in rows if row[1] <= newest_of(row[0], -1)]
                    inserted += connection.executemany(land, fresh).rowcount
                    inserted += connection.executemany(land_checked, older).rowcount
                connection.executemany(_MARK_PENDING, sorted(minutes))
                landed = self._meta(connection, _LANDING_ROWS, 0) + inserted
                merged = self._merge(connection, generation) if landed >= self._merge_rows else None
                if merged is None:  # (a merge counts landing_rows down to 0 itself)
                    self._set_meta(connection, _LANDING_ROWS, landed)
                # Minutes before this batch's newest are (mostly) complete: roll them up
                # now, once per device-minute rather than once per reading.
                self._refresh_rollup(connection, "minute < ?1", [newest_minute])
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            self._remember(generation, new_ids, merged)
            if learn:
                self._remember_names(reloads, readings, series_ids)
            if one_minute:
                self._remember_marks(refreshes, newest_minute, series_ids)
        except (sqlite3.IntegrityError, sqlite3.DataError) as exc:  # a constraint or trigger
            raise WriteRefusedError(f"{self._path} refused a reading: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(
                f"writing {len(readings)} readings to {self._path} failed: {exc}"
            ) from exc
        return WriteResult(inserted, rejected)

    def compact(self) -> None:
        """Merge every landed reading into ``points`` and roll up every pending minute.

        Writes do this on their own as ``landing`` fills; call it to leave the file with
        nothing pending (before a backup or a bulk read, and in the write benchmark,
        whose figure counts this time so it is a rate the store can keep up).
        """
        connection = self._connection()
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                generation = self._cached_generation(connection)
                merged = self._merge(connection, generation)
                self._refresh_rollup(connection, "1", [])
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            self._remember(generation, {}, merged)
        except sqlite3.Error as exc:
            raise StoreError(f"compacting {self._path} failed: {exc}") from exc

    def _marks_to_make(
        self,
        connection: sqlite3.Connection,
        readings: Sequence[Reading],
        series_ids: list[int | None],
        minute: int | None,
    ) -> tuple[set[tuple[str, str, int]], int]:
        """The (tenant, device, minute) marks this batch must add to ``rollup_pending``,
        and the file's refresh count they go with. ``minute`` is the batch's only
        minute, or None when it spans several. No marks when this process has marked
        that minute of each of the batch's series since the last refresh (the usual
        batch: 59 of 60 at 1 Hz); else every device-minute the batch holds. In the
        caller's write transaction."""
        refreshes = self._meta(connection, _ROLLUP_REFRESHES, 0)
        with self._lock:
            if refreshes != self._marked_refreshes:  # a refresh removed marks: forget ours
                self._marked.clear()
                self._marked_refreshes = refreshes
            marked = self._marked.get(minute) if minute is not None else None
            if marked is not None and marked.issuperset(series_ids):
                return set(), refreshes
        if minute is not None:
            return {(t, d, minute) for t, d in set(map(_DEVICE_OF, readings))}, refreshes
        return {(r.tenant, r.device, r.ts - r.ts % ROLLUP_MS) for r in readings}, refreshes

    def _remember_names(
        self, reloads: int, readings: Sequence[Reading], series_ids: list[int | None]
    ) -> None:
        """After a commit: the checked names of these readings, unit included, name the
        series ids they were written under, until the caches are next reloaded."""
        with self._lock:
            if reloads != self._reloads:
                return
            if len(self._names_ids) > _NAMES_IDS_MAX:
                self._names_ids.clear()
            self._names_ids.update(zip(map(_NAMES_OF, readings), series_ids, strict=True))

    def _remember_marks(self, refreshes: int, minute: int, series_ids: list[int | None]) -> None:
        """After a commit: the batch's series have their ``minute`` marked, as long as no
        refresh has run since ``refreshes`` was read (it may have removed the marks)."""
        with self._lock:
            if refreshes != self._marked_refreshes:
                return
            if minute not in self._marked and len(self._marked) >= _MARKED_MINUTES:
                self._marked.clear()
            self._marked.setdefault(minute, set()).update(series_ids)

    def _cached_generation(self, connection: sqlite3.Connection) -> int:
        """The file's cache generation; the caches are reloaded first if it moved (another
        handle merged or deleted). In the caller's write transaction."""
        generation = self._meta(connection, _SERIES_GENERATION, 0)
        with self._lock:
            if generation != self._generation:
                ids: dict[tuple[str, str, str], int] = {}
                newest: dict[int, int] = {}
                for series_id, tenant, device, metric, ts in connection.execute(_MERGED_NEWEST):
                    ids[tenant, device, metric] = series_id
                    if ts is not None:
                        newest[series_id] = ts
                self._series_ids, self._merged_newest = ids, newest
                self._merged_max = max(newest.values(), default=-1)
                self._generation = generation
                self._names_ids = {}
                self._reloads += 1
        return generation

    def _merge(self, connection: sqlite3.Connection, generation: int) -> dict[int, int] | None:
        """Move ``landing`` into ``points`` and bump the generation; return each merged
        series' newest timestamp (None when ``landing`` was empty: nothing changed). In
        the caller's write transaction."""
        newest = dict(connection.execute("SELECT series_id, max(ts) FROM landing GROUP BY 1"))
        if not newest:
            return None
        for statement in _MERGE:
            connection.execute(statement)
        self._set_meta(connection, _LANDING_ROWS, 0)
        self._set_meta(connection, _SERIES_GENERATION, generation + 1)
        return newest

    def _remember(
        self,
        generation: int,
        new_ids: dict[tuple[str, str, str], int],
        merged: dict[int, int] | None,
    ) -> None:
        """After a commit: cache the new series ids and the newly merged timestamps,
        unless another thread reloaded the caches meanwhile (what a rolled-back
        transaction made never gets here)."""
        with self._lock:
            if generation != self._generation:
                return
            self._series_ids.update(new_ids)
            if merged is not None:
                newest = self._merged_newest
                for series_id, ts in merged.items():
                    if ts > newest.get(series_id, -1):
                        newest[series_id] = ts
                self._merged_max = max(self._merged_max, *merged.values(), -1)
                self._generation = generation + 1

    @staticmethod
    def _add_series(
        connection: sqlite3.Connection, keys: set[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], int]:
        """The ids of series this process has not cached, creating the new ones; in the
        caller's write transaction."""
        # Set-based: one executemany, then one join against the keys as a JSON array
        # (a statement pair per series took 58 ms for a fleet's 10,000, measured).
        ordered = sorted(keys)
        connection.executemany(
            "INSERT OR IGNORE INTO series (tenant, device, metric) VALUES (?, ?, ?)", ordered
        )
        cursor = connection.execute(_SERIES_IDS, (json.dumps(ordered),))
        return {(tenant, device, metric): sid for sid, tenant, device, metric in cursor}

    @staticmethod
    def _meta(connection: sqlite3.Connection, key: str, default: int) -> int:
        row = connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else default

    @staticmethod
    def _set_meta(connection: sqlite3.Connection, key: str, value: int) -> None:
        connection.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @staticmethod
    def _insert_below_floor(
        connection: sqlite3.Connection,
        land_checked: str,
        readings: Sequence[Reading],
        rows: list[tuple[object, ...]],
        floor: int,
    ) -> int:
        """Insert the rows older than the raw floor one by one, merging each new one into
        the rollup (retention may have removed the readings its minute was built from)."""
        inserted = 0
        for reading, row in zip(readings, rows, strict=True):
            ts, value = reading.ts, reading.value
            if ts >= floor or connection.execute(land_checked, row).rowcount == 0:
                continue
            inserted += 1
            minute = ts - ts % ROLLUP_MS
            merged = (*_SERIES_OF(reading), minute, value, value, value, ts, value, ts, value)
            connection.execute(_MERGE_ROLLUP, merged)
        return inserted

    @staticmethod
    def _refresh_rollup(connection: sqlite3.Connection, where: str, params: list[object]) -> None:
        """Recompute the rollup of the pending device-minutes matching ``where`` (numbered
        parameters: it appears in both branches); in the caller's write transaction."""
        connection.execute(_REFRESH_ROLLUP.format(where=where), params)
        if connection.execute(f"DELETE FROM rollup_pending WHERE {where}", params).rowcount:
            # Writers cache the marks they made (see _marks_to_make): tell them.
            refreshes = SQLiteTimeSeriesStore._meta(connection, _ROLLUP_REFRESHES, 0)
            SQLiteTimeSeriesStore._set_meta(connection, _ROLLUP_REFRESHES, refreshes + 1)

    def query(
        self, tenant: str, device: str, metric: str, start: int, end: int, limit: int = 10_000
    ) -> list[Point]:
        cursor = self._connection().execute(
            f"SELECT ts, value FROM {_SERIES_RANGE} ORDER BY ts LIMIT :n",
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
                f"SELECT (ts / :b) * :b AS bucket, {_AGGREGATES[Aggregate(fn)]}"
                f" FROM {_SERIES_RANGE} GROUP BY bucket ORDER BY bucket"
            )
        params = {"b": bucket_ms, "t": tenant, "d": device, "m": metric, "s": start, "e": end}
        cursor = self._connection().execute(query, params)
        buckets = [Bucket(row[0], float(row[1])) for row in cursor]
        return fill_gaps(buckets, start, end, bucket_ms, fill)

    def latest(self, tenant: str, device: str) -> list[Latest]:
        return [Latest(d.metric, d.ts, d.value, d.unit) for d in self.latest_many(tenant, [device])]

    def latest_many(self, tenant: str, devices: Sequence[str] | None = None) -> list[DeviceLatest]:
        where, params = "tenant = ?", list[object]([tenant])
        if devices is not None:
            where += " AND " + _DEVICES
            params.append(json.dumps(list(devices)))
        cursor = self._connection().execute(_LATEST.format(where=where), params)
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
                    deleted += connection.execute(
                        f"DELETE FROM landing WHERE {where}", [before, *params]
                    ).rowcount
                    connection.execute(
                        "DELETE FROM series WHERE NOT EXISTS (SELECT 1 FROM points p"
                        " WHERE p.series_id = series.series_id) AND NOT EXISTS (SELECT 1"
                        f" FROM landing l WHERE l.series_id = series.series_id) AND {names}",
                        params,
                    )
                    landed = connection.execute("SELECT count(*) FROM landing").fetchone()[0]
                    self._set_meta(connection, _LANDING_ROWS, landed)
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
            "SELECT s.tenant, count(*), sum(p.ts >= ?)"
            " FROM (SELECT series_id, ts FROM points UNION ALL SELECT series_id, ts FROM landing) p"
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
        where, params = "", list[object]()
        if tenant is not None:
            where = " WHERE series_id IN (SELECT series_id FROM series WHERE tenant = ?)"
            params = [tenant]
        row = (
            self._connection()
            .execute(
                f"SELECT (SELECT count(*) FROM points{where})"
                f" + (SELECT count(*) FROM landing{where})",
                params * 2,
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
