"""The telemetry query API over many devices and metrics, and the storage budget API."""

from __future__ import annotations

import httpx

from tests.serving import wait_until
from trellis.core.clock import now_ms


def _ready(client: httpx.Client) -> None:
    wait_until(
        lambda: len(client.get("/api/v1/devices/room-0001/telemetry/co2").json()) >= 2,
        what="two CO2 readings",
    )


def test_query_several_devices_and_metrics(client: httpx.Client) -> None:
    """GET /telemetry returns one series per device and metric asked, raw and bucketed."""
    _ready(client)
    params: dict[str, list[str] | str] = {
        "device": ["room-0001", "room-0002"],
        "metric": ["co2", "temperature"],
    }
    raw = client.get("/api/v1/telemetry", params=params)
    assert raw.status_code == 200, raw.text
    series = raw.json()
    assert [(s["device"], s["metric"]) for s in series] == [
        ("room-0001", "co2"),
        ("room-0001", "temperature"),
        ("room-0002", "co2"),
        ("room-0002", "temperature"),
    ]
    assert all(len(s["points"]) >= 1 for s in series)
    assert all(len(p) == 2 for s in series for p in s["points"])
    bucketed = client.get(
        "/api/v1/telemetry", params={**params, "bucket_ms": 60_000, "fn": "count"}
    ).json()
    for raw_series, buckets in zip(series, bucketed, strict=True):
        assert sum(value for _, value in buckets["points"]) >= len(raw_series["points"])


def test_query_without_metrics_reads_every_reported_metric(client: httpx.Client) -> None:
    """Leaving out metric= reads each device's reported metrics."""
    _ready(client)
    series = client.get("/api/v1/telemetry", params={"device": "room-0001"}).json()
    assert {s["metric"] for s in series} == {"co2", "occupancy", "temperature"}


def test_ten_years_at_one_second_is_refused(client: httpx.Client) -> None:
    """A 315-million-bucket query is a 422 naming the limit, answered at once."""
    end = now_ms()
    response = client.get(
        "/api/v1/telemetry",
        params={
            "device": "pump-0001",
            "metric": "pressure",
            "start": end - 10 * 365 * 86_400_000,
            "end": end,
            "bucket_ms": 1000,
        },
    )
    assert response.status_code == 422
    assert "at most 100000" in response.json()["detail"]


def test_too_many_series_are_refused(client: httpx.Client) -> None:
    """More than 2,000 series in one query is a 422 naming the limit."""
    metrics = [f"m{i}" for i in range(501)]
    response = client.get(
        "/api/v1/telemetry",
        params={"device": ["pump-0001", "pump-0002", "room-0001", "room-0002"], "metric": metrics},
    )
    assert response.status_code == 422
    assert "at most 2000" in response.json()["detail"]


def test_unknown_device_is_404_and_sql_in_names_is_data(client: httpx.Client) -> None:
    """An unknown device is a 404, even when its name is an SQL injection attempt."""
    response = client.get(
        "/api/v1/telemetry", params={"device": "x'; DROP TABLE readings; --", "metric": "m"}
    )
    assert response.status_code == 404
    assert client.get("/api/v1/devices/room-0001/latest").status_code == 200


def test_query_needs_a_device(client: httpx.Client) -> None:
    """Without device= the request is refused by validation."""
    assert client.get("/api/v1/telemetry").status_code == 422


def test_storage_budget(client: httpx.Client) -> None:
    """GET /storage reports bytes, free space, growth and a per-tenant share."""
    _ready(client)
    budget = client.get("/api/v1/storage").json()
    assert budget["bytes"] > 0
    assert budget["free_bytes"] > 0
    assert budget["growth_bytes_per_day"] > 0
    assert budget["days_until_full"] > 0
    assert budget["alert"] is False
    [tenant] = budget["tenants"]
    assert tenant["tenant"] == "default"
    assert tenant["readings"] > 0


def test_retention_run_keeps_recent_data(client: httpx.Client) -> None:
    """POST /storage/retention applies the policies; fresh readings survive it."""
    _ready(client)
    run = client.post("/api/v1/storage/retention").json()
    assert run == {"readings_deleted": 0, "rollups_deleted": 0, "groups": 1}  # one policy
    assert client.get("/api/v1/devices/room-0001/telemetry/co2").json()
