"""``trellis sim --scenario --mqtt``: a physics fleet over MQTT 5 into a running platform."""

from __future__ import annotations

from pathlib import Path

import httpx
from typer.testing import CliRunner

from tests.protocols.mqtt.conftest import mqtt_settings
from tests.serving import serve, wait_until
from tests.sim.test_cli_sim import SCENARIO
from trellis.api.app import create_app
from trellis.cli import app
from trellis.protocols.mqtt import MosquittoProcess

runner = CliRunner()


def test_a_scenario_over_mqtt_is_stored_by_the_platform(
    tmp_path: Path, broker: MosquittoProcess
) -> None:
    """Pumps, zones, a chiller and a meter published over MQTT 5: every reading stored."""
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO.replace("duration_h = 0.5", "duration_h = 0.1"))
    settings = mqtt_settings(tmp_path, broker.url)
    with serve(create_app(settings)) as url:
        wait_until(
            lambda: bool(httpx.get(f"{url}/api/v1/mqtt/status").json()["subscriptions"]),
            what="the gateway to subscribe",
        )
        registered = runner.invoke(
            app, ["sim", "--scenario", str(scenario), "--url", url, "--seed", "4"]
        )
        assert registered.exit_code == 0, registered.output
        before = httpx.get(f"{url}/api/v1/stats").json()["stored_readings"]
        assert before == 6 * (2 * 8 + 3 + 4 + 2)
        result = runner.invoke(
            app, ["sim", "--scenario", str(scenario), "--mqtt", broker.url, "--seed", "5"]
        )
        assert result.exit_code == 0, result.output
        assert "30 messages acknowledged" in result.output
        wait_until(
            lambda: httpx.get(f"{url}/api/v1/stats").json()["stored_readings"] == 2 * before,
            what="every reading stored",
        )
        assert httpx.get(f"{url}/api/v1/stats").json()["ingest"]["quarantined"] == 0
