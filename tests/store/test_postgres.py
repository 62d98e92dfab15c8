"""What only the PostgreSQL backend has: daily partitions, schema checks, connection
errors, and the metadata schema's migrations on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests.services import postgres_url
from trellis.core.clock import now_ms
from trellis.core.errors import ConfigError, SchemaError, StoreError
from trellis.core.types import Device, Reading
from trellis.devices.registry import DeviceRegistry
from trellis.store.metadata import metadata, open_metadata

postgres = pytest.importorskip("trellis.store.postgres")
PostgresTimeSeriesStore = postgres.PostgresTimeSeriesStore
DAY = 86_400_000
T0 = 1_764_000_000_000 - 1_764_000_000_000 % DAY  # a UTC midnight


@pytest.fixture
def schema() -> str:
    """A schema name no other test uses."""
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(schema: str) -> Iterator[PostgresTimeSeriesStore]:
    """A PostgreSQL store in its own schema."""
    opened = PostgresTimeSeriesStore(postgres_url(), schema=schema)
    yield opened
    opened.close()


def _day(ms: int) -> int:
    return ms // DAY


def test_without_timescaledb_the_layout_is_native_partitions(
    store: PostgresTimeSeriesStore,
) -> None:
    """Where CREATE EXTENSION timescaledb fails, readings is partitioned by day instead."""
    assert store.timescale is False
    today = _day(now_ms())
    names = store.partitions()
    assert postgres._partition_name(today) in names
    assert postgres._partition_name(today + 3) in names  # created ahead


def test_late_and_early_data_get_their_own_partitions(store: PostgresTimeSeriesStore) -> None:
    """Readings for days without a partition create it, at any date 1970..2099."""
    batch = [Reading("acme", "d", "m", ts, 1.0) for ts in (0, T0 - 400 * DAY, 4_102_444_799_999)]
    assert store.write(batch).inserted == 3
    names = store.partitions()
    assert {"readings_19700101", "readings_20991231"} <= set(names)


def test_retention_drops_whole_days(store: PostgresTimeSeriesStore) -> None:
    """delete_before drops partitions wholly older than the cutoff and trims the next one."""
    store.write([Reading("acme", "d", "m", T0 + n * DAY // 2, float(n)) for n in range(8)])
    assert {postgres._partition_name(_day(T0) + n) for n in range(4)} <= set(store.partitions())
    assert store.delete_before(T0 + 2 * DAY + DAY // 2) == 5
    names = set(store.partitions())
    assert postgres._partition_name(_day(T0)) not in names
    assert postgres._partition_name(_day(T0) + 1) not in names
    assert postgres._partition_name(_day(T0) + 2) in names
    assert store.count() == 3


def test_a_day_dropped_by_another_process_is_recreated_on_write(schema: str) -> None:
    """A writer whose partition cache is stale recreates the dropped day and loses nothing."""
    url = postgres_url()
    writer = PostgresTimeSeriesStore(url, schema=schema)
    janitor = PostgresTimeSeriesStore(url, schema=schema)
    try:
        writer.write([Reading("acme", "d", "m", T0, 1.0)])
        assert janitor.delete_before(T0 + DAY) == 1
        assert writer.write([Reading("acme", "d", "m", T0 + 5, 2.0)]).inserted == 1
        assert janitor.count() == 1
    finally:
        writer.close()
        janitor.close()


def test_reopening_keeps_the_data(schema: str) -> None:
    """A second store on the same schema sees what the first one wrote."""
    first = PostgresTimeSeriesStore(postgres_url(), schema=schema)
    first.write([Reading("acme", "d", "m", T0, 1.0)])
    first.close()
    second = PostgresTimeSeriesStore(postgres_url(), schema=schema)
    try:
        assert second.count() == 1
    finally:
        second.close()


def test_a_newer_schema_is_refused(store: PostgresTimeSeriesStore, schema: str) -> None:
    """A schema written by a newer Trellis is refused with SchemaError, not guessed at."""
    import psycopg

    with psycopg.connect(postgres.normalise_url(postgres_url()), autocommit=True) as connection:
        connection.execute(f"UPDATE {schema}.meta SET value = '99' WHERE key = 'version'")
    with pytest.raises(SchemaError, match="newer"):
        PostgresTimeSeriesStore(postgres_url(), schema=schema)


def test_a_version_1_schema_is_upgraded_and_keeps_its_rollup(
    store: PostgresTimeSeriesStore, schema: str
) -> None:
    """A schema from the merge-per-row rollup gains rollup_pending when opened; its old
    rollup rows stay, and new readings join them."""
    import psycopg

    from trellis.store import Aggregate, Bucket

    store.write([Reading("acme", "d", "m", T0 + i * 10_000, 1.0) for i in range(3)])
    store.write([Reading("acme", "d", "m", T0 + 60_000, 1.0)])
    count = ("acme", "d", "m", T0, T0 + 120_000, 60_000, Aggregate.COUNT)
    assert store.delete_rollups_before(T0) == 0  # retention rolls every pending minute up
    assert store.aggregate(*count) == [Bucket(T0, 3.0), Bucket(T0 + 60_000, 1.0)]
    store.close()
    with psycopg.connect(postgres.normalise_url(postgres_url()), autocommit=True) as connection:
        connection.execute(f"DROP TABLE {schema}.rollup_pending")
        connection.execute(f"UPDATE {schema}.meta SET value = '1' WHERE key = 'version'")
    reopened = PostgresTimeSeriesStore(postgres_url(), schema=schema)
    try:
        reopened.write([Reading("acme", "d", "m", T0 + 50_000, 1.0)])
        assert reopened.aggregate(*count) == [Bucket(T0, 4.0), Bucket(T0 + 60_000, 1.0)]
    finally:
        reopened.close()


def test_a_refused_row_is_a_write_refused_error(
    store: PostgresTimeSeriesStore, schema: str
) -> None:
    """A constraint the database enforces on the rows raises WriteRefusedError (retrying
    cannot help), and nothing of the batch is stored."""
    import psycopg

    from trellis.core.errors import WriteRefusedError

    with psycopg.connect(postgres.normalise_url(postgres_url()), autocommit=True) as connection:
        connection.execute(f"ALTER TABLE {schema}.readings ADD CHECK (value < 100)")
    batch = [Reading("acme", "d", "m", T0, 1.0), Reading("acme", "d", "m", T0 + 1, 500.0)]
    with pytest.raises(WriteRefusedError, match="check"):
        store.write(batch)
    assert store.count() == 0


def test_unreachable_server_is_a_clear_store_error() -> None:
    """A server that does not answer raises StoreError naming it, within the timeout."""
    with pytest.raises(StoreError, match=r"cannot connect to PostgreSQL at .*:1/x"):
        PostgresTimeSeriesStore("postgresql://u:secret@127.0.0.1:1/x", connect_timeout_s=0.5)


def test_password_is_not_in_the_error() -> None:
    """Connection errors show the URL without its password."""
    with pytest.raises(StoreError) as caught:
        PostgresTimeSeriesStore("postgresql://u:secret@127.0.0.1:1/x", connect_timeout_s=0.2)
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize("url", ["mysql://h/db", "sqlite:///x.db", "127.0.0.1:5432"])
def test_not_a_postgres_url_is_a_config_error(url: str) -> None:
    """A URL of another database is refused before connecting."""
    with pytest.raises(ConfigError, match="not a PostgreSQL URL"):
        PostgresTimeSeriesStore(url)


@pytest.mark.parametrize("schema", ["Trellis", "a-b", "x; DROP", "", "1abc", "pg_catalog"])
def test_schema_names_are_plain_identifiers(schema: str) -> None:
    """A schema name that would need quoting is refused."""
    with pytest.raises(ConfigError, match="schema"):
        PostgresTimeSeriesStore("postgresql://127.0.0.1/x", schema=schema)


def test_metadata_migrations_run_on_postgres() -> None:
    """open_metadata creates the metadata schema on PostgreSQL, idempotently, and it works."""
    url = postgres_url()
    engine = open_metadata(url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
        assert set(metadata.tables) <= tables
        registry = DeviceRegistry(engine)
        registry.register(Device("acme", "pump-'1'", "pump", attributes={"line": 3}))
        assert registry.require("acme", "pump-'1'").attributes == {"line": 3}
    finally:
        engine.dispose()
    again = open_metadata(url)  # a second start finds the head and changes nothing
    again.dispose()


def _v3_schema(schema: str) -> None:
    """A schema as version 3 left it: readings, series and the rollup keyed by names."""
    import psycopg

    day = postgres._partition_name(_day(T0))
    with psycopg.connect(postgres.normalise_url(postgres_url()), autocommit=True) as connection:
        for statement in (
            f"CREATE SCHEMA {schema}",
            f"CREATE TABLE {schema}.meta (key text PRIMARY KEY, value text)",
            f"INSERT INTO {schema}.meta VALUES ('version', '3'), ('layout', 'partitioned')",
            f'CREATE TABLE {schema}.readings (tenant text COLLATE "C" NOT NULL,'
            ' device text COLLATE "C" NOT NULL, metric text COLLATE "C" NOT NULL,'
            " ts int8 NOT NULL, value float8 NOT NULL, unit text, quality int2 NOT NULL,"
            " seq int8, source_msg text, PRIMARY KEY (tenant, device, metric, ts))"
            " PARTITION BY RANGE (ts)",
            f"CREATE TABLE {schema}.{day} PARTITION OF {schema}.readings"
            f" FOR VALUES FROM ({T0}) TO ({T0 + DAY})",
            f'CREATE TABLE {schema}.series (tenant text COLLATE "C" NOT NULL,'
            ' device text COLLATE "C" NOT NULL, metric text COLLATE "C" NOT NULL,'
            " since int8 NOT NULL, PRIMARY KEY (tenant, device, metric))",
            f'CREATE TABLE {schema}.rollup_1m (tenant text COLLATE "C" NOT NULL,'
            ' device text COLLATE "C" NOT NULL, metric text COLLATE "C" NOT NULL,'
            " minute int8 NOT NULL, count int8 NOT NULL, sum float8 NOT NULL,"
            " min float8 NOT NULL, max float8 NOT NULL, first_ts int8 NOT NULL,"
            " first float8 NOT NULL, last_ts int8 NOT NULL, last float8 NOT NULL,"
            " PRIMARY KEY (tenant, device, metric, minute))",
            f'CREATE TABLE {schema}.rollup_pending (tenant text COLLATE "C" NOT NULL,'
            ' device text COLLATE "C" NOT NULL, minute int8 NOT NULL,'
            " PRIMARY KEY (tenant, device, minute))",
            # Two series with readings, the first minute rolled up, the second pending.
            f"INSERT INTO {schema}.readings VALUES ('acme', 'd''1', 'm', {T0}, 1, 'C', 0, 7,"
            f" 'msg-1'), ('acme', 'd''1', 'm', {T0 + 30_000}, 3, 'C', 0, 8, NULL),"
            f" ('acme', 'd''1', 'm', {T0 + 60_000}, 5, 'C', 1, 9, NULL),"
            f" ('beta', 'd2', 'x', {T0 + 60_000}, 9, NULL, 0, NULL, NULL)",
            f"INSERT INTO {schema}.series VALUES ('acme', 'd''1', 'm', {T0}),"
            f" ('beta', 'd2', 'x', {T0})",
            f"INSERT INTO {schema}.rollup_1m VALUES ('acme', 'd''1', 'm', {T0}, 2, 4, 1, 3,"
            f" {T0}, 1, {T0 + 30_000}, 3),"
            # a series whose raw readings retention already dropped: only its rollup is left
            f" ('acme', 'old', 'm', {T0 - DAY}, 1, 6, 6, 6, {T0 - DAY}, 6, {T0 - DAY}, 6)",
            f"INSERT INTO {schema}.rollup_pending VALUES ('acme', 'd''1', {T0 + 60_000}),"
            f" ('beta', 'd2', {T0 + 60_000})",
        ):
            connection.execute(statement)


def test_a_version_3_schema_is_upgraded_to_integer_series_ids(schema: str) -> None:
    """A store keyed by names is rewritten once, in place, to integer series ids: every
    reading, rollup row (even of a series with no raw readings left) and pending minute
    reads back the same, redelivered readings stay duplicates, and new ones go on."""
    import psycopg

    from trellis.core.types import Quality
    from trellis.store import Aggregate, Bucket, Point

    _v3_schema(schema)
    store = PostgresTimeSeriesStore(postgres_url(), schema=schema)
    try:
        assert store.count() == 4
        assert store.count("beta") == 1
        assert store.query("acme", "d'1", "m", T0, T0 + DAY) == [
            Point(T0, 1.0),
            Point(T0 + 30_000, 3.0),
            Point(T0 + 60_000, 5.0),
        ]
        count = (T0 - DAY, T0 + 120_000, 60_000, Aggregate.COUNT)
        assert store.aggregate("acme", "d'1", "m", *count) == [
            Bucket(T0, 2.0),
            Bucket(T0 + 60_000, 1.0),  # still pending: computed from the readings
        ]
        assert store.aggregate("acme", "old", "m", *count) == [Bucket(T0 - DAY, 1.0)]
        assert [(d.device, d.metric, d.ts, d.value) for d in store.latest_many("acme")] == [
            ("d'1", "m", T0 + 60_000, 5.0)
        ]
        again = store.write(
            [
                Reading("acme", "d'1", "m", T0 + 60_000, 5.0, "C", Quality.UNCERTAIN, 9),
                Reading("acme", "d'1", "m", T0 + 90_000, 6.0, "C"),
                Reading("beta", "d2", "x", T0 + 61_000, 10.0),
            ]
        )
        assert again.inserted == 2
        assert store.count() == 6
    finally:
        store.close()
    with psycopg.connect(postgres.normalise_url(postgres_url()), autocommit=True) as connection:
        version = connection.execute(f"SELECT value FROM {schema}.meta WHERE key = 'version'")
        assert version.fetchone() == (str(postgres._SCHEMA_VERSION),)
        leftovers = connection.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname LIKE 'v3%%'",
            (schema,),
        )
        assert leftovers.fetchone() == (0,)
        row = connection.execute(
            f"SELECT unit, quality, seq, source_msg FROM {schema}.readings WHERE ts = %s",
            (T0,),
        ).fetchone()
        assert row == ("C", 0, 7, "msg-1")
    reopened = PostgresTimeSeriesStore(postgres_url(), schema=schema)  # once: nothing to redo
    try:
        assert reopened.count() == 6
        assert reopened.aggregate("acme", "d'1", "m", T0, T0 + 120_000, 60_000) == [
            Bucket(T0, 2.0),
            Bucket(T0 + 60_000, 5.5),
        ]
    finally:
        reopened.close()


def test_processes_registering_the_same_new_series_at_once_agree_on_ids(schema: str) -> None:
    """Two stores (two processes' caches) writing batches of the same new series at the
    same moment: each series gets one id, every reading is stored once, and each store
    reads back the other's readings under the same names."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    stores = [PostgresTimeSeriesStore(postgres_url(), schema=schema) for _ in range(2)]
    try:
        for round_ in range(4):
            devices = [f"r{round_}-d{i}" for i in range(300)]
            start = threading.Barrier(2)

            def write(
                w: int, devices: list[str] = devices, start: threading.Barrier = start
            ) -> int:
                batch = [Reading("acme", d, m, T0 + w, float(w)) for d in devices for m in "ab"]
                start.wait()
                return stores[w].write(batch).inserted

            with ThreadPoolExecutor(max_workers=2) as pool:
                assert sum(pool.map(write, range(2))) == 2 * 600
            for store in stores:
                points = store.query("acme", devices[-1], "b", T0, T0 + 10)
                assert [p.ts for p in points] == [T0, T0 + 1]
        assert stores[0].count() == 4 * 2 * 600
        import psycopg

        with psycopg.connect(postgres.normalise_url(postgres_url())) as connection:
            row = connection.execute(
                f"SELECT count(*), count(DISTINCT (tenant, device, metric)) FROM {schema}.series"
            ).fetchone()
        assert row == (4 * 600, 4 * 600)
    finally:
        for store in stores:
            store.close()
