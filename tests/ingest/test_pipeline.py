"""The ingest pipeline end to end: real SQLite store, metadata database, quarantine and bus.

Every test accounts for every message: stored (once), or quarantined with its bytes
and reason. Tasks are driven by the pipeline's own acknowledgements and by bounded
``asyncio.sleep(0)`` loops, never by sleeping for a while.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest

from tests.helpers import NOW_MS, PUMPS, ROOMS, TENANT, run, telemetry
from trellis.bus import InProcessBus
from trellis.core.config import IngestSettings
from trellis.core.errors import ClosedError, StoreError
from trellis.core.types import RawMessage, Reading
from trellis.devices.registry import DeviceRegistry
from trellis.ingest import IngestPipeline, Quarantine
from trellis.ingest.archive import Archive
from trellis.store import SQLiteTimeSeriesStore, TimeSeriesStore, WriteResult

TURNS = 50


@pytest.fixture
def store(tmp_data_dir: Path) -> Iterator[SQLiteTimeSeriesStore]:
    """A real SQLite time-series file in the data directory."""
    opened = SQLiteTimeSeriesStore(tmp_data_dir / "timeseries.db")
    yield opened
    opened.close()


@dataclass
class Running:
    """A pipeline whose worker runs, and what a bus subscriber has received so far."""

    pipeline: IngestPipeline
    bus: InProcessBus[Reading]
    published: list[Reading] = field(default_factory=list)


@asynccontextmanager
async def running(
    store: TimeSeriesStore,
    registry: DeviceRegistry,
    quarantine: Quarantine,
    settings: IngestSettings | None = None,
    archive: Archive | None = None,
) -> AsyncIterator[Running]:
    """Start the worker and a draining subscriber; on exit close, drain and join both."""
    bus: InProcessBus[Reading] = InProcessBus(capacity=4)
    pipeline = IngestPipeline(
        store, registry, quarantine, bus, settings or IngestSettings(), archive
    )
    state = Running(pipeline, bus)

    async def consume() -> None:
        async for batch in bus.subscribe("test"):
            state.published.extend(batch)

    async with asyncio.TaskGroup() as tasks:
        consumer = tasks.create_task(consume(), name="test-subscriber")
        worker = tasks.create_task(pipeline.run(), name="ingest-worker")
        yield state
        await pipeline.close()
        await asyncio.wait_for(worker, timeout=10)
        bus.close()
        await asyncio.wait_for(consumer, timeout=10)


def pump_message(n: int, device: str = PUMPS[0]) -> RawMessage:
    """The n-th message of a pump: three metrics, n seconds before NOW."""
    return telemetry(
        device,
        {"temperature": 40.0 + n % 50, "vibration": (n % 97) / 10, "pressure": 3.5},
        ts=NOW_MS - n * 1000,
        seq=n,
    )


def room_message(n: int, device: str = ROOMS[0]) -> RawMessage:
    """The n-th message of a room: three metrics, n seconds before NOW."""
    return telemetry(
        device,
        {"temperature": 21.5, "co2": 400.0 + n, "occupancy": n % 12},
        ts=NOW_MS - n * 1000,
        seq=n,
    )


BAD_MESSAGES: list[tuple[RawMessage, str]] = [
    (telemetry(PUMPS[0], payload=b'{"values": {'), "malformed JSON: Input data was truncated"),
    (
        telemetry(PUMPS[0], {"temperature": "hot"}),
        "invalid payload: Expected `float`, got `str` - at `$.values.temperature`",
    ),
    (telemetry("pump-9999", {"temperature": 20}), "unknown device 'pump-9999' in tenant 'default'"),
    (
        telemetry(ROOMS[0], {"co2": 50_000}),
        "value 50000.0 of 'co2' is outside the contract range [0, 40000] ppm",
    ),
    (telemetry(PUMPS[1], {}), "invalid payload: 'values' is empty"),
]


def test_valid_messages_are_stored_and_published(
    store: SQLiteTimeSeriesStore, registry: DeviceRegistry, quarantine: Quarantine
) -> None:
    """Good messages are acknowledged, stored with their lineage and published on the bus."""
    messages = [pump_message(1), room_message(1), pump_message(2, PUMPS[1])]

    async def scenario() -> Running:
        async with running(store, registry, quarantine) as state:
            results = [await state.pipeline.submit_and_wait(m) for m in messages]
        assert [(r.message_id, r.readings, r.quarantined, r.reason) for r in results] == [
            (m.id, 3, False, None) for m in messages
        ]
        return state

    state = run(scenario())
    assert store.count(TENANT) == 9
    assert store.latest(TENANT, ROOMS[0])[0].metric == "co2"
    assert [p.value for p in store.query(TENANT, PUMPS[0], "temperature", 0, 2**62)] == [41.0]
    assert len(state.published) == 9
    assert {r.source_msg for r in state.published} == {m.id for m in messages}
    assert {(r.device, r.seq) for r in state.published} == {
        (PUMPS[0], 1),
        (ROOMS[0], 1),
        (PUMPS[1], 2),
    }
    stats = state.pipeline.stats()
    assert (stats.messages, stats.readings, stats.stored, stats.duplicates) == (3, 9, 9, 0)
    assert quarantine.count() == 0


def test_redelivered_message_is_stored_once(
    store: SQLiteTimeSeriesStore, registry: DeviceRegistry, quarantine: Quarantine
) -> None:
    """The same message submitted twice (QoS 1 redelivery) is stored once, counted as duplicates."""
    message = pump_message(7)

    async def scenario() -> Running:
        async with running(store, registry, quarantine) as state:
            first = await state.pipeline.submit_and_wait(message)
            again = await state.pipeline.submit_and_wait(message)
        assert first.readings == again.readings == 3
        assert not again.quarantined
        return state

    state = run(scenario())
    assert store.count() == 3
    stats = state.pipeline.stats()
    assert (stats.readings, stats.stored, stats.duplicates) == (6, 3, 3)


def test_bad_messages_are_quarantined_whole_with_reason(
    store: SQLiteTimeSeriesStore, registry: DeviceRegistry, quarantine: Quarantine
) -> None:
    """Each bad message is acknowledged as quarantined and kept with its bytes and reason."""
    with_properties = msgspec.structs.replace(
        BAD_MESSAGES[0][0], properties={"content-type": "application/json"}
    )
    bad = [(with_properties, BAD_MESSAGES[0][1]), *BAD_MESSAGES[1:]]

    async def scenario() -> None:
        async with running(store, registry, quarantine) as state:
            for raw, reason in bad:
                result = await state.pipeline.submit_and_wait(raw)
                assert (result.message_id, result.readings) == (raw.id, 0)
                assert result.quarantined
                assert result.reason == reason
        assert state.pipeline.stats().quarantined == len(bad)
        assert state.published == []

    run(scenario())
    assert store.count() == 0
    entries = {entry.message.id: entry for entry in quarantine.find(limit=100)}
    assert len(entries) == len(bad)
    for raw, reason in bad:
        entry = entries[raw.id]
        assert entry.message == raw
        assert entry.reason == reason
        assert entry.tenant == TENANT
    assert quarantine.get(entries[with_properties.id].id, None).message.properties == {
        "content-type": "application/json"
    }


def test_close_drains_every_queued_message(
    store: SQLiteTimeSeriesStore, registry: DeviceRegistry, quarantine: Quarantine
) -> None:
    """Messages queued before close are all processed before run() returns: N in, N accounted."""
    good = [
        pump_message(n, PUMPS[n % 2]) if n % 3 else room_message(n, ROOMS[n % 2])
        for n in range(400)
    ]
    bad = [raw for raw, _ in BAD_MESSAGES] * 4
    messages = good[:200] + bad + good[200:]
    settings = IngestSettings(queue_size=1_000, batch_max=32, batch_wait_ms=1)

    async def scenario() -> Running:
        async with running(store, registry, quarantine, settings) as state:
            for message in messages:
                await state.pipeline.submit(message)
            # Leaving the block closes the pipeline with messages still queued.
            assert state.pipeline.stats().queued > 0
        with pytest.raises(ClosedError):
            await state.pipeline.submit(pump_message(9999))
        return state

    state = run(scenario())
    stats = state.pipeline.stats()
    assert stats.messages == len(messages)
    assert stats.queued == 0
    assert stats.quarantined == len(bad) == quarantine.count()
    assert stats.stored == 3 * len(good) == store.count()
    assert len(state.published) == 3 * len(good)
    assert stats.batches >= len(messages) // 32


def test_queued_messages_are_processed_when_the_worker_starts_after_close(
    store: SQLiteTimeSeriesStore, registry: DeviceRegistry, quarantine: Quarantine
) -> None:
    """A pipeline closed before its worker ran still processes everything queued, then stops."""

    async def scenario() -> None:
        bus: InProcessBus[Reading] = InProcessBus()
        pipeline = IngestPipeline(store, registry, quarantine, bus, IngestSettings())
        for n in range(50):
            await pipeline.submit(pump_message(n))
        await pipeline.close()
        await asyncio.wait_for(pipeline.run(), timeout=10)
        assert pipeline.stats().messages == 50

    run(scenario())
    assert store.count() == 150


class FlakyStore:
    """The real store behind a disk that fails the first ``failures`` writes."""

    def __init__(self, inner: TimeSeriesStore, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.calls = 0

    def write(self, readings: Sequence[Reading]) -> WriteResult:
        self.calls += 1
        if self.calls <= self.failures:
            raise StoreError(f"disk I/O error (injected, call {self.calls})")
        return self.inner.write(readings)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_failing_store_is_retried_until_every_reading_is_stored_once(
    store: SQLiteTimeSeriesStore,
    registry: DeviceRegistry,
    quarantine: Quarantine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Failed writes are retried (counted in write_retries) and nothing is lost or doubled."""
    failures = 3
    flaky = FlakyStore(store, failures)
    messages = [pump_message(n) for n in range(20)]

    async def scenario() -> Running:
        async with running(flaky, registry, quarantine) as state:  # type: ignore[arg-type]
            results = await asyncio.gather(*map(state.pipeline.submit_and_wait, messages))
        assert all(not r.quarantined and r.readings == 3 for r in results)
        return state

    state = run(scenario())
    stats = state.pipeline.stats()
    assert stats.write_retries == failures
    assert (stats.stored, stats.duplicates) == (60, 0)
    assert store.count() == 60
    assert len(state.published) == 60
    assert "storage write failed, retrying" in caplog.text
    assert "recovered after 3 retries" in caplog.text


def test_full_queue_makes_submit_wait(
    store: SQLiteTimeSeriesStore, registry: DeviceRegistry, quarantine: Quarantine
) -> None:
    """With queue_size=2 and no worker, the third submit waits (counted in source_waits)."""

    async def scenario() -> None:
        bus: InProcessBus[Reading] = InProcessBus()
        pipeline = IngestPipeline(
            store, registry, quarantine, bus, IngestSettings(queue_size=2, batch_wait_ms=0)
        )
        await pipeline.submit(pump_message(1))
        await pipeline.submit(pump_message(2))
        third = asyncio.create_task(pipeline.submit(pump_message(3)), name="third-submit")
        for _ in range(TURNS):
            await asyncio.sleep(0)
        assert not third.done()
        stats = pipeline.stats()
        assert (stats.queued, stats.capacity, stats.source_waits) == (2, 2, 1)

        worker = asyncio.create_task(pipeline.run(), name="ingest-worker")
        await asyncio.wait_for(third, timeout=10)
        await pipeline.close()
        await asyncio.wait_for(worker, timeout=10)
        assert pipeline.stats().messages == 3

    run(scenario())
    assert store.count() == 9


def test_a_row_the_store_refuses_is_quarantined_and_the_rest_stored(
    store: SQLiteTimeSeriesStore,
    registry: DeviceRegistry,
    quarantine: Quarantine,
    tmp_data_dir: Path,
) -> None:
    """A batch the database keeps refusing (here a trigger) is bisected: every other
    message is stored once, the refused one is quarantined whole with the store's error."""
    connection = sqlite3.connect(tmp_data_dir / "timeseries.db")  # the store fixture's file
    connection.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON landing WHEN NEW.series_id IN"
        " (SELECT series_id FROM series WHERE device = 'pump-0002')"
        " BEGIN SELECT RAISE(ABORT, 'pump-0002 is decommissioned'); END"
    )
    connection.close()
    good = [pump_message(n) for n in range(40)]
    bad = pump_message(7, PUMPS[1])

    async def scenario() -> Running:
        async with running(store, registry, quarantine) as state:
            results = await asyncio.gather(
                *map(state.pipeline.submit_and_wait, [*good[:20], bad, *good[20:]])
            )
            again = await state.pipeline.submit_and_wait(pump_message(99))  # not stalled
        assert not again.quarantined
        refused = [r for r in results if r.quarantined]
        assert [r.message_id for r in refused] == [bad.id]
        assert refused[0].reason is not None
        assert "pump-0002 is decommissioned" in refused[0].reason
        assert all(r.readings == 3 for r in results if not r.quarantined)
        return state

    state = run(scenario())
    assert store.count() == 41 * 3
    stats = state.pipeline.stats()
    assert (stats.stored, stats.duplicates, stats.quarantined) == (41 * 3, 0, 1)
    assert len(state.published) == 41 * 3
    [entry] = quarantine.find()
    assert entry.message == bad
    assert entry.tenant == TENANT
    assert "pump-0002 is decommissioned" in entry.reason
