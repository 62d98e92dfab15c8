"""Lineage walks on real files: readings back to archived messages, derived data back
to readings, and the refusals of a malformed or unknown id."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.helpers import NOW_MS, PUMPS, TENANT, run
from tests.ingest.test_pipeline import pump_message, running
from trellis.alerts.service import AlertService
from trellis.core.errors import NotFoundError
from trellis.core.types import AlertSeverity, RawMessage, Reading
from trellis.devices.registry import DeviceRegistry
from trellis.ingest import Quarantine
from trellis.ingest.archive import Archive
from trellis.lineage.graph import LineageGraph, LineageWalker
from trellis.rules.model import ThresholdRule
from trellis.rules.store import RuleStore
from trellis.store import SQLiteTimeSeriesStore


@pytest.fixture
def store(tmp_data_dir: Path) -> Iterator[SQLiteTimeSeriesStore]:
    """A real SQLite time-series file in the data directory."""
    opened = SQLiteTimeSeriesStore(tmp_data_dir / "timeseries.db")
    yield opened
    opened.close()


@pytest.fixture
def messages() -> list[RawMessage]:
    """30 messages of one pump, one second apart, ending a second before NOW."""
    return [pump_message(n) for n in range(1, 31)]


@pytest.fixture
def walker(
    metadata_engine: sa.Engine,
    store: SQLiteTimeSeriesStore,
    registry: DeviceRegistry,
    messages: list[RawMessage],
) -> LineageWalker:
    """A walker over the test's databases, after the messages went through ingest."""
    archive = Archive(metadata_engine)

    async def scenario() -> None:
        async with running(store, registry, Quarantine(metadata_engine), archive=archive) as s:
            await asyncio.gather(*(s.pipeline.submit_and_wait(m) for m in messages))

    run(scenario())
    return LineageWalker(metadata_engine, store, archive, registry, AlertService(metadata_engine))


def _edges(graph: LineageGraph, relation: str) -> list[tuple[str, str]]:
    return [(e.source, e.target) for e in graph.edges if e.relation == relation]


def test_a_reading_walks_back_to_its_message_seq_and_contract(walker: LineageWalker) -> None:
    """Device + time find the archived message; its node names seq and contract version."""
    ts = NOW_MS - 7000
    graph = walker.walk(TENANT, "reading", f"{PUMPS[0]}/vibration/{ts}")
    assert graph.root == f"reading:{PUMPS[0]}/vibration/{ts}"
    ((reading, message),) = _edges(graph, "derived_from")
    nodes = {n.key: n for n in graph.nodes}
    assert nodes[reading].detail["value"] == pytest.approx(0.7)
    assert nodes[message].detail["seq"] == 7
    assert nodes[message].detail["contract"] == "pump@1.0.0"
    assert (message, "contract:pump@1.0.0") in _edges(graph, "validated_by")


def test_a_message_lists_the_readings_it_became_and_its_bytes(
    walker: LineageWalker, messages: list[RawMessage]
) -> None:
    """The message node carries the original payload; each of its readings points to it."""
    message = messages[2]
    graph = walker.walk(TENANT, "message", message.id)
    root = next(n for n in graph.nodes if n.key == graph.root)
    assert root.detail["payload"] == message.payload.decode()
    derived = sorted(source for source, target in _edges(graph, "derived_from"))
    ts = NOW_MS - 3000
    assert derived == [
        f"reading:{PUMPS[0]}/{metric}/{ts}" for metric in ("pressure", "temperature", "vibration")
    ]


def test_a_rollup_minute_walks_to_its_readings_and_their_messages(walker: LineageWalker) -> None:
    """A 1-minute rollup points to each reading of the minute, each to its message."""
    minute = (NOW_MS - 20_000) // 60_000 * 60_000
    graph = walker.walk(TENANT, "rollup", f"{PUMPS[0]}/pressure/{minute}")
    readings = [t for s, t in _edges(graph, "derived_from") if s == graph.root]
    expected = sum(1 for n in range(1, 31) if minute <= NOW_MS - n * 1000 < minute + 60_000)
    assert len(readings) == expected
    to_messages = [s for s, t in _edges(graph, "derived_from") if t.startswith("message:")]
    assert sorted(to_messages) == sorted(readings)


def test_an_alert_walks_to_its_rule_version_and_readings_window(
    walker: LineageWalker, metadata_engine: sa.Engine
) -> None:
    """The alert names the rule (with a digest of its definition) and the readings its
    window spans, each resolved to its source message."""
    RuleStore(metadata_engine).put(
        TENANT,
        ThresholdRule(
            id="hot",
            metric="temperature",
            op=">",
            threshold=60.0,
            severity=AlertSeverity.MAJOR,
            for_s=10,
        ),
    )
    alert = AlertService(metadata_engine).raise_alert(
        tenant=TENANT,
        device=PUMPS[0],
        rule="hot",
        type="threshold",
        severity=AlertSeverity.MAJOR,
        message="temperature above 60",
        value=61.0,
        at_ms=NOW_MS - 2000,
        metric="temperature",
    )
    graph = walker.walk(TENANT, "alert", str(alert.id))
    nodes = {n.key: n for n in graph.nodes}
    ((_, rule),) = _edges(graph, "raised_by")
    assert len(nodes[rule].detail["version"]) == 12
    readings = [t for s, t in _edges(graph, "derived_from") if s == graph.root]
    # The window: the label margin (5 min) before the raise, up to the raise.
    assert len(readings) == 29
    assert all(nodes[r].detail["ts"] <= NOW_MS - 2000 for r in readings)
    assert len([s for s, t in _edges(graph, "derived_from") if t.startswith("message:")]) == 29


def test_a_reading_without_an_archived_message_says_so(
    walker: LineageWalker, store: SQLiteTimeSeriesStore
) -> None:
    """A reading written straight to the store has an explicit 'unknown' source."""
    store.write([Reading(TENANT, PUMPS[1], "pressure", NOW_MS - 999, 3.0)])
    graph = walker.walk(TENANT, "reading", f"{PUMPS[1]}/pressure/{NOW_MS - 999}")
    ((_, source),) = _edges(graph, "derived_from")
    assert source.startswith("unknown:")


BAD_IDS = [
    ("reading", "pump-0001/temperature", ValueError, "is not device/metric/epoch-ms"),
    ("reading", f"pump-0001/temperature/{NOW_MS + 5}", NotFoundError, "reading"),
    ("message", "no-such-message", NotFoundError, "archived message"),
    ("alert", "abc", ValueError, "is not a number"),
    ("alert", "999", NotFoundError, "alert"),
    ("model", "pump-anomaly", ValueError, "is not name@version"),
    ("model", "pump-anomaly@9.9.9", NotFoundError, "model version"),
    ("prediction", "12", NotFoundError, "prediction batch"),
    ("rollup", f"pump-0001/co2/{NOW_MS}", NotFoundError, "rollup"),
    ("kpi", "1", ValueError, "unknown lineage kind"),
]


def test_bad_ids_are_refused_with_the_reason(walker: LineageWalker) -> None:
    """Malformed ids are ValueErrors, missing things NotFoundErrors; each names the id."""
    for kind, ident, error, match in BAD_IDS:
        with pytest.raises(error, match=match):
            walker.walk(TENANT, kind, ident)


def test_another_tenants_message_is_not_found(
    walker: LineageWalker, messages: list[RawMessage]
) -> None:
    """A message id of another tenant is as unknown as one that does not exist."""
    walker.walk(TENANT, "message", messages[3].id)
    with pytest.raises(NotFoundError):
        walker.walk("other", "message", messages[3].id)
