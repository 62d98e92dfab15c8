"""Models and quarantine replay over the API: import a model, quarantine, fix, replay."""

from __future__ import annotations

import httpx

BOILER_V1 = (
    "name: boiler\nversion: 1.0.0\nproperties: {flow_temp: {unit: Cel, minimum: 0, maximum: 90}}"
)
BOILER_V2 = (
    "name: boiler\nversion: 1.1.0\nproperties: {flow_temp: {unit: Cel, minimum: 0, maximum: 120}}"
)


def test_model_import_refuses_unknown_unit(client: httpx.Client) -> None:
    """A model with an unknown unit is a 422 naming the unit."""
    bad = "name: x\nversion: '1'\nproperties: {a: {unit: smoots}}"
    response = client.post("/api/v1/device-models", json={"text": bad})
    assert response.status_code == 422
    assert "unknown unit 'smoots'" in response.text


def test_onboard_quarantine_fix_and_replay(client: httpx.Client) -> None:
    """A new model, a reading beyond its range quarantined, v1.1.0 imported, replay stores it."""
    assert client.post("/api/v1/device-models", json={"text": BOILER_V1}).status_code == 200
    assert client.put("/api/v1/devices/boiler-1", json={"model": "boiler"}).status_code == 200
    sent = client.post("/api/v1/telemetry/boiler-1", json={"values": {"flow_temp": 105.0}})
    assert sent.status_code == 422
    assert sent.json()["reason"].endswith("outside the contract range [0, 90] Cel")
    pending = client.get("/api/v1/quarantine").json()
    entry = next(e for e in pending if e["message"]["id"] == sent.json()["message_id"])
    assert client.get(f"/api/v1/quarantine/{entry['id']}").json()["contract"] == "boiler@1.0.0"

    assert client.post("/api/v1/device-models", json={"text": BOILER_V2}).status_code == 200
    versions = client.get("/api/v1/device-models/boiler/versions").json()
    assert [v["version"] for v in versions] == ["1.0.0", "1.1.0"]
    report = client.post("/api/v1/quarantine/replay", json={"ids": [entry["id"]]}).json()
    assert (report["recovered"], report["stored"]) == (1, 1)
    again = client.post("/api/v1/quarantine/replay", json={"ids": [entry["id"]]}).json()
    assert again["replayed"] == 0
