"""Rules and flows in the dashboard: the flow editor in a real browser, rule pages."""

from __future__ import annotations

import httpx
from playwright.sync_api import Browser, Page, expect

from tests.serving import wait_until
from tests.ui.conftest import Demo
from tests.ui.test_browser import browser  # the shared chromium fixture
from trellis.core.clock import now_ms

__all__ = ["browser"]


def _place(page: Page, node: str, x: int, y: int) -> None:
    """Drag a palette item onto the canvas at (x, y) of the canvas."""
    page.locator(f"#palette-{node}").drag_to(
        page.locator("#drawflow"), target_position={"x": x, "y": y}
    )
    expect(page.locator(f".drawflow-node.{node}")).to_have_count(1)


def _set(page: Page, node: str, field: str, value: str) -> None:
    """Select a node and change one property, as a person would."""
    page.locator(f".drawflow-node.{node} .node-type").click()
    prop = page.locator(f"#prop-{field}")
    if prop.evaluate("el => el.tagName") == "SELECT":
        prop.select_option(value)
    else:
        prop.fill(value)
        prop.blur()


def _wire(page: Page, source: str, target: str) -> None:
    """Drag from ``source``'s output port to ``target``'s input port."""
    page.locator(f".drawflow-node.{source} .output_1").drag_to(
        page.locator(f".drawflow-node.{target} .input_1")
    )


def test_build_deploy_and_see_a_three_node_flow_fire(
    browser: Browser,
    demo: Demo,
    client: httpx.Client,
) -> None:
    """Palette → canvas → properties → typed wires → deploy; telemetry trips the alert and
    the live debug panel shows it; a wire the server would refuse is refused at once."""
    errors: list[str] = []
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{demo.url}/flows/new")
    page.wait_for_function("() => !!window.trellisFlowEditor")
    page.locator("#flow-id").fill("ui-flow")

    _place(page, "source", 40, 80)
    _place(page, "condition", 300, 80)
    _place(page, "alert", 560, 80)
    _set(page, "source", "metric", "pressure")
    _set(page, "source", "models", "pump")
    _set(page, "source", "sites", "ui-site")  # the simulated pumps are elsewhere
    _set(page, "condition", "condition", "value > 55.0")
    _set(page, "alert", "severity", "critical")
    expect(page.locator(".drawflow-node.condition .node-summary")).to_have_text("value > 55.0")

    _wire(page, "source", "alert")  # a source cannot page anyone by itself
    expect(page.locator("#flow-status")).to_contain_text("A source node cannot feed an alert node")
    expect(page.locator(".drawflow .connection")).to_have_count(0)
    _wire(page, "source", "condition")
    _wire(page, "condition", "alert")
    expect(page.locator(".drawflow .connection")).to_have_count(2)

    page.get_by_role("button", name="Validate & deploy").click()
    expect(page.locator("#flow-status")).to_have_text("Deployed ui-flow v1.")
    rule = client.get("/api/v1/rules/flow.ui-flow.condition2").json()
    assert (rule["metric"], rule["condition"], rule["severity"]) == (
        "pressure",
        "value > 55.0",
        "critical",
    )

    device = "ui-flow-pump"
    new = {"model": "pump", "site": "ui-site"}
    assert client.put(f"/api/v1/devices/{device}", json=new).status_code == 200
    with page.expect_response(lambda r: r.url.endswith("/trace")):
        pass  # the debug panel now watches the rule, so the next message is recorded
    posted = client.post(f"/api/v1/telemetry/{device}", json={"values": {"pressure": 60.0}})
    assert posted.status_code == 202
    row = page.locator('#debug tr[data-rule="flow.ui-flow.condition2"]')
    expect(row.locator("td").nth(2)).to_have_text("1", timeout=15_000)  # raised
    expect(page.locator("#debug-events")).to_contain_text(f"active {device}")
    # the message that tripped it, as it passed the condition node
    expect(page.locator("#debug-trace")).to_contain_text(f"condition2 ← {device} 60 ✔")
    node = page.locator('#node-stats tr[data-node="condition2"]')
    expect(node.locator("td").nth(2)).to_have_text("1")  # one reading in, per node
    [alert] = [
        a for a in client.get("/api/v1/alerts").json() if a["rule"] == "flow.ui-flow.condition2"
    ]
    assert (alert["device"], alert["severity"]) == (device, "critical")

    page.goto(f"{demo.url}/flows/ui-flow/edit")  # the saved layout comes back
    expect(page.locator(".drawflow-node")).to_have_count(3)
    expect(page.locator(".drawflow .connection")).to_have_count(2)
    context.close()
    assert errors == []


def test_flow_pages_escape_user_text(client: httpx.Client) -> None:
    """A flow named with HTML is listed as text, and the editor page carries it escaped."""
    flow = {
        "id": "xss-flow",
        "name": "<img src=x onerror=alert(1)>",
        "nodes": [
            {"id": "s", "type": "source", "metric": "pressure"},
            {"id": "c", "type": "condition", "condition": "value > 1000.0"},
            {"id": "a", "type": "alert", "severity": "minor", "name": "</div><script>x()</script>"},
        ],
        "edges": [["s", "c"], ["c", "a"]],
    }
    assert client.put("/api/v1/flows/xss-flow", json=flow).status_code == 200
    listing = client.get("/flows").text
    assert "<img src=x" not in listing
    assert "&lt;img src=x onerror=alert(1)&gt;" in listing
    editor = client.get("/flows/xss-flow/edit").text
    assert "<script>x()" not in editor
    assert client.get("/flows/nope/edit").status_code == 404


def test_rule_page_charts_a_dry_run_and_the_list_shows_stats(
    browser: Browser, demo: Demo, client: httpx.Client
) -> None:
    """/rules lists every rule with its counters; a rule's page charts its dry run with marks."""
    device = "ui-dry-pump"
    assert client.put(f"/api/v1/devices/{device}", json={"model": "pump"}).status_code == 200
    start = now_ms() - 120_000
    for i, value in enumerate([10.0, 12.0, 90.0, 91.0, 11.0]):
        body = {"ts": start + i * 1000, "values": {"vibration": value}}
        assert client.post(f"/api/v1/telemetry/{device}", json=body).status_code == 202
    rule = {
        "id": "ui-dry",
        "name": "UI dry run",
        "metric": "vibration",
        "severity": "minor",
        "select": {"devices": [device]},
        "condition": "value > 80.0",
        "enabled": False,
    }
    assert client.put("/api/v1/rules/ui-dry", json=rule).status_code == 200
    wait_until(
        lambda: (
            len(client.post("/api/v1/rules/ui-dry/test", params={"since": "-1h"}).json()["signals"])
            == 2
        ),
        what="the stored readings",
    )
    errors: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{demo.url}/rules")
    expect(page.locator('#rules tr[data-rule="ui-dry"]')).to_contain_text("UI dry run")
    page.goto(f"{demo.url}/rules/ui-dry?since=-1h")
    expect(page.locator("#dry-summary")).to_contain_text("1 raises")
    expect(page.locator("#chart-dry-run canvas")).to_be_visible()
    expect(page.locator("#chart-dry-run")).to_have_attribute("data-marks", "2")
    expect(page.locator("#signals")).to_contain_text(device)
    context.close()
    assert errors == []


def test_the_editor_s_new_nodes_refuse_bad_input(browser: Browser, demo: Demo) -> None:
    """Model and command nodes from the palette: arguments that are not JSON are
    refused before saving, an unknown model by the server, both named on the page."""
    errors: list[str] = []
    context = browser.new_context(viewport={"width": 1600, "height": 900})
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{demo.url}/flows/new")
    page.wait_for_function("() => !!window.trellisFlowEditor")
    page.locator("#flow-id").fill("ui-model")
    _place(page, "source", 40, 80)
    _place(page, "model", 240, 80)
    _place(page, "condition", 440, 80)
    _place(page, "alert", 660, 80)
    _place(page, "command", 660, 260)
    _set(page, "model", "model", "nope")
    _set(page, "condition", "condition", "prediction.scores < 0.0")
    _set(page, "command", "args", "{pct: 20")
    _wire(page, "source", "model")
    _wire(page, "model", "condition")
    _wire(page, "condition", "alert")
    _wire(page, "condition", "command")
    expect(page.locator(".drawflow .connection")).to_have_count(4)
    deploy = page.get_by_role("button", name="Validate & deploy")
    deploy.click()
    expect(page.locator("#flow-status")).to_contain_text("node command5: args is not JSON")
    _set(page, "command", "args", '{"pct": 20}')
    deploy.click()
    expect(page.locator("#flow-status")).to_contain_text("(model2): unknown model 'nope'")
    expect(page.locator(".drawflow-node.model.invalid")).to_have_count(1)
    context.close()
    assert errors == []
