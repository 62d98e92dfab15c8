"""The MQTT 5 gateway against a real Mosquitto: ack after commit, persistent session,
properties into lineage, errors back to the device, refusals counted."""

from __future__ import annotations

import asyncio
import queue
from pathlib import Path

import msgspec
from paho.mqtt.client import Client, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from tests.helpers import run
from tests.protocols.mqtt.conftest import devices, eventually, mqtt_settings, publisher
from trellis.core.clock import now_ms
from trellis.platform import Platform
from trellis.protocols.mqtt import MosquittoProcess, MqttGateway

START_MS = now_ms() - 3_600_000


def _body(seq: int, value: float = 1.0) -> bytes:
    """A one-reading telemetry body; ``ts`` follows ``seq`` so every reading has its own key."""
    return msgspec.json.encode(
        {"ts": START_MS + seq * 1000, "seq": seq, "values": {"vibration": value}}
    )


class ErrorListener:
    """A device-side subscriber to ``trellis/v1/+/+/errors``."""

    def __init__(self, url: str) -> None:
        self.messages: queue.Queue[MQTTMessage] = queue.Queue()
        port = int(url.rsplit(":", 1)[1])
        self.client = Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("trellis/v1/+/+/errors", qos=1)
        self.client.loop_start()

    def reasons(self, count: int, timeout: float = 10.0) -> list[tuple[str, dict[str, str]]]:
        """The next ``count`` error messages as (topic, body)."""
        out = []
        for _ in range(count):
            message = self.messages.get(timeout=timeout)
            out.append((message.topic, msgspec.json.decode(message.payload)))
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _gateway(platform: Platform) -> MqttGateway:
    gateway = platform.mqtt
    assert gateway is not None
    return gateway


def test_messages_are_stored_and_acked_after_commit(
    tmp_path: Path, broker: MosquittoProcess
) -> None:
    """QoS 1 telemetry through the broker is stored once, acked, and carries its properties."""
    platform = Platform(mqtt_settings(tmp_path, broker.url))
    for device in devices(3):
        platform.registry.register(device)

    async def scenario() -> None:
        async with platform.running():
            gateway = _gateway(platform)
            async with asyncio.timeout(10):
                await gateway.wait_ready()
            device = await asyncio.to_thread(publisher, broker.url)
            for seq in range(1, 101):
                for name in ("dev-0001", "dev-0002", "dev-0003"):
                    device.publish(
                        f"trellis/v1/default/{name}/telemetry",
                        _body(seq),
                        user_properties=[("seq", str(seq)), ("fw", "1.2.3")],
                    )
            await asyncio.to_thread(device.flush)
            await eventually(lambda: gateway.status().acked == 300, "300 acks")
            status = gateway.status()
            assert status.connected
            assert status.subscriptions == [
                "$share/trellis-ingest/trellis/v1/default/+/telemetry",
                "trellis/v1/default/+/responses",
                "trellis/v1/default/+/state",
            ]
            assert status.received == 300
            assert status.in_flight == 0
            assert [s.gaps for s in status.sequences] == [0, 0, 0]
            assert [s.last_seq for s in status.sequences] == [100, 100, 100]
            device.close()
        assert platform.store.count() == 300

    run(scenario())
    platform.close()


def test_messages_published_while_the_platform_is_down_are_not_lost(
    tmp_path: Path, broker: MosquittoProcess
) -> None:
    """The persistent session keeps what devices publish while the platform is stopped."""
    settings = mqtt_settings(tmp_path, broker.url)

    async def once(last: int) -> int:
        platform = Platform(settings)
        for device in devices(1):
            platform.registry.register(device)
        try:
            async with platform.running():
                gateway = _gateway(platform)
                async with asyncio.timeout(10):
                    await gateway.wait_ready()
                await eventually(lambda: platform.store.count() >= last, "the queued messages")
            return platform.store.count()
        finally:
            platform.close()

    async def scenario() -> None:
        assert await once(0) == 0
        device = await asyncio.to_thread(publisher, broker.url)
        for seq in range(1, 501):
            device.publish("trellis/v1/default/dev-0001/telemetry", _body(seq))
        await asyncio.to_thread(device.flush)
        device.close()
        assert await once(500) == 500

    run(scenario())


def test_bad_input_is_refused_with_a_reason_on_the_error_topic(
    tmp_path: Path, broker: MosquittoProcess
) -> None:
    """Bad messages get a reason on the device's error topic; good ones are all stored."""
    platform = Platform(
        mqtt_settings(tmp_path, broker.url, max_device_rate_hz=20, rate_limit_grace_s=0)
    )
    for device in devices(3):
        platform.registry.register(device)
    errors = ErrorListener(broker.url)

    async def scenario() -> None:
        async with platform.running():
            gateway = _gateway(platform)
            async with asyncio.timeout(10):
                await gateway.wait_ready()
            device = await asyncio.to_thread(publisher, broker.url)
            topic = "trellis/v1/default/{}/telemetry".format
            device.publish(topic("dev-0001"), b'{"ts": "\xff", "values": {"vibration": 1}}')
            device.publish(topic("nobody"), _body(1))
            device.publish(topic("dev-0001"), b"x" * 300_000)
            device.publish(topic("dev-0002"), _body(1), user_properties=[("device-id", "dev-0001")])
            device.publish(topic("dev-0001"), _body(1), content_type="application/senml+json")
            device.publish(topic("dev-0001"), _body(1), content_type="text/plain")
            device.publish(topic("dev-0001"), _body(1), user_properties=[("schema-version", "9")])
            await asyncio.to_thread(device.flush)
            reasons = await asyncio.to_thread(errors.reasons, 7)
            by_text = sorted(body["reason"] for _, body in reasons)
            assert any("is not UTF-8" in r for r in by_text), by_text
            assert any("unknown device 'nobody'" in r for r in by_text)
            assert any("exceeds the limit" in r for r in by_text)
            assert any("may not publish on the topic of device 'dev-0002'" in r for r in by_text)
            assert any("invalid SenML pack" in r for r in by_text)
            assert any("content type 'text/plain'" in r for r in by_text)
            assert any("schema-version '9'" in r for r in by_text)
            # A flood from dev-0003 is limited; dev-0001 keeps its share.
            for seq in range(1, 201):
                device.publish(topic("dev-0003"), _body(seq))
            for seq in range(1, 11):
                device.publish(topic("dev-0001"), _body(seq))
            await asyncio.to_thread(device.flush)
            await eventually(lambda: gateway.status().acked == 217, "every message acked")
            status = gateway.status()
            assert status.impersonations == 1
            assert status.rate_limited > 0
            assert platform.store.count() == 10 + (200 - status.rate_limited)
            device.close()
        kept = platform.quarantine.find("default", limit=100)
        assert len(kept) >= 5
        # MQTT 5 properties travel with the message into quarantine (its lineage).
        assert any(entry.message.properties.get("schema-version") == "9" for entry in kept)
        assert any(entry.message.properties.get("content-type") == "text/plain" for entry in kept)

    try:
        run(scenario())
    finally:
        errors.close()
        platform.close()


def test_a_retained_message_is_not_replayed_as_telemetry(
    tmp_path: Path, broker: MosquittoProcess
) -> None:
    """A retained message replayed at subscribe is refused and counted, not stored."""
    device = publisher(broker.url)
    device.publish("trellis/v1/default/dev-0001/telemetry", _body(1), retain=True)
    device.flush()
    platform = Platform(mqtt_settings(tmp_path, broker.url))
    platform.registry.register(devices(1)[0])

    async def scenario() -> None:
        async with platform.running():
            gateway = _gateway(platform)
            async with asyncio.timeout(10):
                await gateway.wait_ready()
            device.publish("trellis/v1/default/dev-0001/telemetry", _body(2))
            await asyncio.to_thread(device.flush)
            await eventually(lambda: gateway.status().acked == 2, "both messages")
            assert gateway.status().retained == 1
        assert platform.store.count() == 1

    run(scenario())
    device.close()
    platform.close()
