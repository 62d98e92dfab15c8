"""The dashboard in a real browser (Debian's chromium): live charts, the phone inbox."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ViewportSize, expect, sync_playwright

from tests.serving import wait_until
from tests.ui.conftest import Demo, raise_alert
from trellis.core.clock import now_ms
from trellis.ui import views

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE: ViewportSize = {"width": 390, "height": 844}

pytestmark = pytest.mark.browser


def _unavailable(reason: str) -> None:
    """Skip on a laptop; fail where the services are required (CI)."""
    if os.environ.get("TRELLIS_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (TRELLIS_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Chromium driven by Playwright, without ``playwright install``."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing; install Debian's chromium package")
    missing = views.missing_assets()
    if missing:
        _unavailable(f"vendored JS is missing ({', '.join(missing)}); run `make assets`")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def test_live_chart_and_acknowledging_an_alert_on_a_phone(
    browser: Browser, demo: Demo, client: httpx.Client
) -> None:
    """The fleet overview redraws from its polled table; a device chart draws and
    grows from the stream; on a phone-sized inbox a new alert appears by itself,
    Acknowledge marks it, and the API agrees."""
    errors: list[str] = []

    desktop = browser.new_context(viewport={"width": 1280, "height": 900})
    page = desktop.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(demo.url)
    expect(page.locator("#chart-severity canvas")).to_be_visible()
    page.wait_for_function("() => window.trellis.fleetCharts.history.length >= 2", timeout=15_000)

    page.goto(f"{demo.url}/devices/pump-0001")
    chart = page.locator('figure[data-metric="vibration"]')
    expect(chart.locator("canvas")).to_be_visible()
    seeded = int(chart.get_attribute("data-points") or 0)
    page.wait_for_function(
        """n => (window.trellis.charts.vibration.received > 3
                 && Number(document.querySelector('figure[data-metric="vibration"]')
                    .dataset.points) > n)""",
        arg=seeded,
        timeout=15_000,
    )
    desktop.close()

    phone = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    inbox = phone.new_page()
    inbox.on("pageerror", lambda exc: errors.append(str(exc)))
    inbox.goto(f"{demo.url}/alerts")
    expect(inbox.locator("[data-alert-stream]")).to_be_attached()
    inbox.wait_for_function("() => !!window.htmx")
    _, alert_id = raise_alert(client)
    card = inbox.locator(f"#alert-{alert_id}")
    expect(card).to_be_visible(timeout=15_000)  # pushed by the alert stream, no reload
    expect(card).to_have_attribute("data-acknowledged", "false")
    card.get_by_role("button", name="Acknowledge").click()
    expect(card).to_have_attribute("data-acknowledged", "true")
    expect(card.locator(".ack-badge")).to_have_text("acknowledged")
    expect(card.get_by_role("button", name="Acknowledge")).to_have_count(0)
    box = card.bounding_box()
    assert box is not None
    assert box["width"] <= PHONE["width"]
    assert inbox.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    phone.close()

    alert = client.get(f"/api/v1/alerts/{alert_id}").json()
    assert (alert["acknowledged"], alert["acknowledged_by"]) == (True, "local-admin")
    assert errors == []


def test_phone_operator_judges_a_false_positive_and_the_rate_moves(
    browser: Browser, demo: Demo, client: httpx.Client
) -> None:
    """On a 390x844 phone: acknowledge a new alert, and once its condition clears resolve
    it as a false positive in two taps; the alert page charts the readings around it,
    and the metrics page's false alert rate changes."""
    errors: list[str] = []
    phone = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = phone.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(f"{demo.url}/alerts/metrics")
    expect(page.locator("#chart-rates canvas")).to_be_visible()
    before = page.locator("#m-false-rate").get_attribute("data-value")
    judged_before = client.get("/api/v1/alerts/metrics").json()

    page.goto(f"{demo.url}/alerts")
    page.wait_for_function("() => !!window.htmx")
    device, alert_id = raise_alert(client)
    card = page.locator(f"#alert-{alert_id}")
    expect(card).to_be_visible(timeout=15_000)
    card.get_by_role("button", name="Acknowledge").click()
    expect(card).to_have_attribute("data-acknowledged", "true")

    clear = {"values": {"pressure": 10.0}}
    assert client.post(f"/api/v1/telemetry/{device}", json=clear).status_code == 202
    expect(card).to_have_attribute("data-status", "cleared", timeout=15_000)  # pushed live
    card.locator("summary", has_text="Resolve").click()  # tap 1: open the sheet
    sheet = card.locator(".resolve-sheet .sheet")
    expect(sheet).to_be_visible()
    box = sheet.bounding_box()
    assert box is not None
    assert box["x"] + box["width"] <= PHONE["width"]
    sheet.get_by_role("button", name="False positive").click()  # tap 2: the verdict
    wait_until(
        lambda: client.get(f"/api/v1/alerts/{alert_id}").json()["verdict"] == "false_positive",
        what="the verdict",
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    page.goto(f"{demo.url}/alerts/{alert_id}")
    expect(page.locator("#alert-chart canvas").first).to_be_visible()
    expect(page.locator('[data-kind="resolved"]')).to_contain_text("false positive")

    page.goto(f"{demo.url}/alerts/metrics")
    after = page.locator("#m-false-rate").get_attribute("data-value")
    assert after != before
    assert after is not None
    assert float(after) > (float(before) if before else 0.0)
    expect(page.locator("#chart-rules canvas")).to_be_visible()
    judged_after = client.get("/api/v1/alerts/metrics").json()
    assert (
        judged_after[0]["false_positives"]
        == (judged_before[0]["false_positives"] if judged_before else 0) + 1
    )
    phone.close()
    assert errors == []


def test_phone_operator_assigns_comments_and_snoozes(
    browser: Browser, demo: Demo, client: httpx.Client
) -> None:
    """On a 390x844 phone: open a card's More sheet, take the alert, write a comment,
    snooze it until tomorrow; the card says each, the sheet fits the screen, and the
    alert page's timeline lists the comment and the snooze."""
    errors: list[str] = []
    phone = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = phone.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{demo.url}/alerts")
    page.wait_for_function("() => !!window.htmx")
    _, alert_id = raise_alert(client)
    card = page.locator(f"#alert-{alert_id}")
    expect(card).to_be_visible(timeout=15_000)

    card.locator("summary", has_text="More").tap()
    sheet = card.locator(".more-sheet .sheet")
    expect(sheet).to_be_visible()
    box = sheet.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= PHONE["width"]
    sheet.get_by_role("button", name="Assign to me").tap()
    expect(card.locator(".assignee")).to_have_text("Assigned to local-admin")

    card.locator("summary", has_text="More").tap()  # the swapped card comes back closed
    card.get_by_label("Comment").fill("bearing noise, checking on site")
    card.get_by_role("button", name="Add comment").tap()
    expect(card.locator(".alert-notice")).to_have_text("Comment by local-admin added.")

    card.locator("summary", has_text="More").tap()
    card.get_by_role("button", name="Until tomorrow").tap()
    expect(card.locator(".snoozed")).to_contain_text("Snoozed until")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    alert = client.get(f"/api/v1/alerts/{alert_id}").json()
    assert alert["assignee"] == "local-admin"
    assert alert["snoozed_until_ms"] > now_ms()

    page.goto(f"{demo.url}/alerts/{alert_id}")
    expect(page.locator('[data-kind="commented"]')).to_contain_text(
        "bearing noise, checking on site"
    )
    expect(page.locator('[data-kind="snoozed"]')).to_contain_text("until")
    expect(page.locator('[data-kind="assigned"]')).to_contain_text("local-admin")
    phone.close()
    assert errors == []
