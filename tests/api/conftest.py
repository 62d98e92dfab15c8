"""A running Trellis with a small simulated fleet, and an HTTP client for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serving import serve
from trellis.api.app import create_app
from trellis.core.config import load_settings


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real server with 2 pumps and 2 rooms simulated at 2 Hz, no injected fault."""
    data: Path = tmp_path_factory.mktemp("api") / "data"
    settings = load_settings(
        data_dir=data,
        sim={"pumps": 2, "rooms": 2, "rate_hz": 2, "fault_device": None},
        ingest={"max_payload_bytes": 4096},
    )
    with serve(create_app(settings, simulate=True)) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    """An HTTP client on the running server."""
    with httpx.Client(base_url=base_url, timeout=10) as http:
        yield http
