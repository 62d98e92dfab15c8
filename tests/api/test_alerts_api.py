"""The alert API over a real server: outcomes, feedback refusal, timeline, labels, metrics."""

from __future__ import annotations

import csv
import io
import itertools

import httpx
import msgspec
import pytest

from tests.serving import wait_until
from trellis.core.clock import now_ms

RULE = {
    "id": "api-pressure",
    "name": "API test: pressure above 50 bar",
    "model": "pump",
    "metric": "pressure",
    "op": ">",
    "threshold": 50.0,
    "clear_threshold": 40.0,
    "for_s": 0,
    "severity": "major",
}
_devices = itertools.count(1)


def _alert_of(client: httpx.Client, device: str, status: str) -> dict[str, object]:
    def found() -> list[dict[str, object]]:
        alerts: list[dict[str, object]] = client.get(
            "/api/v1/alerts", params={"device": device, "status": status}
        ).json()
        return alerts

    wait_until(lambda: bool(found()), what=f"a {status} alert for {device}")
    return found()[0]


def _send(client: httpx.Client, device: str, pressure: float) -> None:
    body = {"ts": now_ms(), "values": {"pressure": pressure}}
    assert client.post(f"/api/v1/telemetry/{device}", json=body).status_code == 202


def _raise(client: httpx.Client, *, clear: bool) -> int:
    """A fresh pump trips the rule (and clears it when asked); returns the alert id."""
    device = f"api-pump-{next(_devices)}"
    assert client.put(f"/api/v1/devices/{device}", json={"model": "pump", "site": "s1"}).is_success
    assert client.put(f"/api/v1/rules/{RULE['id']}", json=RULE).is_success
    _send(client, device, 60.0)
    alert_id = _alert_of(client, device, "active")["id"]
    if clear:
        _send(client, device, 30.0)
        _alert_of(client, device, "cleared")
    assert isinstance(alert_id, int)
    return alert_id


def test_acknowledge_twice_answers_who_was_first(client: httpx.Client) -> None:
    """The second acknowledgement is 200 with changed=false and names the first operator."""
    alert_id = _raise(client, clear=False)
    first = client.post(f"/api/v1/alerts/{alert_id}/acknowledge", json={"by": "ana"}).json()
    second = client.post(f"/api/v1/alerts/{alert_id}/acknowledge", json={"by": "bob"}).json()
    assert (first["changed"], first["detail"]) == (True, "acknowledged by ana")
    assert second["changed"] is False
    assert second["detail"].startswith("already acknowledged by ana at ")
    assert second["alert"]["acknowledged_by"] == "ana"


def test_feedback_on_an_active_alert_is_refused(client: httpx.Client) -> None:
    """409 with the reason; the alert stays active and no label is written."""
    alert_id = _raise(client, clear=False)
    body = {"by": "ana", "feedback": {"verdict": "false_positive"}}
    response = client.post(f"/api/v1/alerts/{alert_id}/resolve", json=body)
    assert response.status_code == 409
    assert "still active" in response.json()["detail"]
    assert client.get(f"/api/v1/alerts/{alert_id}").json()["status"] == "active"
    labels = client.get("/api/v1/alerts/labels").text.splitlines()
    assert all(msgspec.json.decode(line)["alert_id"] != alert_id for line in labels)


@pytest.mark.parametrize(
    ("feedback", "status", "needle"),
    [
        ({"verdict": "maybe"}, 422, "verdict"),
        ({"verdict": "true_positive", "root_cause": "gremlins"}, 422, "root_cause 'gremlins'"),
        ({"verdict": "true_positive", "action_taken": "shrug"}, 422, "action_taken 'shrug'"),
        ({"verdict": "true_positive", "note": "x" * 2001}, 422, "note"),
    ],
)
def test_bad_feedback_is_refused_with_the_field(
    client: httpx.Client, feedback: dict[str, str], status: int, needle: str
) -> None:
    """Unknown verdict, root cause or action, or an overlong note: 422 naming it."""
    alert_id = _raise(client, clear=True)
    response = client.post(
        f"/api/v1/alerts/{alert_id}/resolve", json={"by": "ana", "feedback": feedback}
    )
    assert response.status_code == status
    assert needle in str(response.json()["detail"])
    assert client.get(f"/api/v1/alerts/{alert_id}").json()["status"] == "cleared"


def test_resolve_with_feedback_timeline_labels_and_metrics(client: httpx.Client) -> None:
    """A cleared alert resolved as a false positive: the timeline shows each step, the
    label is exported as JSON lines and CSV, and the false alert rate counts it."""
    alert_id = _raise(client, clear=True)
    client.post(f"/api/v1/alerts/{alert_id}/assign", json={"by": "ana", "assignee": "team-a"})
    client.post(f"/api/v1/alerts/{alert_id}/comments", json={"by": "ana", "text": "checked"})
    feedback = {"verdict": "false_positive", "root_cause": "sensor fault", "note": "loose wire"}
    resolved = client.post(
        f"/api/v1/alerts/{alert_id}/resolve", json={"by": "ana", "feedback": feedback}
    ).json()
    assert resolved["detail"] == "resolved by ana as false positive"
    kinds = [e["kind"] for e in client.get(f"/api/v1/alerts/{alert_id}/timeline").json()]
    assert kinds == ["raised", "cleared", "assigned", "commented", "acknowledged", "resolved"]

    lines = client.get("/api/v1/alerts/labels").text.splitlines()
    (label,) = [
        msgspec.json.decode(x) for x in lines if msgspec.json.decode(x)["alert_id"] == alert_id
    ]
    assert (label["verdict"], label["root_cause"], label["metrics"]) == (
        "false_positive",
        "sensor fault",
        ["pressure"],
    )
    assert (label["site"], label["rule"], label["note"]) == ("s1", "api-pressure", "loose wire")
    exported = client.get("/api/v1/alerts/labels", params={"format": "csv"})
    assert exported.headers["content-type"].startswith("text/csv")
    rows = [r for r in csv.DictReader(io.StringIO(exported.text)) if r["alert_id"] == str(alert_id)]
    assert rows[0]["verdict"] == "false_positive"

    metrics = client.get("/api/v1/alerts/metrics", params={"group_by": "rule"}).json()
    mine = next(m for m in metrics if m["group"] == "api-pressure")
    assert mine["false_positives"] >= 1
    assert 0 < mine["false_alert_rate"] <= 1
    by_site = client.get("/api/v1/alerts/metrics", params={"site": "s1"}).json()
    assert by_site[0]["assets"] >= 1
    causes = client.get("/api/v1/alerts/root-causes", params={"type": "anything"}).json()
    assert "sensor fault" in causes["root_causes"]
    assert "work order" in causes["actions"]


def test_metrics_and_labels_refuse_bad_queries(client: httpx.Client) -> None:
    """Unknown group, backwards period, unknown export format: 422 naming the parameter."""
    assert client.get("/api/v1/alerts/metrics", params={"group_by": "planet"}).status_code == 422
    backwards = client.get(
        "/api/v1/alerts/metrics", params={"start": 2_000_000_000_000, "end": 1_900_000_000_000}
    )
    assert backwards.status_code == 422
    assert client.get("/api/v1/alerts/labels", params={"format": "xml"}).status_code == 422
    assert client.get("/api/v1/alerts/987654/timeline").status_code == 404
    assert client.get("/api/v1/alerts/dead-letters").json() == []  # no channels configured
    assert client.get("/api/v1/alerts/dead-letters", params={"limit": 0}).status_code == 422


def test_actions_on_a_resolved_alert_and_site_filter(client: httpx.Client) -> None:
    """Assigning a resolved alert is 409; the site filter and severity order work."""
    alert_id = _raise(client, clear=False)
    client.post(f"/api/v1/alerts/{alert_id}/resolve", json={"by": "ana"})
    response = client.post(f"/api/v1/alerts/{alert_id}/assign", json={"assignee": "x"})
    assert response.status_code == 409
    assert "already resolved by ana" in response.json()["detail"]
    snooze = client.post(f"/api/v1/alerts/{alert_id}/snooze", json={"minutes": -1})
    assert snooze.status_code == 422
    at_site = client.get("/api/v1/alerts", params={"site": "s1", "order": "severity"}).json()
    assert alert_id in [a["id"] for a in at_site]
    assert client.get("/api/v1/alerts", params={"site": "nowhere"}).json() == []


def test_alerts_propagate_up_the_asset_tree(client: httpx.Client) -> None:
    """``GET /api/v1/alerts?under=`` filters by the asset tree; an over-long node is a 422."""
    client.put("/api/v1/devices/pump-x", json={"model": "pump", "site": "east"})
    rule = {
        "id": "prop-pressure",
        "model": "pump",
        "metric": "pressure",
        "op": ">",
        "threshold": 50.0,
        "severity": "major",
    }
    assert client.put(f"/api/v1/rules/{rule['id']}", json=rule).status_code == 200
    assert (
        client.post("/api/v1/telemetry/pump-x", json={"values": {"pressure": 70.0}}).status_code
        == 202
    )

    def east() -> list[dict[str, str]]:
        found: list[dict[str, str]] = client.get("/api/v1/alerts", params={"under": "east"}).json()
        return found

    wait_until(lambda: any(a["rule"] == rule["id"] for a in east()), what="the alert")
    assert {a["device"] for a in east()} == {"pump-x"}  # other tests' rules may trip too
    assert client.get("/api/v1/alerts", params={"under": "west"}).json() == []
    assert client.get("/api/v1/alerts", params={"under": "x" * 129}).status_code == 422
