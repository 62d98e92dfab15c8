"""Schema migrations: the metadata database (Alembic) and the time-series file (user_version)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from trellis.core.errors import SchemaError, StoreError
from trellis.core.types import AlertSeverity, Device, Reading
from trellis.devices.registry import DeviceRegistry
from trellis.store.base import Aggregate, Bucket
from trellis.store.metadata import _MIGRATIONS, metadata, migrate, open_metadata
from trellis.store.sqlite import SQLiteTimeSeriesStore


def _head() -> str:
    head = ScriptDirectory(str(_MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def _revision(engine: sa.Engine) -> list[str]:
    with engine.connect() as connection:
        return list(
            connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars()
        )


def _dump(path: Path) -> list[str]:
    connection = sqlite3.connect(path)
    try:
        return list(connection.iterdump())
    finally:
        connection.close()


def test_fresh_database_is_created_at_head(tmp_path: Path) -> None:
    """open_metadata on a missing file creates it with every table, at the head revision."""
    path = tmp_path / "new" / "trellis.db"
    engine = open_metadata(f"sqlite:///{path}")
    try:
        assert path.is_file()
        assert _revision(engine) == [_head()]
        tables = set(sa.inspect(engine).get_table_names())
        assert set(metadata.tables) <= tables
    finally:
        engine.dispose()


def test_migrated_schema_matches_the_table_definitions(tmp_path: Path) -> None:
    """Columns created by the migrations are the columns the code's tables declare."""
    engine = open_metadata(f"sqlite:///{tmp_path / 'trellis.db'}")
    try:
        inspector = sa.inspect(engine)
        for name, table in metadata.tables.items():
            columns = {column["name"] for column in inspector.get_columns(name)}
            assert columns == {column.name for column in table.columns}, name
    finally:
        engine.dispose()


def test_reopening_is_idempotent_and_keeps_rows(tmp_path: Path) -> None:
    """Running open_metadata (and migrate) again leaves the revision and the data alone."""
    url = f"sqlite:///{tmp_path / 'trellis.db'}"
    engine = open_metadata(url)
    DeviceRegistry(engine).register(Device("default", "pump-0001", "pump", name="P1"))
    engine.dispose()

    again = open_metadata(url)
    try:
        assert migrate(again) == _head()
        assert _revision(again) == [_head()]
        assert DeviceRegistry(again).require("default", "pump-0001").name == "P1"
    finally:
        again.dispose()


def test_unknown_revision_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    """A database at a revision this code does not know raises SchemaError and is not touched."""
    path = tmp_path / "trellis.db"
    engine = open_metadata(f"sqlite:///{path}")
    DeviceRegistry(engine).register(Device("default", "pump-0001", "pump"))
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999_from_future'"))
    engine.dispose()
    before = _dump(path)

    with pytest.raises(SchemaError, match="9999_from_future") as caught:
        open_metadata(f"sqlite:///{path}")
    assert "nothing was changed" in str(caught.value)
    assert _dump(path) == before


def _timeseries_file(path: Path) -> None:
    store = SQLiteTimeSeriesStore(path)
    store.write([Reading("default", "pump-0001", "temperature", 1_764_000_000_000, 20.0, "Cel")])
    store.close()


def test_timeseries_store_refuses_newer_schema(tmp_path: Path) -> None:
    """A time-series file with a newer user_version raises StoreError and keeps its data."""
    path = tmp_path / "timeseries.db"
    _timeseries_file(path)
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA user_version = 99")
    connection.close()

    with pytest.raises(StoreError, match="schema version 99") as caught:
        SQLiteTimeSeriesStore(path)
    assert isinstance(caught.value, SchemaError)
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA user_version").fetchone() == (99,)
        assert connection.execute("SELECT count(*) FROM readings").fetchone() == (1,)
    finally:
        connection.close()


def test_timeseries_store_reopens_its_own_schema(tmp_path: Path) -> None:
    """Opening an existing time-series file at the current version keeps its readings."""
    path = tmp_path / "timeseries.db"
    _timeseries_file(path)
    store = SQLiteTimeSeriesStore(path)
    try:
        assert store.count() == 1
    finally:
        store.close()


def test_upgrade_from_0001_keeps_every_row_and_rebuilds_timelines(tmp_path: Path) -> None:
    """A database written at 0001 (devices, an open and a resolved alert) upgrades to
    the head with every value intact, sites filled in, and timelines backfilled from
    the columns, so the metrics see alerts from before the upgrade."""
    from alembic import command

    from trellis.alerts import AlertService
    from trellis.alerts.timeline import EventKind, replay
    from trellis.store.metadata import _alembic_config

    path = tmp_path / "trellis.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection), "0001")
        connection.execute(
            sa.text(
                "INSERT INTO devices (tenant, id, model, name, site, status, attributes, "
                "created_ms) VALUES ('default', 'pump-0001', 'pump', 'P1', 'plant-a', "
                "'active', '{}', 1)"
            )
        )
        base = "INSERT INTO alerts (tenant, device, rule, type, severity, status, dedup_key, "
        connection.execute(
            sa.text(
                base + "open_key, message, value, count, raised_ms, updated_ms, acknowledged, "
                "acknowledged_ms, acknowledged_by, cleared_ms, resolved_ms, resolved_by) VALUES "
                "('default', 'pump-0001', 'hot', 'Hot', 'major', 'resolved', 'hot:pump-0001', "
                "NULL, 'old', 91.5, 3, 1000, 9000, 1, 2000, 'ana', 3000, 9000, 'ana'), "
                "('default', 'pump-0001', 'hot', 'Hot', 'minor', 'active', 'hot:pump-0001', "
                "'hot:pump-0001', 'new', 80.0, 1, 10000, 10000, 0, NULL, NULL, NULL, NULL, NULL)"
            )
        )
    before = _dump(path)
    engine.dispose()

    upgraded = open_metadata(f"sqlite:///{path}")
    try:
        assert _revision(upgraded) == [_head()]
        service = AlertService(upgraded)
        old, new = sorted(service.find("default"), key=lambda a: a.id)
        assert (old.message, old.value, old.count, old.acknowledged_by, old.resolved_ms) == (
            "old",
            91.5,
            3,
            "ana",
            9000,
        )
        assert (new.status.value, new.message, new.count) == ("active", "new", 1)
        assert (old.site, new.site) == ("plant-a", "plant-a")
        # 0010: alerts from before propagation are seen from their site
        assert {a.id for a in service.find("default", under="plant-a")} == {old.id, new.id}
        old_events = service.timeline("default", old.id)
        assert [e.kind for e in old_events] == [
            EventKind.RAISED,
            EventKind.ACKNOWLEDGED,
            EventKind.CLEARED,
            EventKind.RESOLVED,
        ]
        state = replay(old_events)
        assert (state.acknowledged_ms, state.cleared_ms, state.resolved_ms) == (2000, 3000, 9000)
        assert [e.kind for e in service.timeline("default", new.id)] == [EventKind.RAISED]
        # the open alert still holds its dedup key: a repeat counts on it
        again = service.raise_alert(
            tenant="default",
            device="pump-0001",
            rule="hot",
            type="Hot",
            severity=AlertSeverity.MINOR,
            message="new",
            value=81.0,
            at_ms=11_000,
        )
        assert (again.id, again.count) == (new.id, 2)
        assert DeviceRegistry(upgraded).require("default", "pump-0001").name == "P1"
    finally:
        upgraded.dispose()
    old_rows = [line for line in before if line.startswith('INSERT INTO "alerts"')]
    assert len(old_rows) == 2


def test_timeseries_version_1_file_gets_its_rollup_backfilled(tmp_path: Path) -> None:
    """Opening a file written before the 1-minute rollup builds the rollup from its readings."""
    path = tmp_path / "timeseries.db"
    t0 = 1_764_000_000_000
    connection = sqlite3.connect(path)  # the version-1 layout: readings keyed by names
    connection.executescript(
        "CREATE TABLE readings (tenant TEXT NOT NULL, device TEXT NOT NULL,"
        " metric TEXT NOT NULL, ts INTEGER NOT NULL, value REAL NOT NULL, unit TEXT,"
        " quality INTEGER NOT NULL, seq INTEGER, source_msg TEXT,"
        " PRIMARY KEY (tenant, device, metric, ts)) WITHOUT ROWID; PRAGMA user_version = 1;"
    )
    with connection:
        connection.executemany(
            "INSERT INTO readings VALUES ('default', 'p', 't', ?, ?, NULL, 0, NULL, NULL)",
            [(t0 + i * 7_000, float(i)) for i in range(20)],
        )
    connection.close()
    store = SQLiteTimeSeriesStore(path)
    try:
        got = store.aggregate("default", "p", "t", t0, t0 + 180_000, 60_000, Aggregate.LAST)
        assert got == [Bucket(t0, 8.0), Bucket(t0 + 60_000, 17.0), Bucket(t0 + 120_000, 19.0)]
    finally:
        store.close()
