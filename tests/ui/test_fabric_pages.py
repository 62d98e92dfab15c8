"""Dashboard pages of the data fabric: device models and contracts, the quarantine with
its original bytes and replay (in a real browser), and an alert's lineage."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.ui.conftest import Demo, raise_alert
from tests.ui.test_browser import browser  # noqa: F401  (the fixture)

SAUNA_V1 = (
    "name: sauna\nversion: 1.0.0\nproperties: {air_temp: {unit: Cel, minimum: 0, maximum: 90}}"
)
SAUNA_V2 = SAUNA_V1.replace("1.0.0", "1.1.0").replace("maximum: 90", "maximum: 130")


def _quarantined(client: httpx.Client, device: str, value: float) -> tuple[int, str]:
    """Send a value the sauna contract refuses; the quarantine entry id and message id."""
    sent = client.post(f"/api/v1/telemetry/{device}", json={"values": {"air_temp": value}})
    assert sent.status_code == 422, sent.text
    message_id = sent.json()["message_id"]
    entry = next(
        e for e in client.get("/api/v1/quarantine").json() if e["message"]["id"] == message_id
    )
    return entry["id"], message_id


def test_device_model_pages_show_the_compiled_contract(client: httpx.Client) -> None:
    """The list names each model and its devices; a model page shows units, ranges and the
    normalisation the contract applies; an unknown model is a 404 page."""
    listing = client.get("/device-models")
    assert listing.status_code == 200
    assert 'href="/device-models/pump"' in listing.text
    page = client.get("/device-models/pump")
    assert page.status_code == 200
    assert "pump@1.0.0" in page.text
    assert "mm/s" in page.text
    assert client.get("/device-models/nope").status_code == 404


def test_quarantine_pages_show_the_reason_and_the_original_bytes(client: httpx.Client) -> None:
    """The list and the entry page carry the reason, the contract and the payload as sent;
    a replay posted from another site is refused."""
    assert client.post("/api/v1/device-models", json={"text": SAUNA_V1}).status_code in (200, 409)
    assert client.put("/api/v1/devices/sauna-9", json={"model": "sauna"}).status_code == 200
    entry_id, _ = _quarantined(client, "sauna-9", 95.5)
    listing = client.get("/quarantine")
    assert f'href="/quarantine/{entry_id}"' in listing.text
    page = client.get(f"/quarantine/{entry_id}")
    assert "outside the contract range [0, 90] Cel" in page.text
    assert "{&#34;values&#34;:{&#34;air_temp&#34;:95.5}}" in page.text
    refused = client.post(
        f"/quarantine/{entry_id}/replay", headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert refused.status_code == 403
    assert client.get("/quarantine/999999").status_code == 404


def test_alert_lineage_page_walks_back_to_readings_and_messages(client: httpx.Client) -> None:
    """An alert's lineage names its rule version, the readings of its window and, for each,
    the message it came from; the alert page links to it."""
    device, alert_id = raise_alert(client)
    assert f'href="/lineage/alert/{alert_id}"' in client.get(f"/alerts/{alert_id}").text
    page = client.get(f"/lineage/alert/{alert_id}")
    assert page.status_code == 200
    assert "ui-test-pressure" in page.text
    assert f"{device} pressure = 60" in page.text
    assert "pump@1.0.0" in page.text  # the message's contract
    assert client.get("/lineage/kpi/1").status_code == 404


@pytest.mark.browser
def test_replaying_a_quarantined_message_from_the_page(
    browser: Browser,  # noqa: F811  (the fixture)
    demo: Demo,
    client: httpx.Client,
) -> None:
    """After a contract fix, Replay on the entry page recovers the message: the page says
    so, the entry is marked replayed and the reading's lineage names the new contract."""
    assert client.post("/api/v1/device-models", json={"text": SAUNA_V1}).status_code in (200, 409)
    assert client.put("/api/v1/devices/sauna-1", json={"model": "sauna"}).status_code == 200
    entry_id, message_id = _quarantined(client, "sauna-1", 110.0)
    assert client.post("/api/v1/device-models", json={"text": SAUNA_V2}).status_code == 200

    errors: list[str] = []
    page = browser.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{demo.url}/quarantine")
    page.locator(f'a[href="/quarantine/{entry_id}"]').click()
    expect(page.locator("#q-payload")).to_contain_text('"air_temp":110.0')
    page.locator("#replay").click()
    expect(page.locator("#replay-outcome")).to_contain_text("Recovered with contract sauna@1.1.0")
    expect(page.locator("#q-replayed")).not_to_contain_text("not yet")
    page.locator("text=Lineage of the recovered readings").click()
    expect(page.locator("#lineage-tree")).to_contain_text("sauna@1.1.0")
    assert errors == []
    lineage = client.get(f"/api/v1/lineage/message/{message_id}").json()
    assert any(n["key"] == "contract:sauna@1.1.0" for n in lineage["nodes"])
