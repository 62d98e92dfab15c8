"""The promise of the MQTT door: 100,000 readings from 50 devices at QoS 1, the broker
restarted once and the platform process killed and restarted once, every reading stored
exactly once; and two workers on one shared subscription splitting the load."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import msgspec
import pytest

from tests.protocols.mqtt.conftest import devices, publisher
from tests.serving import free_port, wait_until
from trellis.core.clock import now_ms
from trellis.devices.registry import DeviceRegistry
from trellis.protocols.mqtt import MosquittoProcess
from trellis.store.metadata import open_metadata

DEVICES = 50
PER_MESSAGE = 20
MESSAGES_PER_DEVICE = 100  # 50 × 100 × 20 = 100,000 readings
TOTAL = DEVICES * MESSAGES_PER_DEVICE * PER_MESSAGE

pytestmark = pytest.mark.slow


def _register(data_dir: Path) -> None:
    engine = open_metadata(f"sqlite:///{data_dir / 'trellis.db'}")
    registry = DeviceRegistry(engine)
    for device in devices(DEVICES):
        registry.register(device)
    engine.dispose()


@contextmanager
def platform_process(
    data_dir: Path, broker_url: str, client_id: str, share_group: str = "trellis-ingest"
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``trellis serve`` in its own process, ingesting from the broker; yields URL, process."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRELLIS_")},
        "TRELLIS_DATA_DIR": str(data_dir),
        "TRELLIS_MQTT__URL": broker_url,
        "TRELLIS_MQTT__CLIENT_ID": client_id,
        "TRELLIS_MQTT__SHARE_GROUP": share_group,
        # Status polls come from this host: authenticated as the loopback admin (docs/security.md).
        "TRELLIS_AUTH__LOOPBACK_ADMIN": "true",
    }
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "trellis"), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def subscribed() -> bool:
        try:
            return bool(httpx.get(f"{url}/api/v1/mqtt/status", timeout=1).json()["subscriptions"])
        except (httpx.HTTPError, KeyError, ValueError):
            return False

    try:
        wait_until(subscribed, timeout=30, what="the platform to subscribe")
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _pack(device: int, seq: int, start_ms: int) -> bytes:
    base = start_ms + (seq - 1) * PER_MESSAGE * 1000
    return msgspec.json.encode(
        [
            {"ts": base + i * 1000, "seq": seq, "values": {"vibration": (device + i) % 50}}
            for i in range(PER_MESSAGE)
        ]
    )


def _publish_all(url: str, start_ms: int, progress: list[int]) -> None:
    device = publisher(url, "fleet-loader", max_in_flight=100)
    try:
        for seq in range(1, MESSAGES_PER_DEVICE + 1):
            for d in range(1, DEVICES + 1):
                device.publish(f"trellis/v1/default/dev-{d:04d}/telemetry", _pack(d, seq, start_ms))
            progress[0] = seq
        device.flush(timeout=120)
    finally:
        device.close()


def _stored(data_dir: Path) -> tuple[int, dict[str, set[int]]]:
    with sqlite3.connect(f"file:{data_dir / 'timeseries.db'}?mode=ro", uri=True) as db:
        count = db.execute("SELECT count(*) FROM readings").fetchone()[0]
        seqs: dict[str, set[int]] = {}
        for device, seq in db.execute("SELECT DISTINCT device, seq FROM readings"):
            seqs.setdefault(device, set()).add(seq)
    return int(count), seqs


def _count(data_dir: Path) -> int:
    try:
        return _stored(data_dir)[0] if (data_dir / "timeseries.db").exists() else 0
    except sqlite3.OperationalError:
        return 0


def test_every_reading_is_stored_once_through_a_broker_and_a_platform_restart(
    tmp_path: Path, broker: MosquittoProcess
) -> None:
    """100,000 readings at QoS 1 survive a broker restart and a platform kill, stored once."""
    data = tmp_path / "data"
    _register(data)
    start_ms = now_ms() - 3 * 86_400_000
    progress = [0]
    # One worker on a plain subscription: Mosquitto 2.0.11 drops $share subscriptions
    # from the sessions it restores after a restart (see docs/mqtt.md).
    with platform_process(data, broker.url, "ingest-a", share_group="") as (_, platform):
        loader = threading.Thread(target=_publish_all, args=(broker.url, start_ms, progress))
        loader.start()
        wait_until(lambda: progress[0] >= 30, timeout=60, what="a third of the load")
        broker.restart()
        wait_until(lambda: progress[0] >= 60, timeout=60, what="two thirds of the load")
        wait_until(lambda: _count(data) > 0, what="some readings stored")
        platform.kill()  # mid-stream, no goodbye: what it had not acked waits in its session
        platform.wait()
    with platform_process(data, broker.url, "ingest-a", share_group="") as (url, _):
        loader.join(timeout=120)
        assert not loader.is_alive()
        wait_until(lambda: _count(data) >= TOTAL, timeout=60, what="every reading")
        status = httpx.get(f"{url}/api/v1/mqtt/status", timeout=5).json()
        assert status["connected"]
    count, seqs = _stored(data)
    assert count == TOTAL
    assert len(seqs) == DEVICES
    expected = set(range(1, MESSAGES_PER_DEVICE + 1))
    assert all(found == expected for found in seqs.values())


def test_two_workers_on_one_shared_subscription_split_the_load(
    tmp_path: Path, broker: MosquittoProcess
) -> None:
    """Two ingest processes on $share/trellis-ingest each take > 30 % and store all once."""
    data = tmp_path / "data"
    _register(data)
    start_ms = now_ms() - 3 * 86_400_000
    with (
        platform_process(data, broker.url, "ingest-1") as (first, _),
        platform_process(data, broker.url, "ingest-2") as (second, _),
    ):
        _publish_all(broker.url, start_ms, [0])
        wait_until(lambda: _count(data) >= TOTAL, timeout=60, what="every reading")
        received = [
            httpx.get(f"{url}/api/v1/mqtt/status", timeout=5).json()["received"]
            for url in (first, second)
        ]
    total = DEVICES * MESSAGES_PER_DEVICE
    assert sum(received) >= total
    assert all(share > 0.3 * total for share in received), received
    count, seqs = _stored(data)
    assert count == TOTAL
    assert all(found == set(range(1, MESSAGES_PER_DEVICE + 1)) for found in seqs.values())
