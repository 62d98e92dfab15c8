"""MQTT ingest throughput: publish → real Mosquitto → gateway → ingest → SQLite, end to end.

Run ``python bench/mqtt_ingest.py [--quick]``. Prints one JSON line per figure on
stdout (DESIGN.md, Benchmarks) and progress on stderr. Everything runs against one
private Mosquitto started here, on this machine, in the same run:

* ``readings_per_s_single``: one reading per message, one ingest process (the
  :class:`Platform` in this process). Baseline: a bare paho subscriber (QoS 1, auto
  ack, counting messages, nothing else) on the same broker receiving the same load.
* ``readings_per_s_pack50``: 50 readings per message (a JSON batch), one ingest process.
  Baseline: the same bare subscriber, in readings/s.
* ``readings_per_s_pack50_two_workers``: the same packs, two ``trellis serve``
  processes on one ``$share`` subscription writing the same data directory.
* ``readings_per_s_single_drain``: the same single-reading messages, but queued at the
  broker first for an offline persistent session and then drained. A live Python
  publisher cannot outrun a bare subscriber on 2 cores, so in the live figure the
  baseline measures the publisher; draining a backlog measures the consumers
  themselves. Baseline: the bare subscriber draining the same backlog, with the same
  Receive Maximum as the gateway. This is the figure the >= 0.7 target applies to.
* ``load_msgs_per_s``: the load generator alone, so it is shown not to be the
  bottleneck: a separate process of pre-encoded payloads published at QoS 1 (bounded
  in flight) through the broker to a bare subscriber; baseline is the platform's
  single-reading msg/s, so a ratio above 1 means the load outran the platform.

Each platform figure is timed from the publisher's start to the moment the last
reading is durably stored (every message acknowledged after its commit).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import msgspec
from paho.mqtt.client import Client, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from _common import Report
from trellis.core.clock import now_ms
from trellis.core.config import load_settings
from trellis.core.net import free_port
from trellis.core.types import Device
from trellis.devices.registry import DeviceRegistry
from trellis.platform import Platform
from trellis.protocols.mqtt import MosquittoProcess, MqttPublisher, parse_broker_url
from trellis.protocols.mqtt._paho import connect_properties
from trellis.store.metadata import open_metadata

BENCH = "mqtt_ingest"
REPORT = Report(BENCH)
log = REPORT.log
emit = REPORT.emit
TENANT = "default"
DEVICES = 50
TOPIC = "trellis/v1/default/{}/telemetry"
BASELINE = "bare paho subscriber (QoS 1, auto ack, count only), same broker, same run"


# --- the load generator (a separate process) ---------------------------------------


def payloads(messages: int, per_message: int) -> list[tuple[str, bytes]]:
    """Pre-encoded telemetry, round-robin over the devices, every key distinct."""
    start = now_ms() - 86_400_000
    encode = msgspec.json.Encoder().encode
    out = []
    for i in range(messages):
        device, seq = i % DEVICES + 1, i // DEVICES + 1
        base = start + (seq - 1) * per_message
        if per_message == 1:
            body = {"ts": base, "seq": seq, "values": {"vibration": float(i % 50)}}
            out.append((TOPIC.format(f"dev-{device:04d}"), encode(body)))
        else:
            batch = [
                {"ts": base + k, "seq": seq, "values": {"vibration": float((i + k) % 50)}}
                for k in range(per_message)
            ]
            out.append((TOPIC.format(f"dev-{device:04d}"), encode(batch)))
    return out


def publish_main(url: str, messages: int, per_message: int) -> None:
    """Child process: encode everything, say ``ready``, publish on ``go``, print the rate."""
    load = payloads(messages, per_message)
    device = MqttPublisher(parse_broker_url(url), f"bench-load-{os.getpid()}", max_in_flight=1000)
    device.connect()
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    publish = device.publish
    for topic, payload in load:
        publish(topic, payload)
    device.flush(timeout=600)
    elapsed = time.perf_counter() - started
    device.close()
    print(json.dumps({"messages": messages, "seconds": elapsed}), flush=True)


class Load:
    """A ready publisher process; :meth:`go` starts it, :meth:`result` waits for its rate."""

    def __init__(self, url: str, messages: int, per_message: int) -> None:
        self.messages = messages
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--publish", url, str(messages), str(per_message)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise SystemExit("the load generator did not start")

    def go(self) -> None:
        """Start publishing."""
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def result(self) -> float:
        """Messages/s the generator published (acknowledged by the broker)."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        self.process.wait(60)
        return float(json.loads(line)["messages"] / json.loads(line)["seconds"])


# --- the baseline: a bare paho subscriber -------------------------------------------


def bare_subscriber(url: str, messages: int, per_message: int) -> tuple[float, float]:
    """(messages/s received by a bare QoS 1 subscriber, messages/s the load published)."""
    address = parse_broker_url(url)
    done = threading.Event()
    count = [0]

    def on_message(client: Client, userdata: object, message: MQTTMessage) -> None:
        count[0] += 1
        if count[0] == messages:
            done.set()

    subscribed = threading.Event()
    client = Client(
        CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=MQTTProtocolVersion.MQTTv5
    )
    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect(address.host, address.port)
    client.subscribe(TOPIC.format("+"), qos=1)
    client.loop_start()
    subscribed.wait(10)
    load = Load(url, messages, per_message)
    started = time.perf_counter()
    load.go()
    if not done.wait(600):
        raise SystemExit(f"bare subscriber got {count[0]} of {messages}")
    elapsed = time.perf_counter() - started
    load_rate = load.result()
    client.disconnect()
    client.loop_stop()
    return messages / elapsed, load_rate


def fill_backlog(url: str, messages: int, per_message: int) -> None:
    """Publish ``messages`` to the broker while their subscriber is offline."""
    load = Load(url, messages, per_message)
    load.go()
    load.result()


def drain_bare(url: str, messages: int, per_message: int, receive_maximum: int) -> float:
    """Messages/s a bare subscriber drains from a backlog queued for its session."""
    address = parse_broker_url(url)
    count = [0]
    done = threading.Event()

    def on_message(client: Client, userdata: object, message: MQTTMessage) -> None:
        count[0] += 1
        if count[0] == messages:
            done.set()

    def session() -> Client:
        client = Client(
            CallbackAPIVersion.VERSION2,
            client_id="bench-bare-drain",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        client.on_message = on_message
        client.connect(
            address.host,
            address.port,
            clean_start=False,
            properties=connect_properties(3600, receive_maximum),
        )
        return client

    subscribed = threading.Event()
    first = session()
    first.on_subscribe = lambda *_: subscribed.set()
    first.subscribe(TOPIC.format("+"), qos=1)
    first.loop_start()
    subscribed.wait(10)
    first.disconnect()
    first.loop_stop()
    fill_backlog(url, messages, per_message)
    started = time.perf_counter()
    second = session()
    second.loop_start()
    if not done.wait(600):
        raise SystemExit(f"bare drain got {count[0]} of {messages}")
    elapsed = time.perf_counter() - started
    second.disconnect()
    second.loop_stop()
    return messages / elapsed


def drain_platform(url: str, data_dir: Path, messages: int, per_message: int) -> float:
    """Readings/s the platform stores draining a backlog queued for its session."""
    register(data_dir)
    # An exclusive subscription: this is one worker, and Mosquitto queues for it alone.
    mqtt = {"url": url, "client_id": f"bench-{data_dir.name}", "share_group": ""}
    settings = load_settings(data_dir=data_dir, mqtt=mqtt)
    expected = messages * per_message

    async def subscribe_once() -> None:
        platform = Platform(settings)
        try:
            async with platform.running():
                gateway = platform.mqtt
                assert gateway is not None
                async with asyncio.timeout(10):
                    await gateway.wait_ready()
        finally:
            platform.close()

    async def drain() -> float:
        platform = Platform(settings)
        try:
            started = time.perf_counter()
            async with platform.running():
                pipeline = platform.pipeline
                while pipeline.stats().stored < expected:
                    if time.perf_counter() - started > 600:
                        raise SystemExit(f"stored {pipeline.stats().stored} of {expected}")
                    await asyncio.sleep(0.005)
                elapsed = time.perf_counter() - started
                stats = pipeline.stats()
                if stats.quarantined or stats.duplicates:
                    raise SystemExit(f"unexpected: {stats}")
            return expected / elapsed
        finally:
            platform.close()

    asyncio.run(subscribe_once())
    fill_backlog(url, messages, per_message)
    return asyncio.run(drain())


# --- the platform ------------------------------------------------------------------


def register(data_dir: Path) -> None:
    """The simulated devices in a fresh metadata database."""
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = open_metadata(f"sqlite:///{data_dir / 'trellis.db'}")
    registry = DeviceRegistry(engine)
    for d in range(1, DEVICES + 1):
        registry.register(Device(TENANT, f"dev-{d:04d}", "pump"))
    engine.dispose()


def one_process(url: str, data_dir: Path, messages: int, per_message: int) -> float:
    """Readings/s from publish to durable storage through this process's Platform."""
    register(data_dir)
    # A share group of its own: an offline persistent session of an earlier phase still
    # holds its $share subscription and would take its turn of the messages.
    mqtt = {"url": url, "client_id": f"bench-{data_dir.name}", "share_group": data_dir.name}
    settings = load_settings(data_dir=data_dir, mqtt=mqtt)
    platform = Platform(settings)
    expected = messages * per_message

    async def scenario() -> float:
        async with platform.running():
            gateway = platform.mqtt
            assert gateway is not None
            async with asyncio.timeout(10):
                await gateway.wait_ready()
            load = await asyncio.to_thread(Load, url, messages, per_message)
            started = time.perf_counter()
            load.go()
            pipeline = platform.pipeline
            while pipeline.stats().stored < expected:
                if time.perf_counter() - started > 600:
                    raise SystemExit(f"stored {pipeline.stats().stored} of {expected}")
                await asyncio.sleep(0.005)
            elapsed = time.perf_counter() - started
            await asyncio.to_thread(load.result)
            stats = pipeline.stats()
            if stats.quarantined or stats.duplicates:
                raise SystemExit(f"unexpected: {stats}")
            return expected / elapsed

    try:
        return asyncio.run(scenario())
    finally:
        platform.close()


@contextmanager
def serve(data_dir: Path, url: str, client_id: str) -> Iterator[str]:
    """``trellis serve`` ingesting from the broker on the shared subscription."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRELLIS_")}
    env |= {
        "TRELLIS_DATA_DIR": str(data_dir),
        "TRELLIS_MQTT__URL": url,
        "TRELLIS_MQTT__CLIENT_ID": client_id,
        "TRELLIS_MQTT__SHARE_GROUP": data_dir.name,
    }
    trellis = str(Path(sys.executable).parent / "trellis")
    process = subprocess.Popen(
        [trellis, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(data_dir / f"{client_id}.log").open("wb"),
    )
    api = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{api}/api/v1/mqtt/status", timeout=1).json()["subscriptions"]:
                    break
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit("trellis serve did not subscribe")
            time.sleep(0.05)
        yield api
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def two_processes(url: str, data_dir: Path, messages: int, per_message: int) -> float:
    """Readings/s with two ``trellis serve`` workers on one shared subscription."""
    register(data_dir)
    with (
        serve(data_dir, url, "bench-ingest-1") as one,
        serve(data_dir, url, "bench-ingest-2") as two,
    ):
        load = Load(url, messages, per_message)
        started = time.perf_counter()
        load.go()
        with httpx.Client(timeout=5) as http:
            while True:
                acked = [
                    http.get(f"{api}/api/v1/mqtt/status").json()["acked"] for api in (one, two)
                ]
                if sum(acked) >= messages:
                    break
                if time.perf_counter() - started > 600:
                    raise SystemExit(f"acked {acked} of {messages}")
                time.sleep(0.02)
        elapsed = time.perf_counter() - started
        load.result()
        log(f"two workers took {acked[0]:,} and {acked[1]:,} messages")
    return messages * per_message / elapsed


def main() -> None:
    """Parse arguments, run the measurements, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run under 60 s")
    parser.add_argument("--publish", nargs=3, metavar=("URL", "MESSAGES", "PER_MESSAGE"))
    args = parser.parse_args()
    if args.publish:
        publish_main(args.publish[0], int(args.publish[1]), int(args.publish[2]))
        return
    singles = 20_000 if args.quick else 100_000
    packs = 4_000 if args.quick else 20_000
    with tempfile.TemporaryDirectory(prefix="trellis-bench-") as tmp:
        directory = Path(tmp)
        with MosquittoProcess(directory / "broker") as broker:
            log(f"bare subscriber: {singles:,} single-reading messages")
            bare_single, load_single = bare_subscriber(broker.url, singles, 1)
            log(f"platform, one process: {singles:,} single-reading messages")
            single = one_process(broker.url, directory / "single", singles, 1)
            emit(
                "readings_per_s_single",
                single,
                "readings/s",
                BASELINE,
                bare_single,
                "informational (a live Python publisher bounds both; see the drain figure)",
                singles,
            )
            emit(
                "load_msgs_per_s",
                load_single,
                "msgs/s",
                "platform single-reading msgs/s, same run",
                single,
                "> 1 ratio (the load is not the bottleneck)",
                singles,
            )
            receive_maximum = load_settings().mqtt.receive_maximum
            log(f"bare subscriber drains a backlog of {singles:,} single-reading messages")
            bare_drain = drain_bare(broker.url, singles, 1, receive_maximum)
            log(f"platform drains a backlog of {singles:,} single-reading messages")
            platform_drain = drain_platform(broker.url, directory / "drain", singles, 1)
            emit(
                "readings_per_s_single_drain",
                platform_drain,
                "readings/s",
                "bare paho subscriber draining the same broker backlog (offline QoS 1 "
                "session, same Receive Maximum), same run",
                bare_drain,
                ">= 0.7 ratio",
                singles,
            )
            log(f"bare subscriber: {packs:,} packs of 50")
            bare_pack, _ = bare_subscriber(broker.url, packs, 50)
            log(f"platform, one process: {packs:,} packs of 50")
            pack = one_process(broker.url, directory / "pack", packs, 50)
            emit(
                "readings_per_s_pack50",
                pack,
                "readings/s",
                BASELINE + ", readings/s",
                bare_pack * 50,
                ">= 100,000 readings/s",
                packs * 50,
            )
            log(f"platform, two processes: {packs:,} packs of 50")
            pack_two = two_processes(broker.url, directory / "two", packs, 50)
            emit(
                "readings_per_s_pack50_two_workers",
                pack_two,
                "readings/s",
                BASELINE + ", readings/s",
                bare_pack * 50,
                "informational (two ingest processes, one $share subscription)",
                packs * 50,
            )


if __name__ == "__main__":
    main()
