"""The raw message archive and reprocessing: every accepted message kept, re-derivable.

Real SQLite metadata and time-series files; the pipeline archives what it accepts,
and a new mapping version re-derives a past period's readings exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import NOW_MS, PUMPS, TENANT, run, telemetry
from tests.ingest.test_pipeline import pump_message, running
from trellis.contracts.importers import parse_model
from trellis.core.errors import NotFoundError
from trellis.core.types import Device, RawMessage
from trellis.devices.registry import DeviceRegistry
from trellis.ingest import Quarantine
from trellis.ingest.archive import Archive, ArchiveEntry
from trellis.ingest.decode import Limits
from trellis.ingest.reprocess import parse_instant, reprocess
from trellis.store import SQLiteTimeSeriesStore

HOUR = 3_600_000


@pytest.fixture
def store(tmp_data_dir: Path) -> Iterator[SQLiteTimeSeriesStore]:
    """A real SQLite time-series file in the data directory."""
    opened = SQLiteTimeSeriesStore(tmp_data_dir / "timeseries.db")
    yield opened
    opened.close()


@pytest.fixture
def archive(metadata_engine: sa.Engine) -> Archive:
    """The archive tables of the test's metadata database."""
    return Archive(metadata_engine)


def _ingest(
    messages: list[RawMessage],
    store: SQLiteTimeSeriesStore,
    registry: DeviceRegistry,
    archive: Archive,
) -> None:
    async def scenario() -> None:
        async with running(store, registry, Quarantine(archive.engine), archive=archive) as s:
            await asyncio.gather(*(s.pipeline.submit_and_wait(m) for m in messages))

    run(scenario())


def test_the_pipeline_archives_every_accepted_message_with_its_lineage(
    store: SQLiteTimeSeriesStore, registry: DeviceRegistry, archive: Archive
) -> None:
    """Accepted messages are archived whole; refused ones are not (quarantine has them)."""
    good = [pump_message(n) for n in range(1, 21)]
    bad = telemetry(PUMPS[0], {"vibration": 900.0}, ts=NOW_MS - 100_000, seq=99)
    _ingest([*good, bad], store, registry, archive)

    assert archive.stats().messages == 20
    entry = archive.get(good[4].id)
    assert (entry.tenant, entry.device, entry.seq) == (TENANT, PUMPS[0], 5)
    assert (entry.ts_min, entry.ts_max, entry.readings) == (NOW_MS - 5000, NOW_MS - 5000, 3)
    assert (entry.contract, entry.mapping, entry.mapping_version) == ("pump@1.0.0", None, None)
    assert archive.message(entry) == good[4]
    assert [e.message_id for e in archive.holding(TENANT, PUMPS[0], NOW_MS - 5000)] == [good[4].id]
    with pytest.raises(NotFoundError):
        archive.get(bad.id)
    stats = archive.stats()
    assert stats.stored_bytes < stats.raw_bytes


def test_a_redelivered_message_id_is_archived_once(archive: Archive) -> None:
    """The same message id in two segments keeps its first index row, without an error."""
    message = pump_message(3)
    entry = ArchiveEntry(message, TENANT, PUMPS[0], 3, NOW_MS, NOW_MS, 3, "pump@1.0.0", None)
    archive.add([entry])
    archive.add([entry, msgspec.structs.replace(entry, message=pump_message(4))])
    assert archive.stats().messages == 3  # three index rows offered, two kept
    assert archive.get(message.id).segment_id == 1
    assert len(archive.find(TENANT, PUMPS[0], 0, NOW_MS + 1)) == 2


def test_retention_deletes_whole_segments_by_receive_time(archive: Archive) -> None:
    """Segments whose newest message is older than the cutoff go; newer ones stay."""
    old = telemetry(PUMPS[0], {"pressure": 3.0}, received_ms=NOW_MS - 40 * 24 * HOUR)
    new = telemetry(PUMPS[0], {"pressure": 3.0}, received_ms=NOW_MS)
    for message in (old, new):
        archive.add([ArchiveEntry(message, TENANT, PUMPS[0], None, 1, 1, 1, "pump@1.0.0", None)])
    assert archive.delete_before(NOW_MS - 30 * 24 * HOUR) == 1
    with pytest.raises(NotFoundError):
        archive.get(old.id)
    assert archive.message(archive.get(new.id)) == new
    assert archive.stats().segments == 1


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.builds(
            RawMessage,
            id=st.uuids().map(str),
            source=st.sampled_from(["mqtt", "http", "test"]),
            topic=st.text(min_size=1, max_size=40),
            payload=st.binary(max_size=300),
            received_ms=st.integers(0, 4_102_444_800_000),
            properties=st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3),
        ),
        min_size=1,
        max_size=20,
        unique_by=lambda m: m.id,
    )
)
def test_any_message_comes_back_byte_for_byte(messages: list[RawMessage]) -> None:
    """Whatever the bytes, topic and properties, the archive returns the message unchanged."""
    engine = sa.create_engine("sqlite://")
    from trellis.store.metadata import metadata

    metadata.create_all(engine)
    archive = Archive(engine)
    archive.add([ArchiveEntry(m, TENANT, "d", None, 0, 0, 1, "pump@1.0.0", None) for m in messages])
    rows = [archive.get(m.id) for m in messages]
    assert [raw for _, raw in archive.messages(rows)] == messages
    engine.dispose()


ACME_V1 = """
name: flowmeter
version: 1.0.0
properties:
  flow: {unit: m3/h, minimum: 0, maximum: 500}
  temperature: {unit: Cel, minimum: -40, maximum: 150}
mappings:
  acme: {fields: {flow: {path: d.q}}, ts: d.t}
"""
ACME_V2 = ACME_V1.replace("1.0.0", "1.1.0").replace(
    "{flow: {path: d.q}}", "{flow: {path: d.q}, temperature: {path: d.tf, unit: degF}}"
)


def _acme(n: int) -> RawMessage:
    """A vendor payload: flow in ``d.q``, temperature in °F in ``d.tf`` (unmapped in v1)."""
    body = {"d": {"q": 10.0 + n, "tf": 212.0, "t": NOW_MS - n * 1000}}
    return telemetry("fm-1", payload=msgspec.json.encode(body))


def test_reprocess_re_derives_a_new_mapping_field_once(
    store: SQLiteTimeSeriesStore, registry: DeviceRegistry, archive: Archive
) -> None:
    """v1's mapping ignores temperature; after v1.1 maps it, reprocess adds exactly those."""
    registry.put_model(parse_model(ACME_V1)[0], "yaml")
    registry.register(Device(TENANT, "fm-1", "flowmeter", attributes={"mapping": "acme"}))
    messages = [_acme(n) for n in range(1, 11)]
    _ingest(messages, store, registry, archive)
    assert store.count() == 10
    assert archive.get(messages[0].id).mapping_version == "flowmeter@1.0.0#acme"

    registry.put_model(parse_model(ACME_V2)[0], "yaml")
    seen: list[tuple[int, int]] = []
    report = reprocess(
        archive,
        registry,
        store,
        Limits(),
        tenant=TENANT,
        model="flowmeter",
        since=NOW_MS - HOUR,
        until=NOW_MS + 1,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert (report.model, report.messages, report.readings) == ("flowmeter@1.1.0", 10, 20)
    assert (report.stored, report.duplicates, report.changed, report.refused) == (10, 10, 0, 0)
    assert seen[-1] == (10, 10)
    points = store.query(TENANT, "fm-1", "temperature", 0, NOW_MS + 1)
    assert [p.value for p in points] == pytest.approx([100.0] * 10)
    entry = archive.get(messages[0].id)
    assert entry.contract == "flowmeter@1.1.0"
    assert entry.reprocessed_ms is not None

    again = reprocess(
        archive,
        registry,
        store,
        Limits(),
        tenant=TENANT,
        model="flowmeter",
        since=NOW_MS - HOUR,
        until=NOW_MS + 1,
    )
    assert (again.stored, again.duplicates) == (0, 20)
    assert store.count() == 20


def test_reprocess_counts_but_does_not_overwrite_a_changed_value(
    store: SQLiteTimeSeriesStore, registry: DeviceRegistry, archive: Archive
) -> None:
    """A scale fix derives other values for stored keys: counted as changed, first kept."""
    registry.put_model(parse_model(ACME_V1)[0], "yaml")
    registry.register(Device(TENANT, "fm-1", "flowmeter", attributes={"mapping": "acme"}))
    _ingest([_acme(n) for n in range(1, 4)], store, registry, archive)
    scaled = ACME_V1.replace("1.0.0", "1.0.1").replace("{path: d.q}", "{path: d.q, scale: 2}")
    registry.put_model(parse_model(scaled)[0], "yaml")
    report = reprocess(
        archive, registry, store, Limits(), tenant=TENANT, model="flowmeter", since=0, until=NOW_MS
    )
    assert (report.stored, report.duplicates, report.changed) == (0, 3, 3)
    assert [p.value for p in store.query(TENANT, "fm-1", "flow", 0, NOW_MS)] == [13.0, 12.0, 11.0]


def test_reprocess_refuses_an_unknown_model_and_an_empty_period(
    store: SQLiteTimeSeriesStore, registry: DeviceRegistry, archive: Archive
) -> None:
    """Bad input is named before anything is read or written."""
    with pytest.raises(NotFoundError, match="device model 'nope'"):
        reprocess(archive, registry, store, Limits(), tenant=TENANT, model="nope", since=0, until=1)
    with pytest.raises(ValueError, match="the period is empty"):
        reprocess(archive, registry, store, Limits(), tenant=TENANT, model="pump", since=5, until=5)


@given(st.integers(0, 10_000), st.sampled_from("smhd"))
def test_a_duration_ago_is_that_long_before_now(amount: int, unit: str) -> None:
    """``7d``, ``90m``… are now minus that many units; epoch ms pass through; the rest is
    refused with a reason."""
    factor = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}[unit]
    assert parse_instant(f"{amount}{unit}", NOW_MS) == NOW_MS - amount * factor
    assert parse_instant(str(NOW_MS - amount), NOW_MS) == NOW_MS - amount
    with pytest.raises(ValueError, match="timestamp"):
        parse_instant(f"{amount}{unit}s ago", NOW_MS)


def test_the_archive_works_on_postgresql_metadata() -> None:
    """Same SQL on PostgreSQL: insert (ON CONFLICT DO NOTHING), lookups, retention."""
    import uuid

    from tests.services import postgres_url
    from trellis.store.metadata import open_metadata

    engine = open_metadata(postgres_url())
    try:
        archive = Archive(engine)
        tenant = f"pg-{uuid.uuid4().hex[:8]}"
        old = telemetry(PUMPS[0], {"pressure": 3.0}, tenant=tenant, received_ms=1_000)
        new = telemetry(PUMPS[0], {"pressure": 3.0}, tenant=tenant, message_id=str(uuid.uuid4()))
        for message, ts in ((old, 500), (new, NOW_MS)):
            entry = ArchiveEntry(message, tenant, PUMPS[0], 9, ts, ts, 1, "pump@1.0.0", "acme")
            archive.add([entry, entry])  # the repeat is ignored, not an error
        assert archive.get(new.id).mapping_version == "pump@1.0.0#acme"
        assert [e.message_id for e in archive.holding(tenant, PUMPS[0], NOW_MS)] == [new.id]
        assert archive.count(tenant, PUMPS[0], 0, NOW_MS + 1) == 2
        assert archive.message(archive.get(old.id)) == old
        assert archive.delete_before(2_000) == 1
        assert [e.message_id for e in archive.find(tenant, PUMPS[0], 0, NOW_MS + 1)] == [new.id]
    finally:
        engine.dispose()


def test_the_retention_task_deletes_old_segments_and_survives_a_failure(archive: Archive) -> None:
    """The platform's retention loop deletes on its first pass; a failing pass is logged
    and the loop keeps running until cancelled."""
    import asyncio

    from trellis.core.errors import StoreError
    from trellis.ingest.archive import run_retention

    old = telemetry(PUMPS[0], {"pressure": 3.0}, received_ms=1_000)
    archive.add([ArchiveEntry(old, TENANT, PUMPS[0], None, 1, 1, 1, "pump@1.0.0", None)])
    passes = 0
    third = asyncio.Event()

    class Flaky(Archive):
        def delete_before(self, before_ms: int) -> int:
            nonlocal passes
            passes += 1
            if passes == 3:
                loop.call_soon_threadsafe(third.set)
            if passes == 1:
                raise StoreError("disk busy")
            return super().delete_before(before_ms)

    loop = asyncio.new_event_loop()

    async def scenario() -> None:
        task = asyncio.create_task(
            run_retention(Flaky(archive.engine), days=1, every_s=0.01), name="test-retention"
        )
        await asyncio.wait_for(third.wait(), timeout=10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert archive.stats().messages == 0
