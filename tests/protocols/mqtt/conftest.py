"""A private Mosquitto per test, and a platform wired to it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services import require
from trellis.core.config import Settings, load_settings
from trellis.core.types import Device
from trellis.protocols.mqtt import MosquittoProcess, MqttPublisher, mosquitto_binary
from trellis.protocols.mqtt.broker import parse_broker_url


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoProcess]:
    """A Mosquitto on a free loopback port with its own config and persistence."""
    require("mosquitto", mosquitto_binary() is not None, "apt install mosquitto")
    process = MosquittoProcess(tmp_path / "broker")
    process.start()
    yield process
    process.stop()


def mqtt_settings(tmp_path: Path, url: str, **mqtt: Any) -> Settings:
    """Settings of a platform that ingests from ``url`` (no simulator)."""
    return load_settings(data_dir=tmp_path / "data", mqtt={"url": url, **mqtt})


def publisher(url: str, client_id: str = "test-device", **options: Any) -> MqttPublisher:
    """A connected device-side publisher."""
    device = MqttPublisher(parse_broker_url(url), client_id, **options)
    device.connect()
    return device


def devices(count: int, model: str = "pump", tenant: str = "default") -> list[Device]:
    """``count`` devices named ``dev-0001``…"""
    return [Device(tenant, f"dev-{i:04d}", model) for i in range(1, count + 1)]


async def eventually(check: Callable[[], bool], what: str, within: float = 30.0) -> None:
    """Yield to the loop until ``check`` holds; the effect happens on other tasks/threads."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.02)
