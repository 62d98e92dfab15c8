"""Rule actions that reach outside the engine, on a running platform with a real
Mosquitto: device commands (MQTT 5 request/response) with answer, device error,
timeout and unknown device; desired state sent to the device and its reported state
reconciled; derived metrics through ingest (stored, contract-checked, seen by other
rules); and the loops of derived metrics that are refused."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from paho.mqtt.client import Client, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from typer.testing import CliRunner

from tests.helpers import TENANT, telemetry
from tests.protocols.mqtt.conftest import devices, eventually, mqtt_settings
from tests.protocols.mqtt.test_commands import SimulatedDevices
from tests.serving import serve, wait_until
from trellis.api.app import create_app
from trellis.cli import app
from trellis.core.clock import now_ms
from trellis.core.types import AlertSeverity, Device
from trellis.devices.models import DeviceModel, MetricSpec
from trellis.platform import Platform
from trellis.protocols.mqtt import MosquittoProcess
from trellis.rules.spec import CommandAction, DesiredStateAction, EmitAction, StreamRule
from trellis.rules.store import parse_rule

_clock = itertools.count(1)


def _hot(metric: str = "temperature", **fields: Any) -> dict[str, Any]:
    return {"metric": metric, "severity": "major", "condition": "value > 80.0", **fields}


async def _send(platform: Platform, device: str, values: dict[str, float]) -> None:
    """One telemetry message through ingest, a fresh timestamp each time."""
    ts = now_ms() - 10_000 + next(_clock)
    result = await platform.pipeline.submit_and_wait(
        telemetry(device, values, ts=ts, received_ms=now_ms())
    )
    assert not result.quarantined, result.reason


@contextlib.asynccontextmanager
async def _running(
    tmp_path: Path, broker: MosquittoProcess, setup: Callable[[Platform], None]
) -> AsyncIterator[Platform]:
    """A running platform on ``broker`` with three pumps, after ``setup`` ran on it."""
    platform = Platform(mqtt_settings(tmp_path, broker.url))
    for device in devices(3):
        platform.registry.register(device)
    setup(platform)
    try:
        async with platform.running() as running:
            assert running.mqtt is not None
            async with asyncio.timeout(20):
                await running.mqtt.wait_ready()
            yield running
    finally:
        platform.close()


def _dead(platform: Platform, rule: str) -> list[tuple[str, str]]:
    letters = platform.rule_engine.actions.dead_letters(TENANT)
    return sorted((d.action, d.error) for d in letters if d.rule == rule)


def test_command_actions_answered_refused_timed_out_and_to_an_unknown_device(
    tmp_path: Path, broker: MosquittoProcess
) -> None:
    """The answering device runs the command; a device error, a silent device and a
    device that does not exist each become a dead letter that says why."""
    cmd = CommandAction(name="reduce-load", args={"pct": 20}, timeout_s=0.5)
    ghost = CommandAction(name="reduce-load", device="ghost", timeout_s=0.5)

    def setup(platform: Platform) -> None:
        platform.rules.put(TENANT, StreamRule(id="shed", **_hot(actions=[cmd])))
        platform.rules.put(TENANT, StreamRule(id="ghost", **_hot("pressure", actions=[ghost])))

    async def scenario() -> None:
        fleet = SimulatedDevices(broker.port)
        try:
            async with _running(tmp_path, broker, setup) as platform:
                for device in ("dev-0001", "dev-0002", "dev-0003"):
                    await _send(platform, device, {"temperature": 95.0})
                await _send(platform, "dev-0001", {"pressure": 95.0})
                await eventually(lambda: len(_dead(platform, "shed")) == 2, "two dead letters")
                await eventually(lambda: len(_dead(platform, "ghost")) == 1, "ghost refused")
                stats = {s.rule: s for s in platform.rule_engine.stats(TENANT)}
                assert (stats["shed"].actions_delivered, stats["shed"].actions_failed) == (1, 2)
                asked = {m.topic.split("/")[3]: msgspec.json.decode(m.payload) for m in fleet.seen}
                assert asked["dev-0001"] == {"name": "reduce-load", "args": {"pct": 20}}
                assert sorted(asked) == ["dev-0001", "dev-0002", "dev-0003"]  # not "ghost"
                errors = [error for _, error in _dead(platform, "shed")]
                assert "valve stuck" in errors
                assert "no answer from device 'dev-0003' within 0.5 s" in errors
                [(action, error)] = _dead(platform, "ghost")
                assert action == "command:reduce-load"
                assert error == "unknown device 'ghost' in tenant 'default'"
        finally:
            fleet.close()

    asyncio.run(scenario())


class TwinDevice:
    """A device that applies its desired state from ``config`` and reports it back."""

    def __init__(self, port: int, device: str) -> None:
        self.device = device
        self.configs: list[dict[str, Any]] = []
        self.client = Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"trellis/v1/default/{device}/config", qos=1)
        self.client.loop_start()

    def _on_message(self, client: Client, userdata: object, message: MQTTMessage) -> None:
        config = msgspec.json.decode(message.payload)
        self.configs.append(config)
        report = {"state": config["state"], "version": config["version"]}
        client.publish(f"trellis/v1/default/{self.device}/state", msgspec.json.encode(report))

    def report(self, payload: bytes) -> None:
        self.client.publish(f"trellis/v1/default/{self.device}/state", payload)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_desired_state_action_reaches_the_device_and_the_twin_reconciles(
    tmp_path: Path, broker: MosquittoProcess
) -> None:
    """The rule sets desired {mode: eco}; the device gets version 1 on config, applies
    it, reports it; the twin shows no delta and the applied version. A garbled report
    is refused and counted, the twin unchanged."""
    action = DesiredStateAction(state={"mode": "eco", "limit_pct": 80})

    def setup(platform: Platform) -> None:
        platform.rules.put(TENANT, StreamRule(id="eco", **_hot(actions=[action])))

    async def scenario() -> None:
        device = TwinDevice(broker.port, "dev-0001")
        try:
            async with _running(tmp_path, broker, setup) as platform:
                await _send(platform, "dev-0001", {"temperature": 95.0})
                await eventually(lambda: bool(device.configs), "the config message")
                assert device.configs[0] == {
                    "version": 1,
                    "state": {"mode": "eco", "limit_pct": 80},
                }
                await eventually(
                    lambda: platform.twins.get(TENANT, "dev-0001").reported_version == 1,
                    "the reported state",
                )
                twin = platform.twins.get(TENANT, "dev-0001")
                assert twin.reported == twin.desired == {"mode": "eco", "limit_pct": 80}
                assert (twin.delta, twin.applied_version) == ({}, 1)
                device.report(b'{"state": "on"}')
                assert platform.mqtt is not None
                gateway = platform.mqtt
                await eventually(lambda: gateway.status().states_refused == 1, "refusal")
                assert platform.twins.get(TENANT, "dev-0001").reported_version == 1
        finally:
            device.close()

    asyncio.run(scenario())


def test_a_derived_metric_goes_through_ingest_and_feeds_other_rules(
    tmp_path: Path, broker: MosquittoProcess
) -> None:
    """An emitted metric is stored with its lineage and trips a rule on that metric;
    a metric the device model does not know is quarantined and dead-lettered."""
    chiller = DeviceModel(
        "chiller-x",
        "1.0.0",
        "a chiller with a derived overheat flag",
        {"temperature": MetricSpec("Cel", -40.0, 250.0), "overheat": MetricSpec("1", 0.0, 1.0)},
    )

    def setup(platform: Platform) -> None:
        platform.registry.put_model(chiller, "yaml")
        platform.registry.register(Device(TENANT, "ch-1", "chiller-x"))
        flag = EmitAction(metric="overheat", value=1.0)
        platform.rules.put(TENANT, StreamRule(id="flag", **_hot(actions=[flag])))
        platform.rules.put(
            TENANT,
            StreamRule(id="on-flag", metric="overheat", severity="minor", condition="value > 0.5"),
        )
        bogus = EmitAction(metric="not_in_model")
        platform.rules.put(TENANT, StreamRule(id="bogus", **_hot("pressure", actions=[bogus])))

    async def scenario() -> None:
        async with _running(tmp_path, broker, setup) as platform:
            await _send(platform, "ch-1", {"temperature": 95.0})
            await eventually(
                lambda: any(a.rule == "on-flag" for a in platform.alerts.find(TENANT)),
                "the rule on the derived metric",
            )
            [alert] = [a for a in platform.alerts.find(TENANT) if a.rule == "on-flag"]
            assert (alert.device, alert.severity) == ("ch-1", AlertSeverity.MINOR)
            await _send(platform, "dev-0001", {"pressure": 95.0})
            await eventually(lambda: bool(_dead(platform, "bogus")), "the refused emission")
            [(action, error)] = _dead(platform, "bogus")
            assert action == "emit:not_in_model"
            assert error.startswith("ingest quarantined the derived not_in_model:")
            assert "not_in_model" in platform.quarantine.find(TENANT)[0].reason

    asyncio.run(scenario())


def test_derived_metric_loops_are_refused(tmp_path: Path) -> None:
    """A rule emitting its own metric is refused when parsed; a loop across rules
    (temperature → x → temperature) when the closing rule is saved; nothing is saved."""
    with pytest.raises(ValueError, match="emits 'temperature', the metric it watches"):
        parse_rule({"id": "self", **_hot(actions=[{"type": "emit", "metric": "temperature"}])})
    platform = Platform(mqtt_settings(tmp_path, "mqtt://127.0.0.1:1"))
    try:
        platform.rules.put(
            TENANT, parse_rule({"id": "a", **_hot(actions=[{"type": "emit", "metric": "x"}])})
        )
        back = parse_rule(
            {
                "id": "b",
                **_hot("x", actions=[{"type": "predict", "model": "m", "emit": "temperature"}]),
            }
        )
        loop = "temperature → rule a → x → rule b → temperature"
        with pytest.raises(ValueError, match=f"loop of derived metrics: {loop}"):
            platform.rules.put(TENANT, back)
        assert [rule.id for _, rule in platform.rules.find(TENANT)] == ["a"]
    finally:
        platform.close()


def test_the_twin_api_sets_desired_and_shows_desired_beside_reported(
    tmp_path: Path, broker: MosquittoProcess
) -> None:
    """PATCH desired reaches the device, GET shows the reconciled twin, and so do the
    CLI and the device page; an unknown device is 404, an empty or non-object patch
    and an oversized document are 422."""
    settings = mqtt_settings(tmp_path, broker.url)
    platform = Platform(settings)
    platform.registry.register(Device(TENANT, "dev-0001", "pump"))
    platform.close()
    device = TwinDevice(broker.port, "dev-0001")
    try:
        with serve(create_app(settings)) as url:
            wait_until(
                lambda: len(httpx.get(f"{url}/api/v1/mqtt/status").json()["subscriptions"]) == 3,
                what="the gateway to subscribe",
            )
            twin_url = f"{url}/api/v1/devices/dev-0001/twin"
            patched = httpx.patch(f"{twin_url}/desired", json={"setpoint": 7.5})
            assert patched.status_code == 200, patched.text
            assert patched.json()["delta"] == {"setpoint": 7.5}
            wait_until(
                lambda: httpx.get(twin_url).json()["reported_version"] == 1,
                what="the device's report",
            )
            twin = httpx.get(twin_url).json()
            assert twin["desired"] == twin["reported"] == {"setpoint": 7.5}
            assert (twin["delta"], twin["applied_version"]) == ({}, 1)
            removed = httpx.patch(f"{twin_url}/desired", json={"setpoint": None}).json()
            assert (removed["desired"], removed["desired_version"]) == ({}, 2)
            ghost = httpx.patch(f"{url}/api/v1/devices/ghost/twin/desired", json={"a": 1})
            assert ghost.status_code == 404
            assert httpx.patch(f"{twin_url}/desired", json={}).status_code == 422
            assert httpx.patch(f"{twin_url}/desired", json=[1, 2]).status_code == 422
            huge = httpx.patch(f"{twin_url}/desired", json={"blob": "x" * 20_000})
            assert huge.status_code == 422
            assert "exceeds 16384" in huge.json()["detail"]
            shown = CliRunner().invoke(
                app, ["mqtt", "twin", "dev-0001", "--set", "mode=eco", "--url", url]
            )
            assert shown.exit_code == 0, shown.output
            assert "desired v3" in shown.output
            assert "pending" in shown.output  # until the device reports it
            page = httpx.get(f"{url}/devices/dev-0001").text
            assert 'data-twin-key="mode"' in page
            assert "desired v3" in page
            bad = CliRunner().invoke(app, ["mqtt", "twin", "dev-0001", "--set", "x", "--url", url])
            assert bad.exit_code == 2
            assert "is not KEY=VALUE" in bad.output
    finally:
        device.close()
