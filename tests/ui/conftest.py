"""A running Trellis demo (simulated fleet) for the dashboard tests, and helpers."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.serving import serve, wait_until
from trellis.api.app import create_app
from trellis.core.config import load_settings
from trellis.platform import Platform

#: A rule that trips at once on a pressure no simulated pump reaches.
HOT_RULE = {
    "id": "ui-test-pressure",
    "name": "UI test: pressure above 50 bar",
    "model": "pump",
    "metric": "pressure",
    "op": ">",
    "threshold": 50.0,
    "clear_threshold": 40.0,
    "for_s": 0,
    "severity": "major",
}

_devices = itertools.count(1)


@dataclass(frozen=True)
class Demo:
    """The server under test: its base URL and, for white-box checks, its app."""

    url: str
    app: FastAPI

    @property
    def platform(self) -> Platform:
        """The running platform (the server runs in this process, in a thread)."""
        platform: Platform = self.app.state.platform
        return platform


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """``trellis demo`` in miniature: 2 pumps and 1 room at 5 Hz, served by uvicorn."""
    data: Path = tmp_path_factory.mktemp("ui") / "data"
    settings = load_settings(
        data_dir=data,
        sim={"pumps": 2, "rooms": 1, "rate_hz": 5, "fault_device": None},
    )
    app = create_app(settings, simulate=True)
    with serve(app) as url:
        yield Demo(url, app)


@pytest.fixture
def client(demo: Demo) -> Iterator[httpx.Client]:
    """An HTTP client on the demo, holding the dashboard's CSRF cookie and sending its token
    as htmx does (``X-CSRF-Token``)."""
    with httpx.Client(base_url=demo.url, timeout=10) as http:
        http.get("/alerts").raise_for_status()
        http.headers["X-CSRF-Token"] = http.cookies["trellis_csrf"]
        yield http


def raise_alert(client: httpx.Client) -> tuple[str, int]:
    """Register a fresh pump, send it a pressure that trips :data:`HOT_RULE`;
    return the device id and the id of the alert it raised."""
    device = f"ui-pump-{next(_devices)}"
    assert client.put(f"/api/v1/devices/{device}", json={"model": "pump"}).status_code == 200
    assert client.put(f"/api/v1/rules/{HOT_RULE['id']}", json=HOT_RULE).status_code == 200
    posted = client.post(f"/api/v1/telemetry/{device}", json={"values": {"pressure": 60.0}})
    assert posted.status_code == 202, posted.text

    def alerts() -> list[dict[str, object]]:
        found: list[dict[str, object]] = client.get(
            "/api/v1/alerts", params={"device": device}
        ).json()
        return found

    wait_until(lambda: bool(alerts()), what=f"an alert for {device}")
    alert_id = alerts()[0]["id"]
    assert isinstance(alert_id, int)
    return device, alert_id
