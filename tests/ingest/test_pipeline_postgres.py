"""The ingest pipeline on a real PostgreSQL store: a row the database refuses costs one
quarantined message, a lost connection costs nothing; no loss, no duplicates, no stall."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from tests.helpers import PUMPS, TENANT, run
from tests.ingest.test_pipeline import Running, pump_message, running
from tests.services import postgres_url
from trellis.devices.registry import DeviceRegistry
from trellis.ingest import Quarantine
from trellis.store.postgres import PostgresTimeSeriesStore

psycopg = pytest.importorskip("psycopg")


@pytest.fixture
def schema() -> str:
    """A schema name no other test uses."""
    return f"ingest_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def pg_store(schema: str) -> Iterator[PostgresTimeSeriesStore]:
    """A PostgreSQL store in a fresh schema of this run's database."""
    opened = PostgresTimeSeriesStore(postgres_url(), schema=schema)
    yield opened
    opened.close()


def test_a_row_postgres_refuses_is_quarantined_and_the_rest_stored(
    pg_store: PostgresTimeSeriesStore,
    schema: str,
    registry: DeviceRegistry,
    quarantine: Quarantine,
) -> None:
    """A trigger that raises for one device's vibration: the batch is bisected, the good
    messages are stored once, and the refused ones are quarantined with PostgreSQL's error."""
    with psycopg.connect(postgres_url(), autocommit=True) as admin:
        admin.execute(
            f"CREATE FUNCTION {schema}.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF (SELECT device = 'pump-0002' AND metric = 'vibration'"
            f" FROM {schema}.series WHERE series_id = NEW.series_id) THEN"
            " RAISE EXCEPTION 'vibration sensor of pump-0002 is recalled'; END IF;"
            " RETURN NEW; END $$"
        )
        admin.execute(
            f"CREATE TRIGGER refuse BEFORE INSERT ON {schema}.readings"
            f" FOR EACH ROW EXECUTE FUNCTION {schema}.refuse()"
        )
    good = [pump_message(n) for n in range(60)]
    bad = [pump_message(n, PUMPS[1]) for n in (3, 31, 50)]
    batch = [*good[:20], bad[0], *good[20:40], bad[1], *good[40:], bad[2]]

    async def scenario() -> Running:
        async with running(pg_store, registry, quarantine) as state:
            results = await asyncio.gather(*map(state.pipeline.submit_and_wait, batch))
            # Redelivered good messages are duplicates; ingest goes on after the refusal.
            again = await asyncio.gather(*map(state.pipeline.submit_and_wait, good[:10]))
        assert all(not r.quarantined for r in again)
        refused = {r.message_id: r.reason for r in results if r.quarantined}
        assert set(refused) == {m.id for m in bad}
        assert all("vibration sensor of pump-0002 is recalled" in str(r) for r in refused.values())
        return state

    state = run(scenario())
    assert pg_store.count(TENANT) == 60 * 3
    stats = state.pipeline.stats()
    assert (stats.stored, stats.duplicates, stats.quarantined) == (180, 30, 3)
    assert stats.write_retries >= 2  # the refusal was confirmed before bisecting
    entries = {e.message.id: e for e in quarantine.find()}
    assert set(entries) == {m.id for m in bad}
    for message in bad:
        assert entries[message.id].message == message  # original bytes kept
        assert "recalled" in entries[message.id].reason


def _kill_other_backends() -> int:
    """Terminate every other connection to this run's database; how many were killed."""
    with psycopg.connect(postgres_url(), autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


def test_killed_connections_are_retried_until_every_reading_is_stored_once(
    pg_store: PostgresTimeSeriesStore, registry: DeviceRegistry, quarantine: Quarantine
) -> None:
    """The server drops the store's connections (as in a restart) between and during
    batches: the writes are retried until they land, nothing is quarantined or doubled."""
    messages = [pump_message(n) for n in range(90)]

    async def scenario() -> Running:
        async with running(pg_store, registry, quarantine) as state:
            first = await asyncio.gather(*map(state.pipeline.submit_and_wait, messages[:30]))
            assert await asyncio.to_thread(_kill_other_backends) >= 1
            second = await asyncio.gather(*map(state.pipeline.submit_and_wait, messages[30:60]))
            pending = [
                asyncio.ensure_future(state.pipeline.submit_and_wait(m)) for m in messages[60:]
            ]
            await asyncio.to_thread(_kill_other_backends)  # while those are being written
            third = await asyncio.gather(*pending)
        assert not any(r.quarantined for r in [*first, *second, *third])
        return state

    state = run(scenario())
    stats = state.pipeline.stats()
    assert stats.write_retries >= 1
    assert (stats.stored, stats.duplicates, stats.quarantined) == (270, 0, 0)
    assert pg_store.count(TENANT) == 270
    assert quarantine.count() == 0
    assert len(state.published) == 270
