"""The ``trellis`` command: version, bad settings, and the simulator's two outputs."""

from __future__ import annotations

from pathlib import Path

import httpx
import msgspec
import pytest
from typer.testing import CliRunner

from tests.serving import serve
from trellis._version import __version__
from trellis.api.app import create_app
from trellis.cli import app
from trellis.core.config import load_settings
from trellis.core.types import RawMessage

runner = CliRunner()


def test_version() -> None:
    """``trellis version`` prints the package version."""
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.output.strip() == __version__


def test_bad_setting_stops_with_exit_code_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad environment value is reported by name and nothing starts."""
    monkeypatch.setenv("TRELLIS_HTTP__PORT", "eighty")
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 2
    assert "http.port" in result.output
    assert "TRELLIS_HTTP__PORT" in result.output


def test_fault_device_outside_the_fleet_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fault injected into a device the fleet does not have is a settings error."""
    monkeypatch.setenv("TRELLIS_SIM__PUMPS", "1")
    result = runner.invoke(app, ["sim", "--out", "x.jsonl"])
    assert result.exit_code == 2
    assert "fault_device 'pump-0002' is not in a fleet of 1 pumps" in result.output


def test_sim_requires_exactly_one_output() -> None:
    """Without --url, --out or --mqtt the simulator refuses to guess."""
    result = runner.invoke(app, ["sim"])
    assert result.exit_code == 2
    assert "exactly one of --url, --out or --mqtt" in result.output


def test_sim_writes_raw_messages_to_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``trellis sim --out`` writes one raw message per device and tick, in time order."""
    monkeypatch.setenv("TRELLIS_SIM__PUMPS", "2")
    monkeypatch.setenv("TRELLIS_SIM__ROOMS", "1")
    monkeypatch.setenv("TRELLIS_SIM__FAULT_DEVICE", "pump-0002")
    out = tmp_path / "fleet.jsonl"
    result = runner.invoke(app, ["sim", "--out", str(out), "--duration", "10"])
    assert result.exit_code == 0, result.output
    messages = [
        msgspec.json.decode(line, type=RawMessage) for line in out.read_bytes().splitlines()
    ]
    assert len(messages) == 3 * 10
    assert len({m.id for m in messages}) == len(messages)
    assert {m.topic.split("/")[3] for m in messages} == {"pump-0001", "pump-0002", "room-0001"}


def test_sim_feeds_a_running_platform_over_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``trellis sim --url`` registers its devices and every message is stored."""
    settings = load_settings(data_dir=tmp_path / "server")
    with serve(create_app(settings)) as url:
        monkeypatch.setenv("TRELLIS_SIM__PUMPS", "1")
        monkeypatch.setenv("TRELLIS_SIM__ROOMS", "1")
        monkeypatch.setenv("TRELLIS_SIM__FAULT_DEVICE", "")
        result = runner.invoke(app, ["sim", "--url", url, "--duration", "5"])
        assert result.exit_code == 0, result.output
        stats = httpx.get(f"{url}/api/v1/stats").json()
    assert stats["ingest"]["messages"] == 2 * 5
    assert stats["stored_readings"] == 2 * 5 * 3
    assert stats["ingest"]["quarantined"] == 0
