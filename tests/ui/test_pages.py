"""The dashboard over real HTTP: pages, fragments, alert actions, live streams."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving import serve, wait_until
from tests.ui.conftest import HOT_RULE, Demo, raise_alert
from trellis._version import __version__
from trellis.api.app import create_app
from trellis.core.clock import now_ms
from trellis.core.config import load_settings
from trellis.ui import views
from trellis.ui.routes import end_streams

SIMULATED = ("pump-0001", "pump-0002", "room-0001")


def _json_script(html: str, element_id: str) -> Any:
    match = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', html)
    assert match, f"no #{element_id} in the page"
    return json.loads(match.group(1))


def _events(response: httpx.Response) -> Iterator[tuple[str, str, str]]:
    """``(event, data, id)`` of each server-sent event; comments as ``(":", text, "")``."""
    event, data, event_id = "message", [], ""
    for line in response.iter_lines():
        if line.startswith(":"):
            yield ":", line[1:].strip(), ""
        elif line.startswith("event:"):
            event = line.partition(":")[2].strip()
        elif line.startswith("data:"):
            data.append(line.partition(":")[2].strip())
        elif line.startswith("id:"):
            event_id = line.partition(":")[2].strip()
        elif line == "" and data:
            yield event, "\n".join(data), event_id
            event, data, event_id = "message", [], ""


def test_fleet_page_lists_every_device_with_values_units_and_the_frame(
    client: httpx.Client,
) -> None:
    """``/`` shows each device (id, name, model, site) with its latest values and
    units, the overview charts, the nav bar and the version in the footer."""
    wait_until(
        lambda: "mm/s" in client.get("/").text and "ppm" in client.get("/").text,
        what="latest values on the fleet page",
    )
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    for device in SIMULATED:
        assert f'href="/devices/{device}"' in html
    assert "Pump 1" in html
    assert "Room 1" in html
    assert "plant-1" in html
    assert "°C" in html
    assert "bar" in html
    assert 'id="chart-severity"' in html
    assert 'id="chart-rate"' in html
    for link in ('href="/"', 'href="/alerts"', 'href="/api/v1/docs"'):
        assert link in html
    assert f"Trellis {__version__}" in html
    assert "/static/vendor/echarts.min.js" in html
    assert "/static/vendor/htmx.min.js" in html


def test_fleet_fragment_is_polled_whole_and_carries_the_chart_data(client: httpx.Client) -> None:
    """The table fragment is one request for the page: rows, figures and the JSON the
    overview charts read, and it re-arms its own polling."""
    response = client.get("/ui/fleet/table")
    assert response.status_code == 200
    html = response.text
    assert "<html" not in html
    assert 'id="fleet-live"' in html
    assert 'hx-trigger="every 3s"' in html
    assert 'hx-get="/ui/fleet/table?q=&amp;page=1"' in html
    data = _json_script(html, "fleet-data")
    assert data["severities"] == ["critical", "major", "minor", "warning", "indeterminate"]
    assert len(data["open_by_severity"]) == 5
    wait_until(
        lambda: (
            _json_script(client.get("/ui/fleet/table").text, "fleet-data")["readings_per_s"] > 0
        ),
        what="a non-zero ingest rate",
    )


def test_fleet_filter_narrows_the_table(client: httpx.Client) -> None:
    """``?q=`` keeps the devices whose id, name or site contains the text."""
    html = client.get("/", params={"q": "room"}).text
    assert 'href="/devices/room-0001"' in html
    assert 'href="/devices/pump-0001"' not in html
    assert "No device matches." in client.get("/ui/fleet/table", params={"q": "zzz"}).text


def test_device_page_has_header_values_charts_seeded_from_the_store(client: httpx.Client) -> None:
    """``/devices/{id}`` shows the device, its latest values, one chart per metric
    seeded with stored history, and where the live points come from."""

    def seeded() -> bool:
        data = _json_script(client.get("/devices/pump-0001").text, "device-data")
        return all(len(s["ts"]) >= 3 for s in data["series"])

    wait_until(seeded, what="stored history on the device page")
    html = client.get("/devices/pump-0001").text
    assert "<h1>Pump 1</h1>" in html
    for metric in ("vibration", "temperature", "pressure"):
        assert f'data-metric="{metric}"' in html
        assert f'data-latest="{metric}"' in html
    data = _json_script(html, "device-data")
    series = data["series"]
    assert [s["metric"] for s in series] == ["vibration", "temperature", "pressure"]
    assert [s["unit"] for s in series] == ["mm/s", "°C", "bar"]
    for s in series:
        assert s["ts"] == sorted(s["ts"])
        assert len(s["ts"]) == len(s["values"])
    assert str(data["stream"]).startswith("/ui/devices/pump-0001/stream?since=")
    assert data["window_ms"] == views.CHART_WINDOW_MS
    assert "/static/vendor/uPlot.iife.min.js" in html


def test_unknown_device_gets_a_404_page_and_no_stream(client: httpx.Client) -> None:
    """An unknown id is a readable 404 page, not a traceback; its stream is refused."""
    response = client.get("/devices/no-such-device")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Not found" in response.text
    assert "no-such-device" in response.text
    assert 'href="/alerts"' in response.text  # the nav bar is there
    assert client.get("/ui/devices/no-such-device/stream").status_code == 404
    assert client.get("/ui/devices/no-such-device/alerts").status_code == 404
    assert client.get("/ui/alerts/987654").status_code == 404


def test_device_stream_backfills_then_streams_live_readings(demo: Demo) -> None:
    """The SSE stream starts with the stored points after ``since`` and then sends
    live ``readings`` events; closing it detaches its listeners."""
    platform = demo.platform
    before = platform.alerts.events.listeners
    with (
        httpx.Client(base_url=demo.url, timeout=10) as http,
        http.stream("GET", "/ui/devices/pump-0002/stream", params={"since": 0}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        readings = []
        for event, data, event_id in _events(response):
            if event == "readings":
                readings.append((json.loads(data), int(event_id)))
            if len(readings) == 3:
                break
    backfill, _ = readings[0]
    assert len(backfill["vibration"]) > 1  # history since the start, from the store
    ids = [event_id for _, event_id in readings]
    assert ids == sorted(ids)
    for by_metric, newest in readings:
        assert set(by_metric) <= {"vibration", "temperature", "pressure"}
        assert max(ts for points in by_metric.values() for ts, _ in points) == newest
    wait_until(lambda: platform.alerts.events.listeners == before, what="the listener to close")


def test_device_stream_resumes_after_last_event_id(demo: Demo) -> None:
    """A reconnecting browser sends ``Last-Event-ID``; the stream resumes after it."""
    with httpx.Client(base_url=demo.url, timeout=10) as http:
        newest = http.get("/api/v1/devices/pump-0001/latest").json()[0]["ts"]
        with http.stream(
            "GET", "/ui/devices/pump-0001/stream", headers={"Last-Event-ID": str(newest - 1000)}
        ) as response:
            for event, data, _ in _events(response):
                if event == "readings":
                    first = json.loads(data)
                    break
    stamps = [ts for points in first.values() for ts, _ in points]
    assert min(stamps) > newest - 1000


def test_alert_stream_reports_a_new_alert(demo: Demo, client: httpx.Client) -> None:
    """``/ui/alerts/stream`` sends an ``alert`` event when an alert is raised."""
    with (
        httpx.Client(base_url=demo.url, timeout=20) as http,
        http.stream("GET", "/ui/alerts/stream") as response,
    ):
        events = _events(response)
        assert next(events) == (":", "live", "")  # listening from here on
        device, alert_id = raise_alert(client)
        for event, data, _ in events:
            if event == "alert" and json.loads(data)["id"] == alert_id:
                payload = json.loads(data)
                break
    assert payload == {"id": alert_id, "device": device, "status": "active"}


def test_alert_actions_change_state_and_return_the_card(client: httpx.Client) -> None:
    """Acknowledge and Resolve from htmx answer with the re-rendered card, and the
    API agrees; repeating ack on a resolved alert explains itself in the card."""
    _, alert_id = raise_alert(client)
    hx = {"HX-Request": "true"}
    acked = client.post(f"/ui/alerts/{alert_id}/acknowledge", headers=hx)
    assert acked.status_code == 200
    assert acked.text.lstrip().startswith('<article class="alert-card sev-major status-active"')
    assert 'data-acknowledged="true"' in acked.text
    assert "Acknowledged by local-admin" in acked.text
    assert ">Acknowledge</button>" not in acked.text
    assert ">Resolve without verdict</button>" in acked.text  # still active: no verdict yet
    assert client.get(f"/api/v1/alerts/{alert_id}").json()["acknowledged"] is True

    resolved = client.post(f"/ui/alerts/{alert_id}/resolve", headers=hx)
    assert resolved.status_code == 200
    assert 'data-status="resolved"' in resolved.text
    assert _lifecycle_buttons(resolved.text) == []  # only a comment can still be added
    assert ">Add comment</button>" in resolved.text
    assert client.get(f"/api/v1/alerts/{alert_id}").json()["status"] == "resolved"

    card = client.get(f"/ui/alerts/{alert_id}")
    assert card.status_code == 200
    assert 'data-status="resolved"' in card.text


def test_alert_action_without_htmx_redirects_and_cross_site_is_refused(
    client: httpx.Client,
) -> None:
    """A plain form post (no JavaScript) acts and returns to the inbox; a request
    a browser labels cross-site changes nothing; an unknown alert is a 404."""
    _, alert_id = raise_alert(client)
    refused = client.post(
        f"/ui/alerts/{alert_id}/acknowledge", headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert refused.status_code == 403
    refused = client.post(
        f"/ui/alerts/{alert_id}/acknowledge", headers={"Origin": "https://evil.example"}
    )
    assert refused.status_code == 403
    assert client.get(f"/api/v1/alerts/{alert_id}").json()["acknowledged"] is False

    plain = client.post(
        f"/ui/alerts/{alert_id}/acknowledge", headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert plain.status_code == 303
    assert plain.headers["location"] == "/alerts"
    assert client.get(f"/api/v1/alerts/{alert_id}").json()["acknowledged"] is True
    assert client.post("/ui/alerts/987654/resolve").status_code == 404
    assert client.post(f"/ui/alerts/{alert_id}/explode").status_code == 422


def test_a_stale_card_gets_the_current_state(client: httpx.Client) -> None:
    """Acknowledging an alert someone resolved meanwhile answers with its resolved
    card (no buttons), not an error."""
    _, alert_id = raise_alert(client)
    assert client.post(f"/api/v1/alerts/{alert_id}/resolve").status_code == 200
    response = client.post(f"/ui/alerts/{alert_id}/acknowledge", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert 'data-status="resolved"' in response.text
    assert _lifecycle_buttons(response.text) == []


def _lifecycle_buttons(card: str) -> list[str]:
    """The actions a card offers besides commenting (none once it is resolved)."""
    posts = re.findall(r'hx-post="/ui/alerts/\d+/(\w+)"', card)
    return [action for action in posts if action != "comment"]


def test_card_assigns_comments_and_snoozes_and_the_timeline_shows_it(
    client: httpx.Client,
) -> None:
    """From the card's More sheet: assign to me, assign to a team, comment, snooze 4 h;
    each answers with the card saying what happened, the API agrees, and the alert page's
    timeline lists every change. Bad input (no assignee, empty comment, unknown snooze)
    is explained in the card and changes nothing."""
    _, alert_id = raise_alert(client)
    hx = {"HX-Request": "true"}
    url = f"/ui/alerts/{alert_id}"
    card = client.get(url).text
    assert '<summary class="btn">More</summary>' in card
    assert 'value="tomorrow">Until tomorrow</button>' in card

    mine = client.post(f"{url}/assign", headers=hx, data={"me": "1", "to": ""})
    assert "Assigned to local-admin" in mine.text
    assert 'role="status"' in mine.text
    team = client.post(f"{url}/assign", headers=hx, data={"to": "night shift"})
    assert "Assigned to night shift" in team.text
    nobody = client.post(f"{url}/assign", headers=hx, data={"to": "  "})
    assert "type a person or team" in nobody.text
    assert client.get(f"/api/v1/alerts/{alert_id}").json()["assignee"] == "night shift"

    noted = client.post(f"{url}/comment", headers=hx, data={"text": "valve <b>stuck</b>"})
    assert "Comment by local-admin added." in noted.text
    empty = client.post(f"{url}/comment", headers=hx, data={"text": "   "})
    assert "a comment has 1 to 2000 characters" in empty.text

    before = now_ms()
    snoozed = client.post(f"{url}/snooze", headers=hx, data={"preset": "4h"})
    assert "Snoozed until" in snoozed.text
    until = client.get(f"/api/v1/alerts/{alert_id}").json()["snoozed_until_ms"]
    assert before + 4 * 3_600_000 <= until <= now_ms() + 4 * 3_600_000
    bogus = client.post(f"{url}/snooze", headers=hx, data={"preset": "forever"})
    assert "snooze &#39;forever&#39;" in bogus.text
    assert client.get(f"/api/v1/alerts/{alert_id}").json()["snoozed_until_ms"] == until

    timeline = client.get(f"/alerts/{alert_id}").text
    assert timeline.count('data-kind="assigned"') == 2
    assert "→ night shift" in timeline
    assert "“valve &lt;b&gt;stuck&lt;/b&gt;”" in timeline
    assert 'data-kind="snoozed"' in timeline
    kinds = [e["kind"] for e in client.get(f"/api/v1/alerts/{alert_id}/timeline").json()]
    assert kinds == ["raised", "assigned", "assigned", "commented", "snoozed"]

    client.post(f"/api/v1/alerts/{alert_id}/resolve")
    late = client.post(f"{url}/snooze", headers=hx, data={"preset": "1h"})
    assert "already resolved by" in late.text
    assert (
        "Comment by local-admin added."
        in client.post(f"{url}/comment", headers=hx, data={"text": "post-mortem: gasket"}).text
    )


def test_alert_inbox_tabs_and_list_fragment(client: httpx.Client) -> None:
    """``/alerts`` shows open alerts as cards; a resolved one moves to the All tab."""
    device, alert_id = raise_alert(client)
    page = client.get("/alerts")
    assert page.status_code == 200
    html = page.text
    assert f'id="alert-{alert_id}"' in html
    assert 'data-alert-stream="/ui/alerts/stream"' in html
    assert 'data-refresh="/ui/alerts/list?status=open&amp;offset=0"' in html
    assert "UI test: pressure above 50 bar" in html
    assert f'href="/devices/{device}"' in html
    assert ">Acknowledge</button>" in html
    assert '<summary class="btn">Resolve</summary>' in html
    client.post(f"/api/v1/alerts/{alert_id}/resolve")
    assert f'id="alert-{alert_id}"' not in client.get("/ui/alerts/list").text
    assert f'id="alert-{alert_id}"' in client.get("/ui/alerts/list?status=all").text
    assert f'id="alert-{alert_id}"' in client.get("/alerts?status=all").text
    assert client.get("/alerts?status=bogus").status_code == 422


def test_resolve_sheet_takes_a_verdict_once_cleared(client: httpx.Client) -> None:
    """The sheet's verdict on an active alert is refused in the card; once the condition
    clears the sheet offers the verdicts and root causes, and a false positive resolves
    it with the verdict shown; an unknown verdict is explained, not applied."""
    device, alert_id = raise_alert(client)
    hx = {"HX-Request": "true"}
    early = client.post(
        f"/ui/alerts/{alert_id}/resolve", headers=hx, data={"verdict": "false_positive"}
    )
    assert early.status_code == 200
    assert 'role="alert"' in early.text
    assert "still active" in early.text
    assert 'data-status="active"' in early.text
    body = {"values": {"pressure": 10.0}}
    assert client.post(f"/api/v1/telemetry/{device}", json=body).status_code == 202
    wait_until(
        lambda: client.get(f"/api/v1/alerts/{alert_id}").json()["status"] == "cleared",
        what="the clear",
    )
    card = client.get(f"/ui/alerts/{alert_id}").text
    assert 'value="false_positive">False positive</button>' in card
    assert "<option>sensor fault</option>" in card
    bogus = client.post(f"/ui/alerts/{alert_id}/resolve", headers=hx, data={"verdict": "meh"})
    assert "verdict &#39;meh&#39; is not one of" in bogus.text
    assert 'data-status="cleared"' in bogus.text
    done = client.post(
        f"/ui/alerts/{alert_id}/resolve",
        headers=hx,
        data={"verdict": "false_positive", "root_cause": "sensor fault", "note": "loose"},
    )
    assert 'data-status="resolved"' in done.text
    assert "Verdict: false positive" in done.text
    again = client.post(
        f"/ui/alerts/{alert_id}/resolve", headers=hx, data={"verdict": "true_positive"}
    )
    assert "Already resolved by local-admin" in again.text
    label = client.get("/api/v1/alerts/labels").text
    assert '"note":"loose"' in label


def test_alert_page_and_metrics_page(client: httpx.Client) -> None:
    """The alert page shows the card, the chart of readings around it and the timeline;
    the metrics page shows every figure, its charts' data and the period tabs."""
    _, alert_id = raise_alert(client)
    client.post(f"/api/v1/alerts/{alert_id}/comments", json={"text": "<b>on it</b>"})
    page = client.get(f"/alerts/{alert_id}")
    assert page.status_code == 200
    assert f'id="alert-{alert_id}"' in page.text
    assert 'id="alert-chart"' in page.text
    assert 'data-kind="raised"' in page.text
    assert "&lt;b&gt;on it&lt;/b&gt;" in page.text
    assert client.get("/alerts/987654").status_code == 404
    metrics = client.get("/alerts/metrics", params={"days": 30})
    assert metrics.status_code == 200
    for figure in ("m-mtta", "m-mttr", "m-false-rate", "m-hitl", "m-per-asset", "m-never"):
        assert f'id="{figure}"' in metrics.text
    assert 'id="metrics-data"' in metrics.text
    assert client.get("/alerts/metrics", params={"days": 0}).status_code == 422


def test_inbox_filtered_by_site_shows_that_site_devices(client: httpx.Client) -> None:
    """``/alerts?site=`` shows the alerts of the devices at that site, and only those."""
    body = {"model": "pump", "site": "north yard"}
    assert client.put("/api/v1/devices/site-pump", json=body).status_code == 200
    _, other = raise_alert(client)
    client.put("/api/v1/rules/ui-test-pressure", json=HOT_RULE)
    client.post("/api/v1/telemetry/site-pump", json={"values": {"pressure": 70.0}})
    wait_until(
        lambda: bool(client.get("/api/v1/alerts", params={"device": "site-pump"}).json()),
        what="the site-pump alert",
    )
    mine = client.get("/api/v1/alerts", params={"device": "site-pump"}).json()[0]["id"]
    page = client.get("/alerts", params={"site": "north yard"}).text
    assert f'id="alert-{mine}"' in page
    assert f'id="alert-{other}"' not in page
    assert "site=north%20yard" in page
    fragment = client.get("/ui/alerts/list", params={"site": "north yard"}).text
    assert f'id="alert-{mine}"' in fragment
    assert "No open alerts." in client.get("/alerts", params={"site": "elsewhere"}).text


def test_device_page_lists_the_device_alerts(client: httpx.Client) -> None:
    """The device page and its alert fragment show the device's alerts."""
    device, alert_id = raise_alert(client)
    assert f'id="alert-{alert_id}"' in client.get(f"/devices/{device}").text
    fragment = client.get(f"/ui/devices/{device}/alerts")
    assert fragment.status_code == 200
    assert f'id="alert-{alert_id}"' in fragment.text
    assert "No alerts for this device." in client.get("/ui/devices/room-0001/alerts").text


def test_device_text_is_escaped_everywhere(client: httpx.Client) -> None:
    """A device name or site holding markup is shown as text on every page."""
    evil = "<script>alert('x')</script>"
    body = {"model": "room", "name": evil, "site": '"><img src=x onerror=alert(1)>'}
    assert client.put("/api/v1/devices/evil-room", json=body).status_code == 200
    escaped = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
    fleet = client.get("/", params={"q": "evil"}).text
    device = client.get("/devices/evil-room").text
    for html in (fleet, device):
        assert evil not in html
        assert "<img src=x" not in html
        assert escaped in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in fleet


def test_static_files_are_served(client: httpx.Client) -> None:
    """Our CSS and JS, and the vendored libraries, are under ``/static``."""
    for path in ("/static/trellis.css", "/static/trellis.js", "/static/favicon.svg"):
        assert client.get(path).status_code == 200
    if not views.missing_assets():
        assert client.get("/static/vendor/htmx.min.js").status_code == 200


def test_missing_vendor_files_show_a_banner(
    client: httpx.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``make assets`` the pages still render, with a banner saying what to run."""
    monkeypatch.setattr(views, "VENDOR_DIR", tmp_path)
    for path in ("/", "/alerts", "/devices/pump-0001"):
        response = client.get(path)
        assert response.status_code == 200
        assert 'id="assets-banner"' in response.text
        assert "make assets" in response.text
    monkeypatch.undo()
    if not views.missing_assets():
        assert 'id="assets-banner"' not in client.get("/").text


def test_end_streams_ends_open_streams_so_the_server_can_stop(tmp_path: Path) -> None:
    """``end_streams`` (called by ``trellis serve`` on Ctrl-C) ends an open stream
    promptly: uvicorn drains connections before the lifespan ends, so it must."""
    app = create_app(load_settings(data_dir=tmp_path / "data"))
    with (
        serve(app) as url,
        httpx.Client(base_url=url, timeout=10) as http,
        http.stream("GET", "/ui/alerts/stream") as response,
    ):
        events = _events(response)
        assert next(events) == (":", "live", "")
        started = time.monotonic()
        end_streams(app)
        assert list(events) == []  # the server closed the stream
        assert time.monotonic() - started < 5


def test_fleet_page_shows_the_storage_budget(client: httpx.Client) -> None:
    """The fleet overview carries the storage budget: used, growth per day, days until full."""
    html = client.get("/").text
    section = html[html.index('id="storage-budget"') :]
    assert "Days until full" in section
    assert re.search(r"<dt>Used</dt><dd>[\d.]+ (B|KiB|MiB|GiB)</dd>", section)
    # A number of days, or "—" while the cached figure predates any growth; not an alert.
    assert re.search(r'id="stat-days-left">([\d.]+|—)</dd>', section)
