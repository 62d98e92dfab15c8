"""The simulated fleet over real MQTT 5: each tick's messages published at QoS 1."""

from __future__ import annotations

import asyncio

from trellis.core.clock import now_ms
from trellis.protocols.mqtt.publisher import MqttPublisher
from trellis.sim.fleet import Fleet

__all__ = ["publish_fleet"]


async def publish_fleet(
    fleet: Fleet, publisher: MqttPublisher, rate_hz: float, ticks: int | None = None
) -> None:
    """Publish the fleet's telemetry at ``rate_hz`` until cancelled (or for ``ticks``).

    The publisher may wait for the broker's acknowledgements (its in-flight bound), so
    each tick is published from a worker thread, never on the event loop.
    """
    period = 1.0 / rate_hz
    loop = asyncio.get_running_loop()
    next_tick = loop.time()
    done = 0
    while ticks is None or done < ticks:
        messages = [(m.topic, m.payload) for m in fleet.messages(now_ms())]
        await asyncio.to_thread(_send, publisher, messages)
        done += 1
        next_tick = max(next_tick + period, loop.time())
        await asyncio.sleep(next_tick - loop.time())


def _send(publisher: MqttPublisher, messages: list[tuple[str, bytes]]) -> None:
    for topic, payload in messages:
        publisher.publish(topic, payload)
