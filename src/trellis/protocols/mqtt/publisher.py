"""A device-side MQTT 5 publisher: what the simulator, tests and benchmark publish with.

QoS 1 on a persistent session, like a well-behaved device: messages not yet
acknowledged when the connection drops are resent by paho on reconnect, so a broker
restart loses nothing. ``publish`` waits while ``max_in_flight`` messages are
unacknowledged (paho's own queue is unbounded, and without a bound QoS 1 collapsed
to ~590 msg/s here, DESIGN.md).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from trellis.protocols.mqtt._paho import connect_properties, publish_properties
from trellis.protocols.mqtt.broker import BrokerAddress

__all__ = ["MqttPublisher"]


class MqttPublisher:
    """A synchronous QoS 1 publisher with a bound on messages in flight."""

    def __init__(
        self,
        address: BrokerAddress,
        client_id: str,
        *,
        max_in_flight: int = 200,
        session_expiry_s: int = 3600,
    ) -> None:
        self.address = address
        self._client = Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        if address.username is not None:
            client_password = address.password
            self._client.username_pw_set(address.username, client_password)
        context = address.tls_context()
        if context is not None:
            self._client.tls_set_context(context)
        self._client.max_inflight_messages_set(max_in_flight)
        self._client.max_queued_messages_set(0)
        self._client.reconnect_delay_set(min_delay=1, max_delay=4)
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._published = 0
        self._changed = threading.Condition()
        self._connected = threading.Event()
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._session_expiry_s = session_expiry_s

    @property
    def acknowledged(self) -> int:
        """QoS 1 messages the broker has acknowledged so far."""
        return self._published

    def _on_connect(
        self, client: Client, userdata: Any, flags: ConnectFlags, reason: ReasonCode, _: Any
    ) -> None:
        if not reason.is_failure:
            self._connected.set()

    def _on_disconnect(
        self, client: Client, userdata: Any, flags: DisconnectFlags, reason: ReasonCode, _: Any
    ) -> None:
        self._connected.clear()

    def _on_publish(
        self, client: Client, userdata: Any, mid: int, reason: ReasonCode, _: Any
    ) -> None:
        with self._changed:
            self._in_flight -= 1
            self._published += 1
            self._changed.notify_all()

    def connect(self, timeout: float = 10.0) -> None:
        """Connect (clean start false, session kept) and wait for the CONNACK."""
        properties = connect_properties(self._session_expiry_s)
        self._client.connect_async(
            self.address.host, self.address.port, clean_start=False, properties=properties
        )
        self._client.loop_start()
        if not self._connected.wait(timeout):
            self.close()
            raise TimeoutError(f"no CONNACK from {self.address} within {timeout} s")

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        user_properties: list[tuple[str, str]] | None = None,
        content_type: str | None = None,
        qos: int = 1,
        retain: bool = False,
    ) -> None:
        """Queue one message, waiting while too many are unacknowledged."""
        properties: Properties | None = None
        if user_properties or content_type:
            properties = publish_properties()
            if user_properties:
                properties.UserProperty = user_properties
            if content_type:
                properties.ContentType = content_type
        with self._changed:
            while self._in_flight >= self._max_in_flight:
                self._changed.wait(1.0)
            if qos > 0:
                self._in_flight += 1
        self._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until every QoS 1 message published so far is acknowledged."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._in_flight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self._in_flight} messages unacknowledged by the broker")
                self._changed.wait(min(left, 1.0))

    def close(self) -> None:
        """Disconnect (the session stays for ``session_expiry_s``) and stop the thread."""
        self._client.disconnect()
        self._client.loop_stop()
