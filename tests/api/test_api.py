"""The REST API against a real server: reads, HTTP ingest with bad input, alert actions."""

from __future__ import annotations

import itertools

import httpx
import msgspec
import pytest

from tests.serving import wait_until
from trellis.core.clock import now_ms

_seq = itertools.count(10_000)


def _post(client: httpx.Client, device: str, body: bytes | dict[str, object]) -> httpx.Response:
    content = body if isinstance(body, bytes) else msgspec.json.encode(body)
    return client.post(f"/api/v1/telemetry/{device}", content=content)


def test_health_and_openapi(client: httpx.Client) -> None:
    """Health answers, and every route documents a JSON schema for its success response."""
    health = client.get("/api/v1/health").json()
    assert health["status"] == "ok"
    assert health["devices"] == 4
    spec = client.get("/api/v1/openapi.json").json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            ok = {code: r for code, r in operation["responses"].items() if code.startswith("2")}
            assert ok, f"{method} {path} documents no success response"
            for code, response in ok.items():
                if code != "204":
                    assert "schema" in response["content"]["application/json"], (method, path)
    assert "Alert" in spec["components"]["schemas"]


def test_devices_and_live_telemetry(client: httpx.Client) -> None:
    """The simulated devices are listed and their telemetry can be read back three ways."""
    devices = client.get("/api/v1/devices").json()
    assert [d["id"] for d in devices] == ["pump-0001", "pump-0002", "room-0001", "room-0002"]
    assert client.get("/api/v1/devices/pump-0001").json()["model"] == "pump"
    wait_until(
        lambda: len(client.get("/api/v1/devices/room-0001/telemetry/co2").json()) >= 2,
        what="two CO2 readings",
    )
    latest = {x["metric"]: x for x in client.get("/api/v1/devices/room-0001/latest").json()}
    assert set(latest) == {"co2", "occupancy", "temperature"}
    assert latest["co2"]["unit"] == "ppm"
    buckets = client.get(
        "/api/v1/devices/room-0001/telemetry/co2/aggregate",
        params={"bucket_ms": 60_000, "fn": "max"},
    ).json()
    assert buckets
    assert all(len(b) == 2 for b in buckets)


def test_http_ingest_stores_and_acknowledges_after_commit(client: httpx.Client) -> None:
    """A 202 means the reading is already stored: it is readable at once."""
    ts = now_ms() - 5_000
    response = _post(
        client, "pump-0001", {"ts": ts, "seq": next(_seq), "values": {"pressure": 42.5}}
    )
    assert response.status_code == 202, response.text
    assert response.json()["readings"] == 1
    points = client.get(
        "/api/v1/devices/pump-0001/telemetry/pressure", params={"start": ts, "end": ts + 1}
    ).json()
    assert points == [[ts, 42.5]]


def test_duplicate_message_is_stored_once(client: httpx.Client) -> None:
    """The same message sent twice (a QoS 1 redelivery) is stored once and counted."""
    before = client.get("/api/v1/stats").json()["ingest"]["duplicates"]
    ts = now_ms() - 7_000
    body = {"ts": ts, "seq": next(_seq), "values": {"pressure": 11.0, "vibration": 1.0}}
    assert _post(client, "pump-0002", body).status_code == 202
    assert _post(client, "pump-0002", body).status_code == 202
    stats = client.get("/api/v1/stats").json()
    assert stats["ingest"]["duplicates"] - before == 2
    points = client.get(
        "/api/v1/devices/pump-0002/telemetry/pressure", params={"start": ts, "end": ts + 1}
    ).json()
    assert points == [[ts, 11.0]]


@pytest.mark.parametrize(
    ("device", "body", "reason"),
    [
        ("pump-0001", b"{not json", "malformed JSON"),
        ("pump-0001", b'{"ts": 1}', "values"),
        ("pump-0001", b'{"values": {"temperature": "hot"}}', "$.values.temperature"),
        ("pump-0001", b'{"values": {"temperature": NaN}}', "malformed JSON"),
        ("pump-0001", b'{"values": {"temperature": 1e999}}', "out of range"),
        ("pump-0001", b'{"values": {"temperature": 50}, "ts": "2036-01-01T00:00:00Z"}', "ahead"),
        ("pump-0001", b'{"values": {"rpm": 1450}}', "unknown metric 'rpm'"),
        ("ghost-1", b'{"values": {"temperature": 50}}', "unknown device 'ghost-1'"),
    ],
)
def test_bad_input_is_quarantined_and_explained(
    client: httpx.Client, device: str, body: bytes, reason: str
) -> None:
    """Each kind of bad message gets 422 with the reason, and lands in quarantine whole."""
    response = _post(client, device, body)
    assert response.status_code == 422
    result = response.json()
    assert result["quarantined"] is True
    assert reason in result["reason"]
    quarantined = client.get("/api/v1/quarantine", params={"limit": 50}).json()
    entry = next(q for q in quarantined if q["message"]["id"] == result["message_id"])
    assert msgspec.json.decode(msgspec.json.encode(entry["message"]["payload"]), type=bytes) == body
    assert entry["reason"] == result["reason"]


def test_oversized_body_is_refused_before_it_is_read(client: httpx.Client) -> None:
    """A body over the configured limit is refused with 413 and a clear message."""
    response = _post(client, "pump-0001", b'{"values": {}, "pad": "' + b"x" * 10_000 + b'"}')
    assert response.status_code == 413
    assert "exceeds the limit of 4096 bytes" in response.json()["detail"]


def test_query_errors_are_clear(client: httpx.Client) -> None:
    """Unknown ids give 404; bad time ranges give 422 naming the parameter."""
    assert client.get("/api/v1/devices/nope").status_code == 404
    assert client.get("/api/v1/devices/nope/latest").json() == {"detail": "device 'nope' not found"}
    assert client.get("/api/v1/alerts/987654").status_code == 404
    bad = client.get("/api/v1/devices/pump-0001/telemetry/pressure", params={"start": "yesterday"})
    assert bad.status_code == 422
    assert "start" in bad.json()["detail"]
    backwards = client.get(
        "/api/v1/devices/pump-0001/telemetry/pressure",
        params={"start": 2_000_000_000_000, "end": 1_900_000_000_000},
    )
    assert backwards.status_code == 422


def test_rule_trips_alert_which_is_acknowledged_and_resolved(client: httpx.Client) -> None:
    """A rule saved over the API trips on posted telemetry; the alert is acked, resolved."""
    rule = {
        "id": "pressure-spike",
        "metric": "pressure",
        "op": ">",
        "threshold": 90,
        "severity": "critical",
        "model": "pump",
    }
    assert client.put("/api/v1/rules/pressure-spike", json=rule).status_code == 200
    assert any(r["id"] == "pressure-spike" for r in client.get("/api/v1/rules").json())
    spike = {"ts": now_ms(), "seq": next(_seq), "values": {"pressure": 95.0}}
    assert _post(client, "pump-0001", spike).status_code == 202

    def raised() -> list[dict[str, object]]:
        alerts = client.get("/api/v1/alerts", params={"status": "active"}).json()
        return [a for a in alerts if a["rule"] == "pressure-spike"]

    wait_until(lambda: bool(raised()), what="the pressure-spike alert")
    alert = raised()[0]
    assert (alert["device"], alert["severity"], alert["value"]) == ("pump-0001", "critical", 95.0)
    acked = client.post(f"/api/v1/alerts/{alert['id']}/acknowledge", json={"by": "ana"}).json()
    assert acked["changed"] is True
    assert (acked["alert"]["acknowledged"], acked["alert"]["acknowledged_by"]) == (True, "ana")
    resolved = client.post(f"/api/v1/alerts/{alert['id']}/resolve", json={"by": "ana"}).json()
    assert resolved["alert"]["status"] == "resolved"
    assert client.delete("/api/v1/rules/pressure-spike").status_code == 204
    assert client.delete("/api/v1/rules/pressure-spike").status_code == 404


def test_invalid_rule_is_refused(client: httpx.Client) -> None:
    """A rule with a bad field is refused with 422 naming it, and nothing is saved."""
    bad = {"id": "x", "metric": "t", "op": "=>", "threshold": 1, "severity": "major"}
    response = client.put("/api/v1/rules/x", json=bad)
    assert response.status_code == 422
    assert "op" in response.json()["detail"]
    assert all(r["id"] != "x" for r in client.get("/api/v1/rules").json())
    mismatch = {**bad, "op": ">", "id": "y"}
    assert client.put("/api/v1/rules/x", json=mismatch).status_code == 422


def test_responses_are_compressed_for_clients_that_ask(client: httpx.Client) -> None:
    """Large responses are gzip-encoded when the client accepts it."""
    response = client.get("/api/v1/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.json()["info"]["title"] == "Trellis"


def test_uncompressed_answers_still_say_they_vary_by_encoding(client: httpx.Client) -> None:
    """A client that does not ask for gzip gets the plain body, and every answer carries
    ``Vary: Accept-Encoding`` so a cache never hands the gzipped one to it."""
    plain = client.get("/api/v1/openapi.json", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.json()["info"]["title"] == "Trellis"
    assert "accept-encoding" in plain.headers["vary"].lower()
    small = client.get("/api/v1/health/live", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in small.headers  # under the minimum size
    assert "accept-encoding" in small.headers["vary"].lower()
