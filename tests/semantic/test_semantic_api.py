"""The semantic model over HTTP, and the done-when of issue 5: a new device type onboarded
with a model file alone is judged by a rule written against a Brick class, end to end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.serving import serve, wait_until
from tests.ui.test_browser import browser  # noqa: F401  (the fixture)
from trellis.api.app import create_app
from trellis.core.config import load_settings

DATA = Path(__file__).parent.parent / "data"
B2 = (DATA / "brick" / "building-b2.ttl").read_bytes()
TURTLE = {"Content-Type": "text/turtle"}

#: Written against the class, before the rooftop unit's model exists.
SUPPLY_AIR_TOO_HOT = {
    "id": "supply-air-too-hot",
    "name": "Supply air too hot",
    "op": ">",
    "threshold": 38.0,
    "clear_threshold": 35.0,
    "severity": "major",
    "select": {"classes": ["Supply_Air_Temperature_Sensor"]},
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A real server (no simulated fleet) with building B2 imported."""
    settings = load_settings(data_dir=tmp_path_factory.mktemp("semantic") / "data")
    with (
        serve(create_app(settings, simulate=False)) as url,
        httpx.Client(base_url=url, timeout=10) as http,
    ):
        imported = http.post("/api/v1/semantic/import", content=B2, headers=TURTLE)
        assert imported.status_code == 200, imported.text
        assert imported.json() == {"nodes": 40, "relations": 7, "replaced": False}
        yield http


def test_points_by_class_and_place(client: httpx.Client) -> None:
    """All supply air temperature sensors in building B2, subclasses included."""
    found = client.get(
        "/api/v1/semantic/points",
        params={"class": "Supply_Air_Temperature_Sensor", "within": "B2"},
    ).json()
    assert [(p["id"], p["device"], p["metric"]) for p in found] == [
        ("AHU-1-SAT", "ahu-1", "sat"),
        ("VAV-101-DAT", "vav-101", "discharge_temp"),
    ]
    bad = client.get("/api/v1/semantic/points", params={"class": "Suply_Air_Temperature_Sensor"})
    assert bad.status_code == 422
    assert "did you mean 'Supply_Air_Temperature_Sensor'" in bad.text
    assert client.get("/api/v1/semantic/points", params={"within": "B7"}).status_code == 404


def test_tree_nodes_and_export(client: httpx.Client) -> None:
    """The tree nests site → building → floor; export is Turtle that names the series."""
    [site] = client.get("/api/v1/semantic/tree").json()
    assert site["id"] == "riverside"
    assert site["children"][0]["id"] == "B2"
    [ahu] = client.get("/api/v1/semantic/tree", params={"root": "AHU-1"}).json()
    assert {c["id"] for c in ahu["children"]} >= {"AHU-1-SAT", "AHU-1-SF"}
    exported = client.get("/api/v1/semantic/export")
    assert exported.headers["content-type"].startswith("text/turtle")
    assert 'trellis:metric "sat"' in exported.text
    assert (
        "Zone_Air_Temperature_Sensor"
        in client.get("/api/v1/semantic/classes", params={"under": "Temperature_Sensor"}).json()
    )


def test_bad_brick_files_and_nodes_are_refused(client: httpx.Client) -> None:
    """An unknown class and a cycle are 422s naming them; the model is unchanged."""
    unknown = client.post(
        "/api/v1/semantic/import",
        content=(DATA / "brick" / "unknown-class.ttl").read_bytes(),
        headers=TURTLE,
    )
    assert unknown.status_code == 422
    assert "unknown Brick class 'Supply_Fann'; did you mean 'Supply_Fan'?" in unknown.text
    cycle = client.post(
        "/api/v1/semantic/import?replace=true",
        content=(DATA / "brick" / "cycle.ttl").read_bytes(),
        headers=TURTLE,
    )
    assert cycle.status_code == 422
    assert "cycle in the asset tree: B9 → W → F1 → B9" in cycle.json()["detail"]
    moved = client.put(
        "/api/v1/semantic/nodes/B2", json={"brick_class": "Building", "parent": "zone-101"}
    )
    assert moved.status_code == 422
    assert "B2 → zone-101 → B2-F1 → B2" in moved.json()["detail"]
    assert client.get("/api/v1/semantic/nodes/B2").json()["parent"] == "riverside"
    assert client.delete("/api/v1/semantic/nodes/AHU-1").status_code == 409
    syntax = client.post("/api/v1/semantic/import", content=b"@prefix x <", headers=TURTLE)
    assert syntax.status_code == 422
    assert "not valid Turtle" in syntax.text


def test_unknown_class_or_place_in_a_rule_selector_is_refused_on_save(
    client: httpx.Client,
) -> None:
    """Saving a rule that selects a misspelt class or a missing node is a 422; not saved."""
    rule = {**SUPPLY_AIR_TOO_HOT, "id": "typo", "select": {"classes": ["Supply_Air_Temp"]}}
    refused = client.put("/api/v1/rules/typo", json=rule)
    assert refused.status_code == 422
    assert "unknown Brick class 'Supply_Air_Temp'" in refused.text
    nowhere = {**SUPPLY_AIR_TOO_HOT, "id": "nowhere", "select": {"within": ["B7"]}}
    refused = client.put("/api/v1/rules/nowhere", json=nowhere)
    assert refused.status_code == 422
    assert "no node(s) B7" in refused.text
    assert client.get("/api/v1/rules/typo").status_code == 404


def test_a_new_device_type_is_judged_by_an_existing_class_rule(client: httpx.Client) -> None:
    """Issue 5, done when: the rule exists first; a rooftop unit model (WoT TM whose
    discharge_temp is a brick:Discharge_Air_Temperature_Sensor) is imported, a device
    registered on floor 2, and its first hot reading raises the rule's alert through
    ingest, with no change to the rule."""
    assert client.put("/api/v1/rules/supply-air-too-hot", json=SUPPLY_AIR_TOO_HOT).is_success
    text = (DATA / "models" / "rooftop.tm.jsonld").read_text()
    imported = client.post("/api/v1/device-models", json={"text": text})
    assert imported.status_code == 200, imported.text
    assert imported.json()["metrics"]["discharge_temp"]["brick_class"] == (
        "Discharge_Air_Temperature_Sensor"
    )
    registered = client.put(
        "/api/v1/devices/rtu-7",
        json={"model": "rooftop-unit", "attributes": {"location": "B2-F2"}},
    )
    assert registered.status_code == 200, registered.text
    [point] = client.get(
        "/api/v1/semantic/points",
        params={"class": "Supply_Air_Temperature_Sensor", "within": "B2-F2"},
    ).json()
    assert (point["device"], point["metric"], point["parent"]) == (
        "rtu-7",
        "discharge_temp",
        "rtu-7",
    )
    assert client.get("/api/v1/semantic/nodes/rtu-7").json()["brick_class"] == "RTU"

    sent = client.post(
        "/api/v1/telemetry/rtu-7",
        json={"values": {"discharge_temp": 41.5, "outside_temp": 41.5, "fan_power": 41.5}},
    )
    assert sent.status_code == 202, sent.text

    def alerts() -> list[dict[str, object]]:
        found: list[dict[str, object]] = client.get(
            "/api/v1/alerts", params={"device": "rtu-7"}
        ).json()
        return found

    wait_until(lambda: bool(alerts()), what="the class rule's alert for rtu-7")
    [alert] = alerts()
    assert (alert["rule"], alert["metric"], alert["value"]) == (
        "supply-air-too-hot",
        "discharge_temp",
        41.5,
    )
    replayed = client.post("/api/v1/rules/supply-air-too-hot/test", params={"since": "-1h"})
    assert replayed.status_code == 200, replayed.text
    assert [(s["kind"], s["device"]) for s in replayed.json()["signals"]] == [("raise", "rtu-7")]
    assert client.get("/api/v1/rules/supply-air-too-hot").json() == {
        **SUPPLY_AIR_TOO_HOT,
        "metric": "",
        "for_s": 0.0,
        "model": None,
        "enabled": True,
    }


def test_a_model_file_with_an_unknown_brick_class_is_refused(client: httpx.Client) -> None:
    """A property typed with a class Trellis does not know fails the import, naming it."""
    text = (
        (DATA / "models" / "rooftop.tm.jsonld")
        .read_text()
        .replace("brick:Outside_Air_Temperature_Sensor", "brick:Outdoor_Air_Temperature_Sensor")
    )
    refused = client.post("/api/v1/device-models", json={"text": text})
    assert refused.status_code == 422
    assert "properties.outside_temp.brick_class: unknown Brick class" in refused.text
    assert "did you mean 'Outside_Air_Temperature_Sensor'" in refused.text


def test_assets_page_refuses_an_unknown_class_in_words(client: httpx.Client) -> None:
    """The finder form with a misspelt class answers 422 with the suggestion on the page."""
    page = client.get("/semantic", params={"class": "Zone_Temp_Sensor"})
    assert page.status_code == 422
    assert "unknown Brick class" in page.text
    assert "did you mean" in page.text


@pytest.mark.browser
def test_assets_page_shows_the_tree_and_finds_points(client: httpx.Client, browser) -> None:  # noqa: F811
    """In chromium: the nav leads to the tree (B2's floors open, AHU-1's points inside),
    and the finder lists the supply air sensors of the ground floor."""
    errors: list[str] = []
    page = browser.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(str(client.base_url))
    page.get_by_role("link", name="Assets").click()
    expect(page).to_have_url(f"{client.base_url}/semantic")
    tree = page.locator("#sem-tree")
    expect(tree.locator('[data-node="riverside"]')).to_be_visible()
    expect(tree.locator('[data-node="AHU-1"] > details > summary')).to_be_visible()
    ahu_point = tree.locator('[data-node="AHU-1-SAT"]')
    expect(ahu_point).to_be_hidden()  # equipment starts folded
    tree.locator('[data-node="AHU-1"] > details > summary').click()
    expect(ahu_point).to_be_visible()
    expect(ahu_point).to_contain_text("ahu-1/sat")

    page.get_by_label("Brick class").fill("Supply_Air_Temperature_Sensor")
    page.get_by_label("within").select_option("B2-F1")
    page.get_by_role("button", name="Find").click()
    rows = page.locator("#sem-points tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("AHU-1-SAT")
    expect(rows.nth(1)).to_contain_text("VAV-101-DAT")
    expect(page.locator("#sem-points caption")).to_have_text(
        "2 points of Supply_Air_Temperature_Sensor within B2-F1"
    )
    assert errors == []
