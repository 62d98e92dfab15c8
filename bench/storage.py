"""Time-series storage: write throughput and dashboard query latency, per backend.

Run ``python bench/storage.py [--quick] [--no-postgres]``. Prints one JSON line per
figure on stdout (DESIGN.md, Benchmarks) and progress on stderr.

Write figures (``<backend>_write_readings_per_s``): readings/s through
``TimeSeriesStore.write`` for a fleet of 1,000 devices × 10 metrics reporting at
1 Hz (DESIGN.md's workload), in batches of 10,000 readings (one second of the fleet),
each batch one call and one transaction; 2,000,000 readings, 200 s of the fleet
(``--quick``: 200,000). Timed: every ``write`` call, not building the readings; on
SQLite also one ``compact()`` after the last batch. SQLite's ``write`` returns once the
rows are committed to its small ``landing`` table (durable and visible to every read),
and merges ``landing`` into the keyed table itself each time it fills; ``compact()``
merges what is left and rolls up every pending minute, so the figure is the rate at
which data ends fully merged, with current rollups: a rate the store can sustain, not
one that leaves a backlog. PostgreSQL's ``write`` leaves no backlog (rows go straight
into the table keyed by (series_id, ts); closed minutes are rolled up inside the
call). Both stores start empty, so the first batch also registers the 10,000 series
(on PostgreSQL about 140 ms, a fifth of a ``--quick`` run).
Baselines, same rows, same run:

* SQLite: bare ``executemany`` of the same rows as pre-built tuples into an
  unindexed rowid table, all in one transaction, same pragmas (WAL, synchronous=NORMAL).
* PostgreSQL: plain binary ``COPY`` of the same rows (9 columns: the names as text)
  into an unindexed ordinary (logged) table, one COPY and commit per 10,000-row
  batch, as the store commits.

Query figures, ms per query, median of 5 after one warm-up:

* ``<backend>_avg_1m_24h_100_devices_ms``: 1-minute averages of one metric over the
  last 24 h for 100 devices (100 ``aggregate`` calls, as a dashboard would make).
* ``<backend>_avg_1m_24h_100_devices_from_rollup_ms``: the same over a window of
  whole minutes, which the store answers from its 1-minute rollup.
* ``<backend>_latest_1000_devices_ms``: latest value of every metric of 1,000 devices
  (one ``latest_many`` call, 10,000 values).

Their baseline is the same SQL run directly on the engine's driver, so the ratio is
the cost of the store layer. On SQLite the full run measures the queries on a file
of 20,000,000 readings (1,000 devices × 10 metrics × 2,000 instants over 24 h), built
with the fastest path there is: the 10,000 series first, then ``executemany`` straight
into the store's keyed ``points`` table in key order, 20,000 rows per transaction,
then one ``INSERT … SELECT`` for the rollup. ``--quick`` and PostgreSQL measure on the
rows written by the write figure (200 s or 20 s of the fleet); ``n`` says how many
rows were stored.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from msgspec.structs import astuple

from _common import Report
from trellis.core.types import Reading
from trellis.store import Aggregate, SQLiteTimeSeriesStore, TimeSeriesStore
from trellis.store.sqlite import _BACKFILL_ROLLUP, _LATEST, _SERIES_RANGE

BENCH = "storage"
REPORT = Report(BENCH)
log = REPORT.log
emit = functools.partial(REPORT.emit, digits=3)
TENANT = "bench"
DEVICES = [f"dev-{i:04d}" for i in range(1000)]
METRICS = [f"m{i}" for i in range(10)]
DAY_MS = 86_400_000
BATCH = len(DEVICES) * len(METRICS)
PG_ADMIN = os.environ.get("TRELLIS_BENCH_POSTGRES", "postgresql://127.0.0.1:5432/test")
END = (int(time.time() * 1000) // 60_000) * 60_000  # the dataset ends at "now"


def batches(steps: int, step_ms: int = 1_000) -> Iterator[list[Reading]]:
    """The fleet's readings, one batch per instant ``step_ms`` apart, ending now."""
    for step in range(steps):
        ts = END - steps * step_ms + step * step_ms
        yield [
            Reading(TENANT, device, metric, ts, float((step * 7 + d + m) % 1000) / 10.0, "u")
            for d, device in enumerate(DEVICES)
            for m, metric in enumerate(METRICS)
        ]


def timed_writes(write: Callable[[list[Reading]], object], steps: int) -> float:
    """Seconds spent inside ``write`` over every batch."""
    spent = 0.0
    for batch in batches(steps):
        started = time.perf_counter()
        write(batch)
        spent += time.perf_counter() - started
    return spent


def median_ms(run: Callable[[], object], repeats: int = 5) -> float:
    """Median wall time of ``run`` in ms, after one warm-up."""
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def store_queries(
    store: TimeSeriesStore,
) -> tuple[Callable[[], object], Callable[[], object], Callable[[], object]]:
    """The dashboard queries through the store: averages from raw readings (a window
    ending at an arbitrary millisecond), the same from the 1-minute rollup (a window of
    whole minutes), and latest values."""

    def averages() -> object:
        return [
            store.aggregate(TENANT, device, "m0", END - DAY_MS, END + 1, 60_000, Aggregate.AVG)
            for device in DEVICES[:100]
        ]

    def rollup_averages() -> object:
        return [
            store.aggregate(TENANT, device, "m0", END - DAY_MS, END + 60_000, 60_000, Aggregate.AVG)
            for device in DEVICES[:100]
        ]

    def latest() -> object:
        found = store.latest_many(TENANT, DEVICES)
        assert len(found) == BATCH, len(found)
        return found

    return averages, rollup_averages, latest


# -- SQLite -----------------------------------------------------------------------

# The store's own SQL, so the ratio is the cost of the store layer around it.
_SQLITE_AVG = f"SELECT (ts / :b) * :b AS b, avg(value) FROM {_SERIES_RANGE} GROUP BY b ORDER BY b"
_SQLITE_LATEST = _LATEST.format(where="tenant = ? AND device IN (SELECT value FROM json_each(?))")


def sqlite_bare_queries(path: Path) -> tuple[Callable[[], object], Callable[[], object]]:
    """The same two queries as plain SQL on a plain sqlite3 connection."""
    connection = sqlite3.connect(path)
    devices = json.dumps(DEVICES)

    def averages() -> object:
        return [
            connection.execute(
                _SQLITE_AVG,
                {"b": 60_000, "t": TENANT, "d": device, "m": "m0", "s": END - DAY_MS, "e": END + 1},
            ).fetchall()
            for device in DEVICES[:100]
        ]

    def latest() -> object:
        return connection.execute(_SQLITE_LATEST, (TENANT, devices)).fetchall()

    return averages, latest


def sqlite_baseline(directory: Path, steps: int) -> float:
    """Seconds for bare executemany of every row, one transaction, unindexed table."""
    connection = sqlite3.connect(directory / "bare.db", isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute(
        "CREATE TABLE readings (tenant TEXT, device TEXT, metric TEXT, ts INTEGER, value REAL,"
        " unit TEXT, quality INTEGER, seq INTEGER, source_msg TEXT)"
    )
    rows = [astuple(r) for batch in batches(steps) for r in batch]
    started = time.perf_counter()
    connection.execute("BEGIN")
    connection.executemany("INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    connection.execute("COMMIT")
    spent = time.perf_counter() - started
    connection.close()
    return spent


def sqlite_build_large(path: Path, steps: int) -> int:
    """The fastest path to a big store file: key-ordered executemany into its own table."""
    SQLiteTimeSeriesStore(path).close()
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=OFF")
    connection.executemany(
        "INSERT INTO series (tenant, device, metric) VALUES (?, ?, ?)",
        [(TENANT, device, metric) for device in DEVICES for metric in METRICS],
    )
    ids = {
        (device, metric): series_id
        for series_id, device, metric in connection.execute(
            "SELECT series_id, device, metric FROM series"
        )
    }
    step_ms = DAY_MS // steps
    rows = 0
    for d, device in enumerate(DEVICES):
        chunk = [
            (ids[device, metric], END - DAY_MS + s * step_ms, float((s + d + m) % 1000), "u", 0)
            for m, metric in enumerate(METRICS)
            for s in range(steps)
        ]
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO points (series_id, ts, value, unit, quality) VALUES (?, ?, ?, ?, ?)",
            chunk,
        )
        connection.execute("COMMIT")
        rows += len(chunk)
        if d % 100 == 99:
            log(f"  sqlite 20M build: {rows:,} rows")
    # The store rolls minutes up as it writes; a bulk load builds the rollup in one pass,
    # as the store does when it upgrades a file that has none.
    connection.execute(_BACKFILL_ROLLUP)
    connection.close()
    return rows


def bench_sqlite(directory: Path, steps: int, large_steps: int | None) -> None:
    """SQLite write ratio, then query latencies (on 20 M rows unless quick)."""
    n = steps * BATCH
    log(f"sqlite: bare executemany baseline, {n:,} rows")
    base = sqlite_baseline(directory, steps)
    log("sqlite: TimeSeriesStore.write")
    store = SQLiteTimeSeriesStore(directory / "store.db")
    spent = timed_writes(store.write, steps)
    # Writes return once their rows are in the landing table; merging the rest of it
    # into the keyed table (and rolling up every pending minute) is part of the cost.
    started = time.perf_counter()
    store.compact()
    spent += time.perf_counter() - started
    assert store.count() == n
    emit(
        "sqlite_write_readings_per_s",
        n / spent,
        "readings/s",
        "bare executemany of the same tuples into an unindexed table, one transaction, same run",
        n / base,
        ">= 0.6 ratio",
        n,
    )
    query_path = directory / "store.db"
    stored = n
    if large_steps is not None:
        store.close()
        query_path = directory / "large.db"
        log(f"sqlite: building {large_steps * BATCH:,} rows for the query figures")
        stored = sqlite_build_large(query_path, large_steps)
        store = SQLiteTimeSeriesStore(query_path)
    queries = store_queries(store)
    bare_averages, bare_latest = sqlite_bare_queries(query_path)
    emit_queries("sqlite", queries, bare_averages, bare_latest, stored, "sqlite3")
    store.close()


def emit_queries(
    backend: str,
    queries: tuple[Callable[[], object], Callable[[], object], Callable[[], object]],
    bare_averages: Callable[[], object],
    bare_latest: Callable[[], object],
    stored: int,
    driver: str,
) -> None:
    """Time and print the two query figures of one backend."""
    log(f"{backend}: queries on {stored:,} stored rows")
    averages, rollup_averages, latest = queries
    target = "< 200 ms at 20 M rows" if backend == "sqlite" else "none (informational)"
    bare = median_ms(bare_averages)
    emit(
        f"{backend}_avg_1m_24h_100_devices_ms",
        median_ms(averages),
        "ms",
        f"the same SQL over raw readings on a bare {driver} connection, same data, same run",
        bare,
        target,
        stored,
    )
    emit(
        f"{backend}_avg_1m_24h_100_devices_from_rollup_ms",
        median_ms(rollup_averages),
        "ms",
        f"the raw-readings SQL on a bare {driver} connection, same data, same run",
        bare,
        target,
        stored,
    )
    emit(
        f"{backend}_latest_1000_devices_ms",
        median_ms(latest),
        "ms",
        f"the same SQL on a bare {driver} connection, same data, same run",
        median_ms(bare_latest),
        target,
        stored,
    )


# -- PostgreSQL -------------------------------------------------------------------


def bench_postgres(steps: int) -> None:
    """PostgreSQL write ratio against bare binary COPY, and query latencies."""
    try:
        import psycopg

        from trellis.store.postgres import PostgresTimeSeriesStore
    except ImportError as exc:
        log(f"postgres: skipped ({exc})")
        return
    name = f"trellis_bench_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        log(f"postgres: skipped, cannot create a database through {PG_ADMIN}: {exc}")
        return
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    n = steps * BATCH
    try:
        log(f"postgres: bare binary COPY baseline, {n:,} rows")
        with psycopg.connect(url) as connection:
            connection.execute(
                "CREATE TABLE bare (tenant text, device text, metric text, ts int8, value float8,"
                " unit text, quality int2, seq int8, source_msg text)"
            )
            connection.commit()

            def copy(batch: list[Reading]) -> None:
                with (
                    connection.cursor() as cur,
                    cur.copy("COPY bare FROM STDIN (FORMAT BINARY)") as out,
                ):
                    out.set_types(
                        ["text", "text", "text", "int8", "float8", "text", "int2", "int8", "text"]
                    )
                    for r in batch:
                        out.write_row(
                            (r.tenant, r.device, r.metric, r.ts, r.value, r.unit, 0, r.seq, None)
                        )
                connection.commit()

            base = timed_writes(copy, steps)
        log("postgres: TimeSeriesStore.write")
        store = PostgresTimeSeriesStore(url, schema="bench")
        spent = timed_writes(store.write, steps)
        assert store.count() == n
        emit(
            "postgres_write_readings_per_s",
            n / spent,
            "readings/s",
            "plain binary COPY of the same rows into an unindexed table, one COPY and commit "
            "per 10,000-row batch, same run",
            n / base,
            ">= 0.6 ratio",
            n,
        )
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("VACUUM ANALYZE")

            def bare_averages() -> object:
                return [
                    connection.execute(
                        "SELECT ts / 60000 * 60000 AS b, avg(value) FROM bench.readings"
                        " WHERE series_id = (SELECT series_id FROM bench.series WHERE"
                        " tenant = %s AND device = %s AND metric = %s) AND ts >= %s"
                        " AND ts < %s GROUP BY b ORDER BY b",
                        (TENANT, device, "m0", END - DAY_MS, END + 1),
                    ).fetchall()
                    for device in DEVICES[:100]
                ]

            def bare_latest() -> object:
                return connection.execute(
                    "SELECT s.device, s.metric, r.ts, r.value, r.unit FROM bench.series s"
                    " CROSS JOIN LATERAL (SELECT ts, value, unit FROM bench.readings x"
                    " WHERE x.series_id = s.series_id AND x.ts >= s.since"
                    " ORDER BY x.ts DESC LIMIT 1) r"
                    " WHERE s.tenant = %s AND s.device = ANY(%s) ORDER BY 1, 2",
                    (TENANT, DEVICES),
                ).fetchall()

            queries = store_queries(store)
            emit_queries("postgres", queries, bare_averages, bare_latest, n, "psycopg")
        store.close()
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    """Parse arguments and run each backend's figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="200,000 readings, queries on those (under 60 s)"
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args()
    steps = 20 if args.quick else 200
    with tempfile.TemporaryDirectory(prefix="trellis-bench-") as tmp:
        bench_sqlite(Path(tmp), steps, None if args.quick else 2_000)
    if not args.no_postgres:
        bench_postgres(steps)


if __name__ == "__main__":
    main()
