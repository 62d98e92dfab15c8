"""Done-when, end to end through the CLI: a test run's quarantined readings are all
recovered by a contract fix plus ``trellis quarantine replay``, each stored once; then
``trellis lineage`` and ``trellis reprocess`` on the same data directory."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from typer.testing import CliRunner

from tests.helpers import run
from trellis.cli import app
from trellis.core.clock import now_ms
from trellis.core.config import load_settings
from trellis.core.types import Device, RawMessage
from trellis.devices.registry import DeviceRegistry
from trellis.ingest.decode import telemetry_topic
from trellis.platform import Platform
from trellis.store import SQLiteTimeSeriesStore
from trellis.store.metadata import open_metadata

runner = CliRunner()
BOILER = Path(__file__).parent / "data" / "models" / "boiler.yaml"


def _message(n: int, flow_temp: float, at: int) -> RawMessage:
    body = {"ts": at - n * 1000, "seq": n, "values": {"flow_temp": flow_temp, "gas_pressure": 2.0}}
    return RawMessage(
        id=f"boiler-msg-{n}",
        source="test",
        topic=telemetry_topic("default", "boiler-1"),
        payload=msgspec.json.encode(body),
        received_ms=at,
    )


def _ingest(data: Path, messages: list[RawMessage]) -> tuple[int, int]:
    """Run a platform on ``data`` and send ``messages``; (stored, quarantined)."""
    platform = Platform(load_settings(data_dir=data))

    async def scenario() -> tuple[int, int]:
        async with platform.running() as running:
            results = [await running.pipeline.submit_and_wait(m) for m in messages]
        return (
            sum(r.readings for r in results if not r.quarantined),
            sum(1 for r in results if r.quarantined),
        )

    try:
        return run(scenario())
    finally:
        platform.close()


def _stored(data: Path) -> int:
    store = SQLiteTimeSeriesStore(data / "timeseries.db")
    try:
        return store.count()
    finally:
        store.close()


def test_contract_fix_and_replay_through_the_cli_recover_every_reading_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 boiler messages, 8 above the 110 °C contract maximum: quarantined; a v1.1.0 with
    a 130 °C maximum imported through the CLI; replay stores all 16 readings once."""
    data = tmp_path / ".trellis"
    events = tmp_path / "lineage.jsonl"
    monkeypatch.setenv("TRELLIS_DATA_DIR", str(data))
    monkeypatch.setenv("TRELLIS_FABRIC__LINEAGE_FILE", str(events))
    assert runner.invoke(app, ["device-models", "import", str(BOILER)]).exit_code == 0
    engine = open_metadata(f"sqlite:///{data / 'trellis.db'}")
    DeviceRegistry(engine).register(Device("default", "boiler-1", "boiler"))
    engine.dispose()
    at = now_ms()
    messages = [_message(n, 120.0 if n % 5 in (0, 3) else 80.0, at) for n in range(1, 21)]
    stored, quarantined = _ingest(data, messages)
    assert (stored, quarantined) == (24, 8)

    listed = runner.invoke(app, ["quarantine", "list"])
    assert "8 pending" in listed.output
    fixed = tmp_path / "boiler-1.1.yaml"
    fixed.write_text(
        BOILER.read_text().replace("1.0.0", "1.1.0").replace("maximum: 110", "maximum: 130")
    )
    assert runner.invoke(app, ["device-models", "import", str(fixed)]).exit_code == 0

    replayed = runner.invoke(app, ["quarantine", "replay"])
    assert replayed.exit_code == 0, replayed.output
    assert "recovered 8 messages (16 readings stored, 0 already stored)" in replayed.output
    assert _stored(data) == 40
    again = runner.invoke(app, ["quarantine", "replay"])
    assert "recovered 0 messages" in again.output
    assert _stored(data) == 40
    kinds = [
        (e["job"]["name"], e["eventType"]) for e in map(json.loads, events.read_text().splitlines())
    ]
    assert ("quarantine.replay", "COMPLETE") in kinds
    assert [k for k in kinds if k[0] == "ingest"] == [("ingest", "START"), ("ingest", "COMPLETE")]

    # The recovered reading's lineage names its message, seq and the fixing contract.
    ts = at - 5000
    shown = runner.invoke(app, ["lineage", "reading", f"boiler-1/flow_temp/{ts}", "--json"])
    assert shown.exit_code == 0, shown.output
    graph = json.loads(shown.stdout)
    source = next(n for n in graph["nodes"] if n["kind"] == "message")
    assert (source["id"], source["detail"]["seq"]) == ("boiler-msg-5", 5)
    assert source["detail"]["contract"] == "boiler@1.1.0"
    tree = runner.invoke(app, ["lineage", "reading", f"boiler-1/flow_temp/{ts}"])
    assert "boiler-msg-5" in tree.output
    missing = runner.invoke(app, ["lineage", "alert", "77"])
    assert missing.exit_code == 1
    assert "alert 77 not found" in missing.output

    # Reprocessing the period with the current version adds nothing: all already stored.
    first = runner.invoke(app, ["reprocess", "--model", "boiler", "--since", "1h"])
    assert first.exit_code == 0, first.output
    assert "20 messages of 1 devices, 40 readings: 0 new, 40 already stored" in first.output
    assert _stored(data) == 40
    unknown = runner.invoke(app, ["reprocess", "--model", "kettle", "--since", "1h"])
    assert unknown.exit_code == 1
    assert "device model 'kettle' not found" in unknown.output

    # The archive holds the 12 accepted and the 8 recovered messages; pruning by age.
    shown = runner.invoke(app, ["archive", "stats"])
    assert shown.exit_code == 0, shown.output
    assert "20" in shown.output
    assert runner.invoke(app, ["archive", "prune", "--older-than", "soon"]).exit_code == 2
    pruned = runner.invoke(app, ["archive", "prune", "--older-than", "0s"])
    assert "deleted 20 archived messages" in pruned.output
