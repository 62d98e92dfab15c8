"""Stream rules over the REST API: validation against the device models, stats, dry runs."""

from __future__ import annotations

import itertools

import httpx
import msgspec

from tests.serving import wait_until
from trellis.core.clock import now_ms

_seq = itertools.count(50_000)


def _post(client: httpx.Client, device: str, ts: int, values: dict[str, float]) -> None:
    body = {"ts": ts, "seq": next(_seq), "values": values}
    response = client.post(f"/api/v1/telemetry/{device}", content=msgspec.json.encode(body))
    assert response.status_code == 202, response.text


def test_cel_rule_fires_and_its_stats_are_visible(client: httpx.Client) -> None:
    """A CEL rule with a window, saved over the API, raises on telemetry and counts in stats."""
    rule = {
        "id": "pump-pressure-window",
        "metric": "pressure",
        "severity": "major",
        "select": {"models": ["pump"]},
        "window": {"kind": "sliding", "size_s": 60},
        "condition": "window.max > 97.0 && device == 'pump-0002'",
    }
    saved = client.put("/api/v1/rules/pump-pressure-window", json=rule)
    assert saved.status_code == 200, saved.text
    _post(client, "pump-0002", now_ms(), {"pressure": 98.5})

    def raised() -> list[dict[str, object]]:
        alerts = client.get("/api/v1/alerts", params={"status": "active"}).json()
        return [a for a in alerts if a["rule"] == "pump-pressure-window"]

    wait_until(lambda: bool(raised()), what="the windowed rule's alert")
    stats = {s["rule"]: s for s in client.get("/api/v1/rules/stats").json()}
    mine = stats["pump-pressure-window"]
    assert (mine["raised"], mine["errors"]) == (1, 0)
    assert mine["readings"] >= 1
    disabled = client.post("/api/v1/rules/pump-pressure-window/enabled", params={"enabled": False})
    assert disabled.json()["enabled"] is False
    assert client.delete("/api/v1/rules/pump-pressure-window").status_code == 204


def test_rules_naming_unknown_metrics_models_or_bad_cel_are_refused(client: httpx.Client) -> None:
    """422 with the field named: unknown metric, unknown model, CEL syntax and type errors."""
    base = {"id": "bad", "severity": "minor", "condition": "value > 1.0"}
    cases = [
        ({"metric": "humidity", "select": {"models": ["pump"]}}, "$.metric"),
        ({"metric": "pressure", "select": {"models": ["boiler"]}}, "$.select.models"),
        ({"metric": "pressure", "condition": "value >"}, "line 1, column 8"),
        ({"metric": "pressure", "condition": "value + 1 > 2.0"}, "type error"),
    ]
    for fields, expected in cases:
        response = client.put("/api/v1/rules/bad", json=base | fields)
        assert response.status_code == 422
        assert expected in response.json()["detail"]
    assert all(r["id"] != "bad" for r in client.get("/api/v1/rules").json())


def test_dry_run_replays_stored_readings(client: httpx.Client) -> None:
    """A rule tested over the last hour reports what it would have fired, at the stored times."""
    start = now_ms() - 600_000
    for i, value in enumerate([10.0, 99.5, 99.6, 10.0]):
        _post(client, "pump-0001", start + i * 1000, {"vibration": value})
    rule = {
        "id": "vibration-dry",
        "metric": "vibration",
        "severity": "minor",
        "select": {"devices": ["pump-0001"]},
        "condition": "value > 99.0",
        "enabled": False,
    }
    assert client.put("/api/v1/rules/vibration-dry", json=rule).status_code == 200

    def replay() -> dict[str, object]:
        response = client.post("/api/v1/rules/vibration-dry/test", params={"since": "-1h"})
        assert response.status_code == 200, response.text
        result: dict[str, object] = response.json()
        return result

    wait_until(lambda: len(replay()["signals"]) == 2, what="the stored readings")  # type: ignore[arg-type]
    result = replay()
    signals = result["signals"]
    assert [(s["kind"], s["ts"]) for s in signals] == [  # type: ignore[union-attr]
        ("raise", start + 1000),
        ("clear", start + 3000),
    ]
    assert result["series"][0]["device"] == "pump-0001"  # type: ignore[index]
    bad = client.post("/api/v1/rules/vibration-dry/test", params={"since": "yesterday"})
    assert bad.status_code == 422
