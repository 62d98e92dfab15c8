"""MQTT 5: the door most devices and edge gateways use to reach Trellis.

- :class:`MqttGateway` subscribes to device telemetry on a shared subscription and
  acknowledges each message only after the ingest pipeline has committed it.
- :class:`MqttPublisher` is the device side (simulator, tests, benchmark).
- :meth:`MqttGateway.command` sends a device command and waits for its answer
  (MQTT 5 request/response).
- :class:`MosquittoProcess` runs a private broker (``trellis demo``, tests).
"""

from __future__ import annotations

from trellis.protocols.mqtt.broker import BrokerAddress, parse_broker_url
from trellis.protocols.mqtt.commands import CommandOutcome, CommandResult
from trellis.protocols.mqtt.gateway import DEVICE_ID_PROPERTY, MqttGateway, MqttStatus
from trellis.protocols.mqtt.mosquitto import MosquittoProcess, TlsFiles, mosquitto_binary
from trellis.protocols.mqtt.publisher import MqttPublisher
from trellis.protocols.mqtt.sequences import DeviceSequence, SequenceTracker
from trellis.protocols.mqtt.topics import TopicKind, device_topic, shared_subscription

__all__ = [
    "DEVICE_ID_PROPERTY",
    "BrokerAddress",
    "CommandOutcome",
    "CommandResult",
    "DeviceSequence",
    "MosquittoProcess",
    "MqttGateway",
    "MqttPublisher",
    "MqttStatus",
    "SequenceTracker",
    "TlsFiles",
    "TopicKind",
    "device_topic",
    "mosquitto_binary",
    "parse_broker_url",
    "shared_subscription",
]
