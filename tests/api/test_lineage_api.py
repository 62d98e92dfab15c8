"""Lineage, archive and reprocess over the API of a running Trellis, and quarantine replay
publishing recovered readings on the bus (a rule raises an alert on a replayed value)."""

from __future__ import annotations

import httpx

from tests.serving import wait_until
from trellis.core.clock import now_ms

KETTLE_V1 = (
    "name: kettle\nversion: 1.0.0\nproperties: {water_temp: {unit: Cel, minimum: 0, maximum: 90}}"
)
KETTLE_V2 = KETTLE_V1.replace("1.0.0", "1.1.0").replace("maximum: 90", "maximum: 120")


def test_a_posted_reading_walks_back_to_its_message(client: httpx.Client) -> None:
    """The message id the POST returned is the reading's source, with seq and contract."""
    ts = now_ms() - 1000
    body = {"ts": ts, "seq": 4242, "values": {"pressure": 4.2}}
    sent = client.post("/api/v1/telemetry/pump-0002", json=body)
    assert sent.status_code == 202
    message_id = sent.json()["message_id"]

    graph = client.get(f"/api/v1/lineage/reading/pump-0002/pressure/{ts}").json()
    nodes = {n["key"]: n for n in graph["nodes"]}
    source = next(e["target"] for e in graph["edges"] if e["relation"] == "derived_from")
    assert source == f"message:{message_id}"
    assert nodes[source]["detail"]["seq"] == 4242
    assert nodes[source]["detail"]["contract"] == "pump@1.0.0"

    message = client.get(f"/api/v1/lineage/message/{message_id}").json()
    root = next(n for n in message["nodes"] if n["key"] == message["root"])
    assert '"pressure":4.2' in root["detail"]["payload"]
    assert client.get("/api/v1/archive").json()["messages"] > 0


def test_lineage_refuses_bad_kinds_and_ids(client: httpx.Client) -> None:
    """Unknown kind and malformed id are 422s naming them; a missing thing is a 404."""
    kind = client.get("/api/v1/lineage/kpi/1")
    assert kind.status_code == 422
    assert "unknown lineage kind 'kpi'" in kind.text
    malformed = client.get("/api/v1/lineage/reading/pump-0001/pressure")
    assert malformed.status_code == 422
    assert client.get("/api/v1/lineage/message/nope").status_code == 404


def test_reprocess_over_the_api_is_idempotent(client: httpx.Client) -> None:
    """The pumps' last hour re-derived with the current version: the second run adds none."""
    wait_until(lambda: client.get("/api/v1/archive").json()["messages"] >= 8, what="archive")
    first = client.post("/api/v1/reprocess", json={"model": "pump", "since": "1h"})
    assert first.status_code == 200
    again = client.post("/api/v1/reprocess", json={"model": "pump", "since": "1h"}).json()
    assert again["model"] == "pump@1.0.0"
    assert again["messages"] >= first.json()["messages"] > 0
    assert again["refused"] == 0
    # New readings arrive meanwhile, but what was already there is never stored twice.
    assert again["stored"] <= again["messages"] - first.json()["messages"] + 3
    unknown = client.post("/api/v1/reprocess", json={"model": "nope", "since": "1h"})
    assert unknown.status_code == 404
    bad = client.post("/api/v1/reprocess", json={"model": "pump", "since": "yesterday"})
    assert bad.status_code == 422


def test_replayed_readings_reach_the_rules_like_live_ones(client: httpx.Client) -> None:
    """A quarantined value, replayed after a contract fix, trips a threshold rule."""
    assert client.post("/api/v1/device-models", json={"text": KETTLE_V1}).status_code == 200
    assert client.put("/api/v1/devices/kettle-1", json={"model": "kettle"}).status_code == 200
    rule = {
        "id": "kettle-boil",
        "metric": "water_temp",
        "op": ">",
        "threshold": 95,
        "severity": "major",
        "model": "kettle",
    }
    assert client.put("/api/v1/rules/kettle-boil", json=rule).status_code == 200
    sent = client.post("/api/v1/telemetry/kettle-1", json={"values": {"water_temp": 100.0}})
    assert sent.status_code == 422
    entry = next(
        e
        for e in client.get("/api/v1/quarantine").json()
        if e["message"]["id"] == sent.json()["message_id"]
    )
    assert client.post("/api/v1/device-models", json={"text": KETTLE_V2}).status_code == 200
    report = client.post("/api/v1/quarantine/replay", json={"ids": [entry["id"]]}).json()
    assert (report["recovered"], report["stored"]) == (1, 1)

    def raised() -> list[dict[str, object]]:
        alerts = client.get("/api/v1/alerts", params={"status": "active"}).json()
        return [a for a in alerts if a["rule"] == "kettle-boil"]

    wait_until(lambda: bool(raised()), what="the kettle-boil alert from the replayed reading")
    assert raised()[0]["value"] == 100.0
    graph = client.get(f"/api/v1/lineage/message/{sent.json()['message_id']}").json()
    assert any(n["key"] == "contract:kettle@1.1.0" for n in graph["nodes"])
