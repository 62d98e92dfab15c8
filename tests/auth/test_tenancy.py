"""Tenancy by construction: a user of tenant A walks every operation of the OpenAPI spec and
never sees, finds or changes anything of tenant B.

The operations are read from the served OpenAPI document, so an endpoint added later is
walked too; a new id path parameter fails the test until it is given one of B's ids here.
"""

from __future__ import annotations

import importlib.util
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from tests.serving import serve, wait_until
from trellis.api.app import create_app
from trellis.auth.users import SCOPES, UserStore
from trellis.core.clock import now_ms
from trellis.core.config import load_settings
from trellis.store.metadata import open_metadata

PASSWORD = "correct horse battery staple"
#: Every identifier B creates starts with this; nothing A is shown may contain it.
B_MARK = "gx-"
#: B's content that is not an id (site, names, texts): not even a 404 may echo it.
B_HIDDEN = "gx-hidden"
A_DEVICE = "acme-pump"

#: Operations whose data is shared by every tenant on purpose, and why (docs/security.md).
SHARED = {
    "/api/v1/device-models": "the device model catalog (types, not tenant data)",
    "/api/v1/device-models/{name}/versions": "the device model catalog",
    "/api/v1/experiments": "simulator A/B reports written by the CLI, not tenant data",
    "/api/v1/experiments/{report_id}": "simulator A/B reports",
}


@dataclass
class Tenants:
    """The server, a client per tenant, and the ids B created."""

    url: str
    a: httpx.Client
    b: httpx.Client
    b_ids: dict[str, str]


def _client(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=20, headers={"Authorization": f"Bearer {token}"})


_seq = itertools.count(1)


def _post_telemetry(client: httpx.Client, device: str, values: dict[str, float]) -> None:
    body = {"ts": now_ms(), "seq": next(_seq), "values": values}
    answer = client.post(f"/api/v1/telemetry/{device}", content=msgspec.json.encode(body))
    assert answer.status_code == 202, answer.text


def _populate(client: httpx.Client, prefix: str, hidden: str) -> dict[str, str]:
    """A device, telemetry, a rule that fires, its alert, a flow, a quarantined message and
    (with the ml extra) a model, all named with ``prefix``; returns their ids by parameter."""
    device = f"{prefix}secret-pump"
    put = client.put(
        f"/api/v1/devices/{device}",
        json={"model": "pump", "name": f"{hidden}-name", "site": f"{hidden}-site"},
    )
    assert put.status_code == 200, put.text
    rule = {
        "id": f"{prefix}secret-rule",
        "metric": "pressure",
        "severity": "major",
        "select": {"models": ["pump"]},
        "condition": f"value > 50.0 && device == '{device}'",
    }
    assert client.put(f"/api/v1/rules/{rule['id']}", json=rule).status_code == 200
    _post_telemetry(client, device, {"pressure": 99.0, "temperature": 60.0, "vibration": 2.0})
    wait_until(lambda: bool(client.get("/api/v1/alerts").json()), what=f"{prefix} alert")
    alert = client.get("/api/v1/alerts").json()[0]
    comment = {"by": f"{hidden}-operator", "text": f"{hidden}-comment"}
    assert client.post(f"/api/v1/alerts/{alert['id']}/comments", json=comment).status_code == 200
    flow = {
        "id": f"{prefix}secret-flow",
        "name": f"{hidden}-flow-name",
        "nodes": [
            {"id": "s", "type": "source", "metric": "pressure"},
            {"id": "c", "type": "condition", "condition": "value > 1000.0"},
            {"id": "a", "type": "alert", "severity": "minor", "name": f"{hidden}-node"},
        ],
        "edges": [["s", "c"], ["c", "a"]],
    }
    assert client.put(f"/api/v1/flows/{flow['id']}", json=flow).status_code == 200
    bad = client.post(f"/api/v1/telemetry/{device}", content=f'{{"{hidden}": ['.encode())
    assert bad.status_code == 422, bad.text
    quarantined = client.get("/api/v1/quarantine").json()
    assert len(quarantined) == 1
    node = f"{prefix}secret-site"
    placed = client.put(
        f"/api/v1/semantic/nodes/{node}", json={"brick_class": "Site", "name": f"{hidden}-place"}
    )
    assert placed.status_code == 200, placed.text
    model = f"{prefix}secret-model"
    if importlib.util.find_spec("onnxruntime") is not None:
        _register_model(client, model)
    return {
        "device_id": device,
        "rule_id": rule["id"],
        "flow_id": flow["id"],
        "alert_id": str(alert["id"]),
        "entry_id": str(quarantined[0]["id"]),
        "name": model,
        "version": "1.0.0",
        "metric": "pressure",
        "report_id": f"{prefix}secret-report",
        "node_id": node,
        "kind": "alert",
        "ident": str(alert["id"]),
    }


def _tiny_onnx() -> bytes:
    """A one-node ONNX model (mean of three features as the score), built in microseconds
    rather than trained: the test is about who sees it, not what it predicts."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["X"], ["score"], axes=[1], keepdims=0)],
        "tiny",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _register_model(client: httpx.Client, name: str) -> None:
    signature = {
        "device_model": "pump",
        "features": [{"name": "temperature"}, {"name": "vibration"}, {"name": "pressure"}],
        "outputs": [{"name": "score"}],
    }
    put = client.put(
        f"/api/v1/models/{name}/versions/1.0.0",
        params={"signature": msgspec.json.encode(signature).decode(), "registered_by": B_HIDDEN},
        content=_tiny_onnx(),
    )
    assert put.status_code == 201, put.text


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenants]:
    """A server with auth on, an admin in tenant ``acme`` and one in ``globex`` with data."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("TRELLIS_AUTH__LOOPBACK_ADMIN", raising=False)
        data: Path = tmp_path_factory.mktemp("tenancy") / "data"
        settings = load_settings(data_dir=data)
        engine = open_metadata(settings.metadata_url)
        users = UserStore(engine)
        users.add("a-admin", "acme", "admin", PASSWORD)
        users.add("b-admin", "globex", "admin", PASSWORD)
        a_token = users.issue_token("a-admin", list(SCOPES), 1)
        b_token = users.issue_token("b-admin", list(SCOPES), 1)
        engine.dispose()
        with (
            serve(create_app(settings)) as url,
            _client(url, a_token) as a,
            _client(url, b_token) as b,
        ):
            b_ids = _populate(b, B_MARK, B_HIDDEN)
            assert a.put(f"/api/v1/devices/{A_DEVICE}", json={"model": "pump"}).status_code == 200
            _post_telemetry(a, A_DEVICE, {"pressure": 3.0})
            yield Tenants(url, a, b, b_ids)


def _spec(tenants: Tenants) -> list[tuple[str, str, dict[str, Any]]]:
    spec = tenants.a.get("/api/v1/openapi.json").json()
    return [
        (method, path, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def _params(op: dict[str, Any], where: str) -> list[dict[str, Any]]:
    return [p for p in op.get("parameters", []) if p["in"] == where]


def _query_values(op: dict[str, Any], b_ids: dict[str, str]) -> dict[str, str]:
    """B's ids in every query parameter that could name one, plain values for the rest."""
    values: dict[str, str] = {}
    for param in _params(op, "query"):
        name = param["name"]
        if name in ("device", "rule", "site"):
            values[name] = b_ids.get(f"{name}_id", f"{B_HIDDEN}-site")
        elif name in ("metric", "type"):
            values[name] = "pressure"
        elif param.get("required"):
            values[name] = str(param["schema"].get("default", "1"))
    return values


def test_every_list_endpoint_shows_tenant_a_nothing_of_b(tenants: Tenants) -> None:
    """Every GET without a path parameter, also when its query names B's device or rule."""
    walked = []
    for method, path, op in _spec(tenants):
        if method != "get" or "{" in path or path.endswith("openapi.json"):
            continue
        for query in ({}, _query_values(op, tenants.b_ids)):
            answer = tenants.a.get(path, params=query)
            assert answer.status_code < 500, f"GET {path} {query}: {answer.text}"
            assert answer.status_code != 403, f"A may read its own {path}: {answer.text}"
            # An error may echo the id A sent; an answer with data must hold nothing of B.
            mark = B_MARK if answer.is_success else B_HIDDEN
            assert mark not in answer.text, f"GET {path} {query} leaks B: {answer.text[:400]}"
        walked.append(path)
    # The walk saw real data of A, so an empty answer is not why nothing leaked.
    assert A_DEVICE in tenants.a.get("/api/v1/devices").text
    assert len(walked) >= 15


def _b_path(path: str, b_ids: dict[str, str]) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in b_ids, f"path parameter {name!r} of {path} has no id of B in this test"
        return b_ids[name]

    return re.sub(r"\{([^}]+)\}", fill, path)


def test_every_get_by_id_with_b_ids_answers_not_found(tenants: Tenants) -> None:
    """Every GET with a path parameter, given B's ids, answers 404 and reveals nothing."""
    walked = 0
    for method, path, _op in _spec(tenants):
        if method != "get" or "{" not in path or path in SHARED:
            continue
        answer = tenants.a.get(_b_path(path, tenants.b_ids))
        assert answer.status_code == 404, f"GET {path} with B's ids: {answer.status_code}"
        assert B_HIDDEN not in answer.text, f"GET {path} reveals B: {answer.text[:400]}"
        walked += 1
    assert walked >= 10
    # B itself reads the same paths: the ids are real, only A is kept out.
    for path in ("/api/v1/devices/{device_id}", "/api/v1/alerts/{alert_id}"):
        assert tenants.b.get(_b_path(path, tenants.b_ids)).status_code == 200


def test_changes_aimed_at_b_ids_change_nothing_of_b(tenants: Tenants) -> None:
    """Every changing operation with B's ids either fails (4xx) or acts in A's own tenant;
    afterwards B's device, rule, flow, alert and quarantine are exactly as before."""
    b = tenants.b

    def snapshot() -> dict[str, str]:
        return {
            path: b.get(path).text
            for path in (
                "/api/v1/devices",
                "/api/v1/rules",
                "/api/v1/flows",
                f"/api/v1/alerts/{tenants.b_ids['alert_id']}/timeline",
                "/api/v1/quarantine",
                "/api/v1/models",
            )
        }

    before = snapshot()
    for method, path, op in _spec(tenants):
        if method == "get" or "{" not in path or path in SHARED:
            continue
        body: dict[str, Any] = {"by": "a-admin", "text": "x", "minutes": 1, "action": "x"}
        if path.endswith("/devices/{device_id}"):
            body = {"model": "pump"}
        answer = tenants.a.request(
            method,
            _b_path(path, tenants.b_ids),
            params=_query_values(op, tenants.b_ids),
            json=body,
        )
        assert answer.status_code < 500, f"{method.upper()} {path}: {answer.text}"
        assert B_HIDDEN not in answer.text, f"{method.upper()} {path} reveals B: {answer.text}"
    replay = tenants.a.post("/api/v1/quarantine/replay", json={"ids": [tenants.b_ids["entry_id"]]})
    assert replay.status_code == 404, replay.text
    after = snapshot()
    for path, text in before.items():
        assert after[path] == text, f"B's {path} changed after A's requests"
