"""Site scoping: a contractor at site north sees and acts on north's devices, telemetry and
alerts only; every other operation is refused, and nothing of site south shows anywhere.

Like the cross-tenant test, the operations come from the served OpenAPI document."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import pytest
from typer.testing import CliRunner

from tests.serving import serve, wait_until
from trellis.api.app import create_app
from trellis.auth.users import SCOPES, UserStore
from trellis.cli import app
from trellis.core.clock import now_ms
from trellis.core.config import load_settings
from trellis.store.metadata import open_metadata

PASSWORD = "correct horse battery staple"
SOUTH = "south-"  # every id and name at site south starts with this

_seq = itertools.count(1)


@dataclass
class Sites:
    """Clients for the tenant's admin and the north contractor; ids by site."""

    admin: httpx.Client
    contractor: httpx.Client
    alerts: dict[str, int]


def _client(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=20, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    """Pumps at sites north and south, each with a raised alert, and a north contractor."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("TRELLIS_AUTH__LOOPBACK_ADMIN", raising=False)
        data: Path = tmp_path_factory.mktemp("sites") / "data"
        settings = load_settings(data_dir=data)
        engine = open_metadata(settings.metadata_url)
        users = UserStore(engine)
        users.add("boss", "default", "admin", PASSWORD)
        users.add("carl", "default", "contractor", PASSWORD, site="north")
        boss = users.issue_token("boss", list(SCOPES), 1)
        carl = users.issue_token("carl", list(SCOPES), 1)
        engine.dispose()
        with (
            serve(create_app(settings)) as url,
            _client(url, boss) as admin,
            _client(url, carl) as contractor,
        ):
            for device, site in (("north-pump", "north"), (f"{SOUTH}pump", f"{SOUTH}site")):
                put = admin.put(f"/api/v1/devices/{device}", json={"model": "pump", "site": site})
                assert put.status_code == 200, put.text
            rule = {
                "id": "hot",
                "metric": "pressure",
                "severity": "major",
                "select": {"models": ["pump"]},
                "condition": "value > 50.0",
            }
            assert admin.put("/api/v1/rules/hot", json=rule).status_code == 200
            for device in ("north-pump", f"{SOUTH}pump"):
                body = {"ts": now_ms(), "seq": next(_seq), "values": {"pressure": 99.0}}
                sent = admin.post(f"/api/v1/telemetry/{device}", content=msgspec.json.encode(body))
                assert sent.status_code == 202
            wait_until(lambda: len(admin.get("/api/v1/alerts").json()) == 2, what="two alerts")
            alerts = {a["device"]: a["id"] for a in admin.get("/api/v1/alerts").json()}
            yield Sites(admin, contractor, alerts)


def _operations(client: httpx.Client) -> list[tuple[str, str]]:
    spec = client.get("/api/v1/openapi.json").json()
    return [
        (method, path)
        for path, item in spec["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def test_contractor_sees_only_its_site_through_every_read(sites: Sites) -> None:
    """Every GET: refused (403), or an answer with nothing of site south; the site's own
    devices, telemetry and alerts are there."""
    south = {
        "device_id": f"{SOUTH}pump",
        "alert_id": str(sites.alerts[f"{SOUTH}pump"]),
        "metric": "pressure",
    }
    allowed = []
    for method, path in _operations(sites.contractor):
        if method != "get" or path.endswith("openapi.json"):
            continue
        url = re.sub(r"\{([^}]+)\}", lambda m: south.get(m.group(1), "x"), path)
        params = {"device": f"{SOUTH}pump", "metric": "pressure", "type": "x"}
        answer = sites.contractor.get(url, params=params if "{" not in path else None)
        assert answer.status_code in (403, 404, 200, 422), f"{path}: {answer.status_code}"
        if answer.status_code == 200:
            assert SOUTH not in answer.text, f"GET {path} shows site south: {answer.text[:300]}"
            allowed.append(path)
    assert "/api/v1/alerts/root-causes" in allowed
    devices = sites.contractor.get("/api/v1/devices").json()
    assert [d["id"] for d in devices] == ["north-pump"]
    alerts = sites.contractor.get("/api/v1/alerts").json()
    assert [a["device"] for a in alerts] == ["north-pump"]
    assert sites.contractor.get("/api/v1/alerts", params={"site": f"{SOUTH}site"}).json() == []
    latest = sites.contractor.get("/api/v1/devices/north-pump/latest")
    assert latest.status_code == 200
    assert latest.json()
    assert sites.contractor.get("/api/v1/rules").status_code == 403
    assert sites.contractor.get("/api/v1/audit").status_code == 403


def test_contractor_acts_on_its_site_only(sites: Sites) -> None:
    """It acknowledges north's alert; south's answers 404 and stays unacknowledged; changes
    outside the alert actions are refused."""
    north, south = sites.alerts["north-pump"], sites.alerts[f"{SOUTH}pump"]
    done = sites.contractor.post(f"/api/v1/alerts/{north}/acknowledge", json={"by": "carl"})
    assert done.status_code == 200, done.text
    refused = sites.contractor.post(f"/api/v1/alerts/{south}/acknowledge", json={"by": "carl"})
    assert refused.status_code == 404
    assert not sites.admin.get(f"/api/v1/alerts/{south}").json()["acknowledged"]
    for method, path, body in (
        ("put", "/api/v1/devices/north-pump", {"model": "pump", "site": "north"}),
        ("post", f"/api/v1/alerts/{north}/snooze", {"minutes": 5}),
        ("delete", "/api/v1/rules/hot", None),
    ):
        answer = sites.contractor.request(method, path, json=body)
        assert answer.status_code == 403, f"{method} {path}: {answer.text}"
    entries = sites.admin.get("/api/v1/audit", params={"limit": 50}).json()
    assert any(e.get("site") == "north" and e["decision"] == "deny" for e in entries)


def test_a_contractor_needs_a_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Creating a contractor without a site is refused, in the store and by the CLI; with
    `--site` its tokens carry the site."""
    engine = open_metadata(f"sqlite:///{tmp_path / 'm.db'}")
    with pytest.raises(ValueError, match="one site"):
        UserStore(engine).add("c", "default", "contractor", PASSWORD)
    engine.dispose()
    monkeypatch.setenv("TRELLIS_DATA_DIR", str(tmp_path / "d"))
    runner = CliRunner()
    assert runner.invoke(app, ["users", "add", "carl", "--role", "contractor"]).exit_code == 2
    added = runner.invoke(app, ["users", "add", "carl", "--role", "contractor", "--site", "north"])
    assert added.exit_code == 0, added.output
    token = runner.invoke(app, ["users", "token", "carl"]).stdout.strip()
    engine = open_metadata(load_settings().metadata_url)
    assert UserStore(engine).resolve(token).site == "north"
    engine.dispose()
