"""Device commands over MQTT 5 request/response against a real broker: answered, timed
out, device error; the API and the CLI faces; bad requests refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from paho.mqtt.client import Client, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from typer.testing import CliRunner

from tests.protocols.mqtt.conftest import devices, mqtt_settings
from tests.serving import serve, wait_until
from trellis.api.app import create_app
from trellis.cli import app
from trellis.core.config import load_settings
from trellis.platform import Platform
from trellis.protocols.mqtt import MosquittoProcess
from trellis.protocols.mqtt._paho import publish_properties

runner = CliRunner()


class SimulatedDevices:
    """Devices that obey commands: dev-0001 answers, dev-0002 fails, dev-0003 is silent."""

    def __init__(self, port: int) -> None:
        self.seen: list[MQTTMessage] = []
        self.client = Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("trellis/v1/default/+/commands", qos=1)
        self.client.loop_start()

    def _on_message(self, client: Client, userdata: object, message: MQTTMessage) -> None:
        self.seen.append(message)
        device = message.topic.split("/")[3]
        request = msgspec.json.decode(message.payload)
        if device == "dev-0001":
            answer = {"status": "ok", "result": {"did": request["name"], "args": request["args"]}}
        elif device == "dev-0002":
            answer = {"status": "error", "reason": "valve stuck"}
        else:
            return
        properties = publish_properties()
        properties.CorrelationData = message.properties.CorrelationData
        client.publish(
            message.properties.ResponseTopic,
            msgspec.json.encode(answer),
            qos=1,
            properties=properties,
        )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def running(tmp_path: Path, broker: MosquittoProcess) -> Iterator[tuple[str, SimulatedDevices]]:
    """A served platform on the broker with three registered devices that listen."""
    settings = mqtt_settings(tmp_path, broker.url)
    platform = Platform(settings)
    for device in devices(3):
        platform.registry.register(device)
    platform.close()
    fleet = SimulatedDevices(broker.port)
    try:
        with serve(create_app(settings)) as url:
            wait_until(
                lambda: len(httpx.get(f"{url}/api/v1/mqtt/status").json()["subscriptions"]) == 3,
                what="the gateway to subscribe",
            )
            yield url, fleet
    finally:
        fleet.close()


def _command(url: str, device: str, **body: object) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/devices/{device}/commands", json=body, timeout=30)


def test_a_command_is_answered_through_the_response_topic(
    running: tuple[str, SimulatedDevices],
) -> None:
    """The device gets response topic, correlation and expiry; its answer comes back."""
    url, fleet = running
    response = _command(url, "dev-0001", name="reboot", args={"delay_s": 5}, timeout_s=5)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["outcome"] == "answered"
    assert result["result"] == {"did": "reboot", "args": {"delay_s": 5}}
    request = fleet.seen[-1]
    assert request.topic == "trellis/v1/default/dev-0001/commands"
    assert request.properties.ResponseTopic == "trellis/v1/default/dev-0001/responses"
    assert request.properties.CorrelationData.hex() == result["correlation"]
    assert 1 <= request.properties.MessageExpiryInterval <= 5


def test_a_device_error_and_a_silent_device_give_clear_results(
    running: tuple[str, SimulatedDevices],
) -> None:
    """A failing device yields device_error with its reason; a silent one times out."""
    url, _ = running
    failed = _command(url, "dev-0002", name="open-valve", timeout_s=5).json()
    assert failed["outcome"] == "device_error"
    assert failed["reason"] == "valve stuck"
    silent = _command(url, "dev-0003", name="open-valve", timeout_s=0.5).json()
    assert silent["outcome"] == "timed_out"
    assert "no answer from device 'dev-0003' within 0.5 s" in silent["reason"]
    assert silent["elapsed_ms"] >= 490  # the loop clock may fire the timer a hair early


def test_bad_command_requests_are_refused(running: tuple[str, SimulatedDevices]) -> None:
    """Unknown device 404; bad name, args or timeout 422; nothing is published."""
    url, fleet = running
    assert _command(url, "nobody", name="reboot").status_code == 404
    assert _command(url, "dev-0001", name="bad name!").status_code == 422
    assert _command(url, "dev-0001", name="reboot", args=[1]).status_code == 422
    assert _command(url, "dev-0001", name="reboot", timeout_s=0).status_code == 422
    assert _command(url, "dev-0001", name="reboot", timeout_s=301).status_code == 422
    assert fleet.seen == []


def test_cli_sends_a_command_and_exits_1_when_it_is_not_answered(
    running: tuple[str, SimulatedDevices],
) -> None:
    """`trellis mqtt command` prints the answer; timeout and device error exit 1."""
    url, _ = running
    ok = runner.invoke(
        app, ["mqtt", "command", "dev-0001", "reboot", "--args", '{"delay_s": 1}', "--url", url]
    )
    assert ok.exit_code == 0, ok.output
    assert "answered" in ok.output
    assert '"delay_s": 1' in ok.output
    failed = runner.invoke(app, ["mqtt", "command", "dev-0002", "x", "--url", url])
    assert failed.exit_code == 1
    assert "valve stuck" in failed.output
    silent = runner.invoke(
        app, ["mqtt", "command", "dev-0003", "x", "--timeout", "0.3", "--url", url]
    )
    assert silent.exit_code == 1
    assert "timed_out" in silent.output
    bad = runner.invoke(app, ["mqtt", "command", "dev-0001", "x", "--args", "[1", "--url", url])
    assert bad.exit_code == 2
    assert "--args is not JSON" in bad.output


def test_a_command_without_a_broker_is_refused(tmp_path: Path) -> None:
    """With no MQTT broker the API answers 503 and names the setting."""
    settings = load_settings(data_dir=tmp_path / "data")
    platform = Platform(settings)
    platform.registry.register(devices(1)[0])
    platform.close()
    with serve(create_app(settings)) as url:
        response = _command(url, "dev-0001", name="reboot")
    assert response.status_code == 503
    assert "TRELLIS_MQTT__URL" in response.json()["detail"]
