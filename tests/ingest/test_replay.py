"""Quarantine replay: a contract fix plus replay recovers every quarantined reading, once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import sqlalchemy as sa

from tests.helpers import NOW_MS, PUMPS, run, telemetry
from tests.ingest.test_pipeline import pump_message, running
from trellis.core.types import RawMessage, Reading
from trellis.devices.models import BUILTIN_MODELS, MetricSpec
from trellis.devices.registry import DeviceRegistry
from trellis.ingest import Quarantine
from trellis.ingest.decode import Limits
from trellis.ingest.replay import replay
from trellis.store import SQLiteTimeSeriesStore


@pytest.fixture
def store(tmp_data_dir: Path) -> Iterator[SQLiteTimeSeriesStore]:
    """A real SQLite time-series file in the data directory."""
    opened = SQLiteTimeSeriesStore(tmp_data_dir / "timeseries.db")
    yield opened
    opened.close()


@pytest.fixture
def quarantine(metadata_engine: sa.Engine) -> Quarantine:
    """The quarantine table of the test's metadata database."""
    return Quarantine(metadata_engine)


def _stored(store: SQLiteTimeSeriesStore) -> int:
    """Readings in the store; its key (tenant, device, metric, ts) makes each one unique."""
    return store.count()


def _vibrating(n: int) -> RawMessage:
    """A pump message whose vibration (150 mm/s) the 1.0.0 contract refuses."""
    return telemetry(
        PUMPS[0],
        {"temperature": 50.0, "vibration": 150.0, "pressure": 3.0},
        ts=NOW_MS - 500_000 - n * 1000,
        seq=1000 + n,
    )


def test_contract_fix_and_replay_recover_every_reading_once(
    store: SQLiteTimeSeriesStore,
    registry: DeviceRegistry,
    quarantine: Quarantine,
) -> None:
    """Quarantined by v1.0.0, stored after v1.1.0 widens the range; a second replay adds nothing."""
    good = [pump_message(n) for n in range(1, 6)]
    bad = [_vibrating(n) for n in range(1, 11)]

    async def scenario() -> None:
        async with running(store, registry, quarantine) as state:
            for message in [*good, *bad]:
                await state.pipeline.submit_and_wait(message)

    run(scenario())
    entries = quarantine.find(pending=True)
    assert len(entries) == 10
    assert {e.contract for e in entries} == {"pump@1.0.0"}
    assert all("outside the contract range [0, 100] mm/s" in e.reason for e in entries)
    before = _stored(store)

    pump = BUILTIN_MODELS["pump"]
    fixed = msgspec.structs.replace(
        pump,
        version="1.1.0",
        metrics={**pump.metrics, "vibration": MetricSpec("mm/s", 0.0, 500.0)},
    )
    registry.put_model(fixed, "yaml")
    report = replay(entries, quarantine, registry, store, Limits())
    assert (report.recovered, report.still_quarantined, report.readings) == (10, 0, 30)
    assert report.stored == 30
    assert report.duplicates == 0
    assert {o.contract for o in report.outcomes} == {"pump@1.1.0"}
    assert _stored(store) == before + 30
    assert quarantine.count(pending=True) == 0

    again = replay(quarantine.find(), quarantine, registry, store, Limits())
    assert again.replayed == 0
    assert _stored(store) == before + 30


def test_replaying_an_already_stored_message_creates_no_duplicate(
    store: SQLiteTimeSeriesStore,
    registry: DeviceRegistry,
    quarantine: Quarantine,
) -> None:
    """A quarantined copy of a message whose readings are stored replays as duplicates only."""
    message = pump_message(7)
    store.write(registry_decode(registry, message))
    quarantine.add([(message, "copy held back by a test", "default", None)])
    report = replay(quarantine.find(), quarantine, registry, store, Limits())
    assert (report.recovered, report.readings, report.stored, report.duplicates) == (1, 3, 0, 3)
    assert _stored(store) == 3


def test_a_message_still_failing_stays_in_quarantine_with_the_new_reason(
    store: SQLiteTimeSeriesStore,
    registry: DeviceRegistry,
    quarantine: Quarantine,
) -> None:
    """Without a fix, replay keeps the entry pending and records the contract it failed."""
    quarantine.add([(_vibrating(1), "old reason", "default", None)])
    report = replay(quarantine.find(), quarantine, registry, store, Limits())
    assert (report.recovered, report.still_quarantined) == (0, 1)
    (entry,) = quarantine.find(pending=True)
    assert entry.contract == "pump@1.0.0"
    assert "outside the contract range" in entry.reason


def registry_decode(registry: DeviceRegistry, message: RawMessage) -> list[Reading]:
    """The readings of a good message, decoded as ingest would."""
    from trellis.ingest.decode import decode_telemetry

    decoded = decode_telemetry(message, registry.get, registry.models, Limits())
    assert isinstance(decoded, list)
    return decoded
