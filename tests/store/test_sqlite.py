"""SQLite-only behaviour the conformance suite cannot see: file upgrades, and two
handles on one file (the platform and a CLI process) keeping each other's view true."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from msgspec.structs import replace

from trellis.core.errors import StoreError
from trellis.core.types import Quality, Reading
from trellis.store import Aggregate, Bucket, Latest, SQLiteTimeSeriesStore

T0 = 1_764_000_000_000  # a whole minute

# The version-2 layout: series kept a newest timestamp, a trigger kept the rollup.
_VERSION_2 = """
CREATE TABLE readings (tenant TEXT NOT NULL, device TEXT NOT NULL, metric TEXT NOT NULL,
    ts INTEGER NOT NULL, value REAL NOT NULL, unit TEXT, quality INTEGER NOT NULL,
    seq INTEGER, source_msg TEXT, PRIMARY KEY (tenant, device, metric, ts)) WITHOUT ROWID;
CREATE TABLE series (tenant TEXT NOT NULL, device TEXT NOT NULL, metric TEXT NOT NULL,
    unit TEXT, last_ts INTEGER NOT NULL, PRIMARY KEY (tenant, device, metric)) WITHOUT ROWID;
CREATE TABLE rollup_1m (tenant TEXT NOT NULL, device TEXT NOT NULL, metric TEXT NOT NULL,
    minute INTEGER NOT NULL, count INTEGER NOT NULL, sum REAL NOT NULL, min REAL NOT NULL,
    max REAL NOT NULL, first_ts INTEGER NOT NULL, first REAL NOT NULL,
    last_ts INTEGER NOT NULL, last REAL NOT NULL,
    PRIMARY KEY (tenant, device, metric, minute)) WITHOUT ROWID;
CREATE TRIGGER readings_rollup_1m AFTER INSERT ON readings BEGIN
    INSERT INTO rollup_1m VALUES (NEW.tenant, NEW.device, NEW.metric, NEW.ts - NEW.ts % 60000,
        1, NEW.value, NEW.value, NEW.value, NEW.ts, NEW.value, NEW.ts, NEW.value)
    ON CONFLICT (tenant, device, metric, minute) DO UPDATE SET count = count + 1,
        sum = sum + excluded.sum, min = min(min, excluded.min), max = max(max, excluded.max),
        last = CASE WHEN excluded.last_ts > last_ts THEN excluded.last ELSE last END,
        last_ts = max(last_ts, excluded.last_ts);
END;
PRAGMA user_version = 2;
"""


def test_version_2_file_is_upgraded_in_place(tmp_path: Path) -> None:
    """A file from the trigger-maintained layout keeps its readings, rollup and series,
    loses the per-row trigger, and takes new writes into the same rollup minutes."""
    path = tmp_path / "timeseries.db"
    connection = sqlite3.connect(path)
    connection.executescript(_VERSION_2)
    with connection:
        connection.executemany(
            "INSERT INTO readings VALUES ('acme', 'p', 't', ?, ?, 'Cel', 0, NULL, NULL)",
            [(T0 + i * 10_000, float(i)) for i in range(4)],
        )
        connection.execute("INSERT INTO series VALUES ('acme', 'p', 't', 'Cel', ?)", (T0 + 30_000,))
    connection.close()
    store = SQLiteTimeSeriesStore(path)
    try:
        assert store.write([Reading("acme", "p", "t", T0 + 50_000, 10.0, "Cel")]).inserted == 1
        got = store.aggregate("acme", "p", "t", T0, T0 + 60_000, 60_000, Aggregate.SUM)
        assert got == [Bucket(T0, 0.0 + 1.0 + 2.0 + 3.0 + 10.0)]
        assert store.latest("acme", "p") == [Latest("t", T0 + 50_000, 10.0, "Cel")]
    finally:
        store.close()
    connection = sqlite3.connect(path)
    triggers = connection.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
    assert triggers.fetchall() == []
    assert connection.execute("PRAGMA user_version").fetchone() == (5,)
    connection.close()


def test_retention_in_another_handle_does_not_hide_a_rewritten_series(tmp_path: Path) -> None:
    """A writer that remembers a series exists notices when another handle (another
    process) deleted it, and lists it again after writing it anew."""
    path = tmp_path / "timeseries.db"
    writer, janitor = SQLiteTimeSeriesStore(path), SQLiteTimeSeriesStore(path)
    try:
        writer.write([Reading("acme", "p", "t", T0, 1.0)])
        assert janitor.delete_before(T0 + 1) == 1
        assert writer.latest("acme", "p") == []
        writer.write([Reading("acme", "p", "t", T0 + 60_000, 2.0)])
        assert janitor.latest("acme", "p") == [Latest("t", T0 + 60_000, 2.0, None)]
        count = ("acme", "p", "t", T0, T0 + 120_000, 60_000, Aggregate.COUNT)
        # The old minute's rollup outlives its raw reading; the new one joins it.
        assert janitor.aggregate(*count) == [Bucket(T0, 1.0), Bucket(T0 + 60_000, 1.0)]
    finally:
        writer.close()
        janitor.close()


def test_a_replay_after_another_handle_merged_is_not_stored_twice(tmp_path: Path) -> None:
    """A writer that cached how far each series was merged notices when another handle
    merged newer rows, so a replay of those rows is a duplicate, not a second copy."""
    path = tmp_path / "timeseries.db"
    first = SQLiteTimeSeriesStore(path, merge_rows=1)
    second = SQLiteTimeSeriesStore(path, merge_rows=1_000)
    try:
        assert first.write([Reading("acme", "p", "t", T0, 1.0)]).inserted == 1
        assert second.write([Reading("acme", "p", "t", T0 + 1_000, 2.0)]).inserted == 1
        assert first.write([Reading("acme", "p", "t", T0 + 2_000, 3.0)]).inserted == 1  # merges
        replay = [Reading("acme", "p", "t", T0 + i * 1_000, 9.0) for i in range(3)]
        assert second.write(replay).inserted == 0
        assert first.write(replay).inserted == 0
        assert second.count() == 3
        assert [p.value for p in second.query("acme", "p", "t", T0, T0 + 3_000)] == [1.0, 2.0, 3.0]
        second.compact()
        assert first.latest("acme", "p") == [Latest("t", T0 + 2_000, 3.0, None)]
    finally:
        first.close()
        second.close()


def test_every_column_is_stored_as_written_in_each_batch_shape(tmp_path: Path) -> None:
    """Landing's optional columns become literals when a batch shares them (all None, one
    quality) and parameters otherwise: every shape stores each reading's own unit,
    quality, seq and source message, through both insert paths (fresh and checked)."""
    batches = [
        [Reading("acme", "d", "m", T0 + i, float(i)) for i in range(3)],  # all defaults
        [
            Reading("acme", "d", "m", T0 + 10 + i, 1.5, unit, quality, seq, source)
            for i, (unit, quality, seq, source) in enumerate(
                [
                    ("Cel", Quality.GOOD, 7, "msg-1"),
                    (None, Quality.BAD, None, None),
                    ("K", Quality.UNCERTAIN, 0, "msg-'2'"),
                ]
            )
        ],
        [Reading("acme", "e", "m", T0, 2.0, "bar", Quality.UNCERTAIN, 3, "x")] * 2,
        [Reading("acme", "e", "n", T0, 2.0, None, 2)],  # a plain int quality
    ]
    expected = {}
    for merge_rows in (1, 1_000):  # merged at every write, and never
        store = SQLiteTimeSeriesStore(tmp_path / f"{merge_rows}.db", merge_rows=merge_rows)
        try:
            for batch in batches:
                store.write(batch)
                store.write(batch[::-1])  # a replay: the checked path once merged
                for r in batch:
                    expected[r.device, r.metric, r.ts] = (r.value, r.unit, int(r.quality), r.seq)
                    expected[r.device, r.metric, r.ts] += (r.source_msg,)
        finally:
            store.close()
        connection = sqlite3.connect(tmp_path / f"{merge_rows}.db")
        rows = connection.execute(
            "SELECT device, metric, ts, value, unit, quality, seq, source_msg FROM readings"
        ).fetchall()
        connection.close()
        assert {(d, m, ts): tuple(rest) for d, m, ts, *rest in rows} == expected
        assert len(rows) == len(expected)


@pytest.mark.parametrize("refresher", ["same handle", "another handle"])
def test_a_minute_written_again_after_its_rollup_was_refreshed_is_rolled_up_again(
    tmp_path: Path, refresher: str
) -> None:
    """Writers remember the rollup_pending marks they made and skip them for the rest of
    the minute; a refresh (here compact()) by this handle or another removes the marks,
    and the next write into that minute must mark it again or its rollup goes stale."""
    path = tmp_path / "timeseries.db"
    writer = SQLiteTimeSeriesStore(path)
    other = writer if refresher == "same handle" else SQLiteTimeSeriesStore(path)
    total = ("acme", "p", "t", T0, T0 + 60_000, 60_000, Aggregate.SUM)
    try:
        writer.write([Reading("acme", "p", "t", T0 + 1_000, 1.0)])
        writer.write([Reading("acme", "p", "t", T0 + 2_000, 2.0)])  # marks remembered
        other.compact()  # rolls the minute up, removes its marks
        writer.write([Reading("acme", "p", "t", T0 + 3_000, 4.0)])
        other.compact()
        for store in (writer, other):
            assert store.aggregate(*total) == [Bucket(T0, 7.0)]
        connection = sqlite3.connect(path)
        rollup = connection.execute("SELECT count, sum FROM rollup_1m").fetchall()
        connection.close()
        assert rollup == [(3, 7.0)]
    finally:
        writer.close()
        other.close()


def test_version_4_file_becomes_version_5_with_its_pending_minutes(tmp_path: Path) -> None:
    """Version 5 changes no table, only what writers may cache: a version-4 file keeps
    its landed rows and pending marks, and its open minute still rolls up in full."""
    path = tmp_path / "timeseries.db"
    store = SQLiteTimeSeriesStore(path)
    store.write([Reading("acme", "p", "t", T0 + i * 1_000, float(i)) for i in range(3)])
    store.close()
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA user_version = 4")
    connection.commit()
    connection.close()
    store = SQLiteTimeSeriesStore(path)
    try:
        store.write([Reading("acme", "p", "t", T0 + 3_000, 3.0)])
        store.compact()
        total = ("acme", "p", "t", T0, T0 + 60_000, 60_000, Aggregate.SUM)
        assert store.aggregate(*total) == [Bucket(T0, 6.0)]
        assert store.count() == 4
    finally:
        store.close()
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA user_version").fetchone() == (5,)
    assert connection.execute("SELECT count, sum FROM rollup_1m").fetchall() == [(4, 6.0)]
    connection.close()


def test_an_optional_column_sqlite_cannot_store_is_a_store_error(tmp_path: Path) -> None:
    """An unhashable quality or seq (nothing upstream builds one) fails the write as a
    StoreError, as any other value sqlite3 cannot bind, and stores nothing."""
    store = SQLiteTimeSeriesStore(tmp_path / "ts.db")
    try:
        for bad in ({"quality": ["good"]}, {"seq": [1]}):
            batch = [Reading("acme", "p", "t", T0, 1.0), Reading("acme", "p", "u", T0, 2.0)]
            batch[1] = replace(batch[1], **bad)  # type: ignore[arg-type]
            with pytest.raises(StoreError):
                store.write(batch)
        assert store.count() == 0
    finally:
        store.close()
