"""The one gate: every OpenAPI operation is authorised through the Cedar policies."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa

from tests.auth.conftest import PASSWORD, Secured
from trellis.api import routes
from trellis.api.auth import operations
from trellis.auth.users import UserStore
from trellis.store.metadata import api_tokens, open_metadata

#: Which roles each action group admits (the built-in policies).
ALLOWED = {
    "read": {"admin", "engineer", "data_scientist", "operator", "viewer", "auditor"},
    "write": {"admin", "engineer"},
    "operate": {"admin", "engineer", "operator"},
    "ml": {"admin", "engineer", "data_scientist"},
    "audit": {"admin", "auditor"},
    "admin": {"admin"},
}
PUBLIC = {("post", "/api/v1/auth/token"), ("get", "/api/v1/health/live")}


@pytest.fixture
def http(secured: Secured) -> Iterator[httpx.Client]:
    """A client on the secured server."""
    with httpx.Client(base_url=secured.url, timeout=10) as client:
        yield client


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


def _openapi_operations(http: httpx.Client) -> list[tuple[str, str, str]]:
    spec = http.get("/api/v1/openapi.json").json()
    return [
        (method, path, op.get("tags", ["system"])[0])
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def _groups() -> dict[tuple[str, str], str]:
    from fastapi.routing import APIRoute

    from trellis.api.auth import _api_routes

    ops = operations(routes.router)
    found = {}
    for route in _api_routes(routes.router.routes):
        assert isinstance(route, APIRoute)
        if route.endpoint in ops:
            for method in route.methods:
                # OpenAPI writes ``{ident:path}`` as ``{ident}``.
                path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
                found[(method.lower(), path)] = ops[route.endpoint].group
    return found


def test_every_openapi_operation_is_guarded_and_allowed_only_for_its_roles(
    secured: Secured, http: httpx.Client
) -> None:
    """Each operation: 401 without a token, 403 for roles outside its group, allowed inside.

    An admin of another tenant is allowed in its own tenant only: tests/auth/test_tenancy.py
    proves it sees and changes nothing of this one."""
    groups = _groups()
    checked = 0
    for method, path, _tag in _openapi_operations(http):
        if (method, path) in PUBLIC:
            continue
        assert (method, path) in groups, f"{method.upper()} {path} is not known to the gate"
        group = groups[(method, path)]
        url = _concrete(path)
        assert http.request(method, url).status_code == 401, f"{method} {path} without a token"
        # The contractor is limited to one site: tests/auth/test_sites.py walks it.
        denied = sorted(set(secured.tokens) - ALLOWED[group] - {"stranger", "contractor"})
        for role in denied:
            answer = http.request(method, url, headers=_bearer(secured, role))
            assert answer.status_code == 403, f"{role} {method} {path}: {answer.status_code}"
        role = sorted(ALLOWED[group])[0]
        answer = http.request(method, url, headers=_bearer(secured, role))
        assert answer.status_code not in (401, 403), f"{role} {method} {path}: {answer.text}"
        checked += 1
    assert checked >= 60


def _bearer(secured: Secured, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secured.tokens[role]}"}


def test_forged_and_malformed_tokens_are_refused(secured: Secured, http: httpx.Client) -> None:
    """A token with a changed secret, an unknown id, or the wrong scheme answers 401."""
    good = secured.tokens["viewer"]
    forged = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    for header in (
        f"Bearer {forged}",
        "Bearer trl_0000000000000000.abc",
        "Bearer nonsense",
        "Basic abc",
    ):
        answer = http.get("/api/v1/devices", headers={"Authorization": header})
        assert answer.status_code == 401, header
        assert answer.headers["www-authenticate"] == "Bearer"


def test_expired_token_is_refused(secured: Secured, http: httpx.Client) -> None:
    """A token past its expiry answers 401 even though its secret is right."""
    engine = open_metadata(secured.settings.metadata_url)
    token = UserStore(engine).issue_token("u-viewer", ["read"], 1)
    with engine.begin() as conn:
        conn.execute(
            sa.update(api_tokens)
            .where(api_tokens.c.id == token[4:].split(".")[0])
            .values(expires_ms=1)
        )
    engine.dispose()
    answer = http.get("/api/v1/devices", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401
    assert "expired" in answer.json()["detail"]


def test_token_without_the_scope_is_refused(secured: Secured, http: httpx.Client) -> None:
    """An admin's read-only token may read but not change anything."""
    engine = open_metadata(secured.settings.metadata_url)
    token = UserStore(engine).issue_token("u-admin", ["read"], 1)
    engine.dispose()
    headers = {"Authorization": f"Bearer {token}"}
    assert http.get("/api/v1/devices", headers=headers).status_code == 200
    answer = http.put("/api/v1/devices/p-1", json={"model": "pump"}, headers=headers)
    assert answer.status_code == 403
    assert "scope 'write'" in answer.json()["detail"]


def test_login_issues_a_token_and_refuses_wrong_passwords(
    secured: Secured, http: httpx.Client
) -> None:
    """The password gives a working token; a wrong one answers 401 and is audited."""
    answer = http.post("/api/v1/auth/token", json={"username": "u-viewer", "password": PASSWORD})
    assert answer.status_code == 201, answer.text
    token = answer.json()["token"]
    assert (
        http.get("/api/v1/devices", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    )
    wrong = http.post("/api/v1/auth/token", json={"username": "u-viewer", "password": "nope"})
    assert wrong.status_code == 401
    bad_scope = http.post(
        "/api/v1/auth/token",
        json={"username": "u-viewer", "password": PASSWORD, "scopes": ["root"]},
    )
    assert bad_scope.status_code == 422


def test_state_changes_are_audited_with_the_decision(secured: Secured, http: httpx.Client) -> None:
    """An allowed and a denied change both appear in the audit log, and the chain verifies."""
    http.put(
        "/api/v1/devices/audited-1", json={"model": "pump"}, headers=_bearer(secured, "engineer")
    )
    http.put(
        "/api/v1/devices/audited-2", json={"model": "pump"}, headers=_bearer(secured, "viewer")
    )
    entries = http.get("/api/v1/audit?limit=50", headers=_bearer(secured, "auditor")).json()
    mine = {(e["path"], e["principal"], e["decision"]) for e in entries}
    assert ("/api/v1/devices/audited-1", "u-engineer", "allow") in mine
    assert ("/api/v1/devices/audited-2", "u-viewer", "deny") in mine
    verified = http.get("/api/v1/audit/verify", headers=_bearer(secured, "auditor")).json()
    assert verified["ok"]
    assert verified["entries"] >= 2
