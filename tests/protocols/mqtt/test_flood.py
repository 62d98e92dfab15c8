"""Flood fairness against a real broker: one device flooding is rate limited and counted,
while the well-behaved devices publishing beside it lose nothing and keep their rate."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec

from tests.helpers import run
from tests.protocols.mqtt.conftest import devices, eventually, mqtt_settings, publisher
from trellis.core.clock import now_ms
from trellis.platform import Platform
from trellis.protocols.mqtt import MosquittoProcess, MqttPublisher

RATE_HZ = 50  # the per-device limit
TICKS, TICK_S = 40, 0.05  # 2 s of load
GOOD = ("dev-0001", "dev-0002", "dev-0003")  # 1 message per tick each: 20 msg/s, under the limit
FLOODER, FLOOD_PER_TICK = "dev-0004", 50  # 1,000 msg/s, twenty times the limit
START_MS = now_ms() - 600_000


def _body(seq: int) -> bytes:
    return msgspec.json.encode({"ts": START_MS + seq, "seq": seq, "values": {"vibration": 1.0}})


def _load(device: MqttPublisher) -> float:
    """Publish the paced load (pacing a load, not waiting for an effect); return its seconds."""
    started = time.monotonic()
    flood_seq = 0
    for tick in range(1, TICKS + 1):
        for name in GOOD:
            device.publish(f"trellis/v1/default/{name}/telemetry", _body(tick))
        for _ in range(FLOOD_PER_TICK):
            flood_seq += 1
            device.publish(f"trellis/v1/default/{FLOODER}/telemetry", _body(flood_seq))
        time.sleep(max(0.0, started + tick * TICK_S - time.monotonic()))
    device.flush()
    return time.monotonic() - started


def test_a_flooding_device_is_limited_and_the_others_lose_nothing(
    tmp_path: Path, broker: MosquittoProcess
) -> None:
    """The flooder is cut to about its rate and counted; every good reading is stored."""
    settings = mqtt_settings(tmp_path, broker.url, max_device_rate_hz=RATE_HZ, rate_limit_grace_s=0)
    platform = Platform(settings)
    for device in devices(4):
        platform.registry.register(device)
    flood_total = TICKS * FLOOD_PER_TICK
    total = TICKS * len(GOOD) + flood_total

    async def scenario() -> None:
        async with platform.running():
            gateway = platform.mqtt
            assert gateway is not None
            async with asyncio.timeout(10):
                await gateway.wait_ready()
            device = await asyncio.to_thread(publisher, broker.url, max_in_flight=500)
            elapsed = await asyncio.to_thread(_load, device)
            device.close()
            await eventually(lambda: gateway.status().acked == total, "every message handled")
            status = gateway.status()
            limited = status.rate_limited_by_device
            assert set(limited) == {f"default/{FLOODER}"}, limited
            assert status.rate_limited == limited[f"default/{FLOODER}"]
            # The bucket lets a burst of RATE_HZ through, then RATE_HZ per second.
            passed = flood_total - status.rate_limited
            assert RATE_HZ <= passed <= RATE_HZ + RATE_HZ * elapsed * 1.5 + 10, passed
            by_device = {s.device: s for s in status.sequences}
            for name in GOOD:
                assert by_device[name].messages == TICKS
                assert by_device[name].gaps == 0
                stored = platform.store.query("default", name, "vibration", 0, now_ms())
                assert [point.ts - START_MS for point in stored] == list(range(1, TICKS + 1))
            assert platform.store.count() == TICKS * len(GOOD) + passed

    try:
        run(scenario())
    finally:
        platform.close()
