"""``trellis sim --mqtt`` and ``trellis mqtt status`` against a real broker and server."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tests.protocols.mqtt.conftest import mqtt_settings
from tests.serving import serve, wait_until
from trellis.api.app import create_app
from trellis.cli import app
from trellis.core.config import load_settings
from trellis.platform import Platform
from trellis.protocols.mqtt import MosquittoProcess
from trellis.sim.fleet import Fleet

runner = CliRunner()


def test_sim_publishes_over_mqtt_and_status_shows_it(
    tmp_path: Path, broker: MosquittoProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The simulated fleet over MQTT 5 is stored; `trellis mqtt status` reports the gateway."""
    settings = mqtt_settings(tmp_path, broker.url)
    platform = Platform(settings)
    fleet_settings = load_settings(sim={"pumps": 1, "rooms": 1, "fault_device": ""})
    for device in Fleet(fleet_settings.sim, "default").devices():
        platform.registry.register(device)
    platform.close()
    with serve(create_app(settings)) as url:
        wait_until(
            lambda: bool(httpx.get(f"{url}/api/v1/mqtt/status").json()["subscriptions"]),
            what="the gateway to subscribe",
        )
        monkeypatch.setenv("TRELLIS_SIM__PUMPS", "1")
        monkeypatch.setenv("TRELLIS_SIM__ROOMS", "1")
        monkeypatch.setenv("TRELLIS_SIM__FAULT_DEVICE", "")
        result = runner.invoke(app, ["sim", "--mqtt", broker.url, "--duration", "5"])
        assert result.exit_code == 0, result.output
        assert "10 messages acknowledged" in result.output
        wait_until(
            lambda: httpx.get(f"{url}/api/v1/stats").json()["stored_readings"] == 2 * 5 * 3,
            what="every reading stored",
        )
        status = runner.invoke(app, ["mqtt", "status", "--url", url])
        assert status.exit_code == 0, status.output
        assert "connected" in status.output
        assert "pump-0001" in status.output


def test_mqtt_status_without_a_broker_says_so(tmp_path: Path) -> None:
    """A platform with no broker answers 404 with the setting to use, and the CLI exits 1."""
    with serve(create_app(load_settings(data_dir=tmp_path / "data"))) as url:
        result = runner.invoke(app, ["mqtt", "status", "--url", url])
    assert result.exit_code == 1
    assert "TRELLIS_MQTT__URL" in result.output
