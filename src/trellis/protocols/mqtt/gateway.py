"""The MQTT 5 ingest gateway: broker → ingest pipeline, acknowledged only after commit.

paho-mqtt 2 runs the socket in its own thread (measured ~19k msg/s per process
against aiomqtt's ~7k, DESIGN.md), so the MQTT keep-alive never waits for the event
loop or the database. The thread only appends each message to an inbox and, when the
inbox was empty, wakes the loop; nothing it does can block.

Loss and memory are bounded by the protocol, not by a guess: auto-ack is off and the
CONNECT asks for ``Receive Maximum = receive_maximum``, so the broker never has more
unacknowledged QoS 1 messages out to us than that; the inbox can hold no more. A
message is acked (PUBACK) when its batch has been stored or quarantined, in the
order the messages arrived (MQTT 5 §4.6). A message received on a connection that
has since dropped is never acked on the new one: the broker redelivers it, and
idempotent storage makes the second copy a no-op.

The session is persistent (clean start false, session expiry), and the subscription
is shared (``$share/{group}/trellis/v1/+/+/telemetry``), so messages published while
the platform was down wait in the broker and N gateways split the load.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from trellis.core.clock import now_ms
from trellis.core.config import MqttSettings
from trellis.core.types import RawMessage
from trellis.ingest.decode import parse_topic
from trellis.ingest.pipeline import IngestPipeline, IngestResult
from trellis.protocols.mqtt._paho import connect_properties, publish_properties
from trellis.protocols.mqtt.broker import BrokerAddress
from trellis.protocols.mqtt.commands import CommandResult, PendingCommands, await_answer
from trellis.protocols.mqtt.sequences import DeviceSequence, SequenceTracker
from trellis.protocols.mqtt.topics import TopicKind, device_topic, shared_subscription

__all__ = ["DEVICE_ID_PROPERTY", "MqttGateway", "MqttStatus"]

log = logging.getLogger(__name__)

#: The user property a device names itself with; a mismatch with its topic is refused.
DEVICE_ID_PROPERTY = "device-id"
_encoder = msgspec.json.Encoder()


class MqttStatus(msgspec.Struct, frozen=True):
    """What ``trellis mqtt status`` and ``GET /api/v1/mqtt/status`` show."""

    broker: str
    client_id: str
    connected: bool
    connects: int
    subscriptions: list[str]
    received: int
    acked: int
    in_flight: int
    msg_per_s: float
    lag_ms: int
    refused: int
    impersonations: int
    rate_limited: int
    rate_limited_by_device: dict[str, int]
    retained: int
    shed_qos0: int
    errors_published: int
    sequences: list[DeviceSequence]
    states_reported: int = 0
    states_refused: int = 0


@dataclass
class _Pending:
    """One received QoS 1 message waiting for its commit before its PUBACK."""

    mid: int
    qos: int
    connection: int
    received_ms: int
    done: bool = False


@dataclass
class _Inbound:
    raw: RawMessage
    pending: _Pending
    retain: bool
    correlation: bytes | None


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class MqttGateway:
    """Subscribes to device telemetry and feeds the ingest pipeline."""

    def __init__(
        self,
        address: BrokerAddress,
        settings: MqttSettings,
        pipeline: IngestPipeline,
        tenant: str = "+",
    ) -> None:
        self.address = address
        self.settings = settings
        self._pipeline = pipeline
        # Mosquitto 2.0.11 forgets $share subscriptions when it restarts (its persistent
        # sessions come back without them; measured), so a single worker that must not
        # lose what is published before it resubscribes can use a plain subscription.
        self._subscription = (
            shared_subscription(settings.share_group, TopicKind.TELEMETRY, tenant)
            if settings.share_group
            else device_topic(tenant, "+", TopicKind.TELEMETRY)
        )
        # Command answers reach every worker (not shared): only the one that asked waits.
        self._responses = device_topic(tenant, "+", TopicKind.RESPONSES)
        # Reported twin state, like answers, is taken by every worker (not shared).
        self._states = device_topic(tenant, "+", TopicKind.STATE)
        #: Called on the network thread with ``(tenant, device, payload)`` of every
        #: ``state`` message; raises ``ValueError`` for a payload it refuses.
        self.on_state: Callable[[str, str, bytes], object] | None = None
        self._states_taken = self._states_refused = 0
        self.commands = PendingCommands()
        self._boot = secrets.token_hex(4)
        self._count = 0
        self._inbox: collections.deque[_Inbound] = collections.deque()
        self._acks: collections.deque[_Pending] = collections.deque()
        self._wakeup = asyncio.Event()
        self._signalled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connection = 0  # bumped on every connect and disconnect
        self._connected = False
        self._connected_ms = 0
        self._connects = 0
        self._subscribed: list[str] = []
        self._ready = asyncio.Event()
        self.sequences = SequenceTracker()
        self._buckets: dict[str, _Bucket] = {}
        self._received = self._acked = self._refused = 0
        self._impersonations = self._rate_limited = self._retained = self._errors = 0
        self._shed = 0
        self._limited: collections.Counter[str] = collections.Counter()
        self._rate = 0.0
        self._client = self._make_client()

    # --- the network thread -------------------------------------------------------

    def _make_client(self) -> Client:
        client = Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.settings.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        if self.address.username is not None:
            client.username_pw_set(self.address.username, self.address.password)
        context = self.address.tls_context()
        if context is not None:
            client.tls_set_context(context)
        client.reconnect_delay_set(min_delay=1, max_delay=8)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _on_connect(
        self,
        client: Client,
        userdata: Any,
        flags: ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.warning("MQTT broker %s refused the connection: %s", self.address, reason)
            return
        self._connection += 1
        self._connected = True
        self._connected_ms = now_ms()
        self._connects += 1
        log.info(
            "MQTT connected to %s as %s (session %s)",
            self.address,
            self.settings.client_id,
            "resumed" if flags.session_present else "new",
        )
        client.subscribe(
            [
                (self._subscription, SubscribeOptions(qos=1)),
                # QoS 0: an answer nobody waits for any more is worth no redelivery.
                (self._responses, SubscribeOptions(qos=0)),
                # QoS 0: a device reports its whole state on every change and at connect.
                (self._states, SubscribeOptions(qos=0)),
            ]
        )

    def _on_disconnect(
        self,
        client: Client,
        userdata: Any,
        flags: DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connection += 1
        if self._connected and self._loop is not None:
            log.warning("MQTT disconnected from %s: %s; reconnecting", self.address, reason)
        self._connected = False

    def _on_subscribe(
        self,
        client: Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if any(reason.is_failure for reason in reasons):
            log.error("MQTT broker refused subscription %s: %s", self._subscription, reasons)
            return
        self._subscribed = [self._subscription, self._responses, self._states]
        self._call_soon(self._ready.set)

    def _on_message(self, client: Client, userdata: Any, message: MQTTMessage) -> None:
        if message.topic.endswith("/responses"):
            self._on_response(client, message)
            return
        if message.topic.endswith("/state"):
            self._on_state(client, message)
            return
        received = now_ms()
        properties: dict[str, str] = {}
        correlation: bytes | None = None
        props = message.properties
        if props is not None:
            properties = dict(getattr(props, "UserProperty", ()))
            content_type = getattr(props, "ContentType", None)
            if content_type:
                properties["content-type"] = content_type
            correlation = getattr(props, "CorrelationData", None)
        self._count += 1
        raw = RawMessage(
            id=f"mqtt-{self._boot}-{self._count}",
            source="mqtt",
            topic=message.topic,
            payload=bytes(message.payload),
            received_ms=received,
            properties=properties,
        )
        if message.qos == 0 and len(self._inbox) >= self.settings.receive_maximum:
            # QoS 0 is outside Receive Maximum's bound; shed it, counted, not memory.
            self._shed += 1
            return
        pending = _Pending(message.mid, message.qos, self._connection, received)
        self._inbox.append(_Inbound(raw, pending, message.retain, correlation))
        if not self._signalled:
            self._signalled = True
            self._call_soon(self._wake)

    def _on_response(self, client: Client, message: MQTTMessage) -> None:
        correlation = getattr(message.properties, "CorrelationData", None)
        payload = bytes(message.payload)
        self._call_soon(lambda: self.commands.resolve(correlation, payload))
        if message.qos > 0:  # granted QoS 0, but a broker may still send QoS 1
            client.ack(message.mid, message.qos)

    def _on_state(self, client: Client, message: MQTTMessage) -> None:
        address = parse_topic(message.topic)
        if message.qos > 0:
            client.ack(message.mid, message.qos)
        if address is None or self.on_state is None:
            return
        try:
            self.on_state(address[0], address[1], bytes(message.payload))
            self._states_taken += 1
        except ValueError as exc:
            self._states_refused += 1
            log.info("refused reported state of %s/%s: %s", address[0], address[1], exc)

    def send_desired(self, tenant: str, device: str, version: int, desired: dict[str, Any]) -> None:
        """Publish the whole desired document on the device's ``config`` topic, retained
        (a device that connects later still gets the newest one)."""
        properties = publish_properties()
        properties.ContentType = "application/json"
        properties.UserProperty = [("desired-version", str(version))]
        self._client.publish(
            device_topic(tenant, device, TopicKind.CONFIG),
            _encoder.encode({"version": version, "state": desired}),
            qos=1,
            retain=True,
            properties=properties,
        )

    def _call_soon(self, callback: Any) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed under us
                loop.call_soon_threadsafe(callback)

    def _wake(self) -> None:
        self._signalled = False
        self._wakeup.set()

    # --- the event loop -----------------------------------------------------------

    async def wait_ready(self) -> None:
        """Wait until the broker has granted the subscription (bound it with a timeout)."""
        await self._ready.wait()

    async def run(self) -> None:
        """Connect, forward messages until cancelled, then disconnect keeping the session."""
        self._loop = asyncio.get_running_loop()
        connect = connect_properties(self.settings.session_expiry_s, self.settings.receive_maximum)
        self._client.connect_async(
            self.address.host,
            self.address.port,
            keepalive=self.settings.keepalive_s,
            clean_start=False,
            properties=connect,
        )
        self._client.loop_start()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._meter(), name="trellis.mqtt.meter")
                await self._forward()
        finally:
            self._connection += 1  # nothing still in the pipeline is acked on a later session
            self._loop = None
            self._client.disconnect()
            await asyncio.to_thread(self._client.loop_stop)

    async def _forward(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._inbox:
                await self._take(self._inbox.popleft())

    async def _take(self, item: _Inbound) -> None:
        self._received += 1
        self._acks.append(item.pending)
        raw = item.raw
        address = parse_topic(raw.topic)
        reason: str | None = None
        if item.retain:
            self._retained += 1
            reason = "retained message refused: publish telemetry with retain=false"
        elif (
            address is not None
            and raw.properties.get(DEVICE_ID_PROPERTY, address[1]) != (address[1])
        ):
            self._impersonations += 1
            reason = (
                f"device {raw.properties[DEVICE_ID_PROPERTY]!r} may not publish on the topic "
                f"of device {address[1]!r}"
            )
        elif address is not None and not self._allow(f"{address[0]}/{address[1]}", raw):
            self._rate_limited += 1
            self._limited[f"{address[0]}/{address[1]}"] += 1
            reason = (
                f"rate limit: device {address[1]!r} exceeds "
                f"{self.settings.max_device_rate_hz} messages/s; message dropped"
            )
        if reason is not None:
            self._refused += 1
            self._reply_error(raw, reason, item.correlation)
            self._complete(item.pending)
            return

        def committed(result: IngestResult) -> None:
            if result.quarantined:
                self._reply_error(raw, result.reason or "quarantined", item.correlation)
            elif result.seq is not None and address is not None:
                self.sequences.observe(address[0], address[1], result.seq)
            self._complete(item.pending)

        await self._pipeline.submit_then(raw, committed)

    def _allow(self, key: str, raw: RawMessage) -> bool:
        """A token bucket per device: a flood from one cannot starve the others.

        Not applied until ``rate_limit_grace_s`` after a connect: what the persistent
        session queued while we were away arrives as one burst and is not a flood.
        """
        rate = self.settings.max_device_rate_hz
        if rate is None or raw.received_ms - self._connected_ms < (
            self.settings.rate_limit_grace_s * 1000
        ):
            return True
        burst = max(10.0, rate)
        now = time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _complete(self, pending: _Pending) -> None:
        """Mark ``pending`` done; PUBACK every done message at the head, in arrival order."""
        pending.done = True
        acks = self._acks
        while acks and acks[0].done:
            head = acks.popleft()
            if head.qos > 0 and head.connection == self._connection:
                self._client.ack(head.mid, head.qos)
            self._acked += 1

    def _reply_error(self, raw: RawMessage, reason: str, correlation: bytes | None) -> None:
        """Tell the device why its message was refused, on its ``errors`` topic."""
        address = parse_topic(raw.topic)
        if address is None:
            return
        properties = publish_properties()
        properties.ContentType = "application/json"
        properties.UserProperty = [("reason", reason[:1024]), ("message-id", raw.id)]
        properties.MessageExpiryInterval = 3600
        if correlation is not None:
            properties.CorrelationData = correlation
        body = {"message_id": raw.id, "topic": raw.topic, "reason": reason}
        if "seq" in raw.properties:
            body["seq"] = raw.properties["seq"]
        self._client.publish(
            device_topic(address[0], address[1], TopicKind.ERRORS),
            _encoder.encode(body),
            qos=1,
            properties=properties,
        )
        self._errors += 1

    async def command(
        self, tenant: str, device: str, name: str, args: object, timeout_s: float
    ) -> CommandResult:
        """Send command ``name`` to ``device`` and wait up to ``timeout_s`` for its answer.

        Raises OverflowError when too many commands already wait for answers.
        """
        correlation, future = self.commands.open()
        properties = publish_properties()
        properties.ResponseTopic = device_topic(tenant, device, TopicKind.RESPONSES)
        properties.CorrelationData = correlation
        properties.ContentType = "application/json"
        # The command is void once nobody waits for the answer.
        properties.MessageExpiryInterval = max(1, int(timeout_s + 0.999))
        properties.UserProperty = [("command", name)]
        self._client.publish(
            device_topic(tenant, device, TopicKind.COMMANDS),
            _encoder.encode({"name": name, "args": args}),
            qos=1,
            properties=properties,
        )
        return await await_answer(self.commands, correlation, future, device, name, timeout_s)

    async def _meter(self) -> None:
        last = self._received
        while True:
            await asyncio.sleep(1.0)
            self._rate = float(self._received - last)
            last = self._received

    def status(self) -> MqttStatus:
        """Connection, subscription and counters right now."""
        lag = now_ms() - self._acks[0].received_ms if self._acks else 0
        return MqttStatus(
            broker=str(self.address),
            client_id=self.settings.client_id,
            connected=self._connected,
            connects=self._connects,
            subscriptions=list(self._subscribed),
            received=self._received,
            acked=self._acked,
            in_flight=len(self._acks) + len(self._inbox),
            msg_per_s=self._rate,
            lag_ms=max(0, lag),
            refused=self._refused,
            impersonations=self._impersonations,
            rate_limited=self._rate_limited,
            rate_limited_by_device=dict(self._limited.most_common(100)),
            retained=self._retained,
            shed_qos0=self._shed,
            errors_published=self._errors,
            sequences=self.sequences.all(),
            states_reported=self._states_taken,
            states_refused=self._states_refused,
        )
