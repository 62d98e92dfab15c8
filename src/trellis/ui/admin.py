"""Dashboard pages of the trust layer: users and roles, the loaded policies, the audit log.

Each page is a Cedar action (``dashboard.<endpoint>``) authorised by the guard like every
other page: managing users is the ``admin`` group, reading policies and the audit log the
``audit`` group (admins and auditors under the built-in policies).
"""

from __future__ import annotations

import asyncio
import importlib
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from trellis.api.auth import Gate
from trellis.auth.audit import verify
from trellis.auth.policy import PolicyError
from trellis.auth.users import ROLES, SCOPES
from trellis.core.errors import ConflictError, NotFoundError
from trellis.ui.auth import group, read_form

__all__ = ["router"]

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

NameQuery = Annotated[str, Query(max_length=64)]


def _render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    from trellis.ui.routes import _render as render

    return render(request, name, context, status)


def _gate(request: Request) -> Gate:
    gate: Gate = request.app.state.gate
    return gate


async def _users_page(
    request: Request, *, error: str = "", notice: str = "", token: str = "", status: int = 200
) -> Response:
    gate = _gate(request)
    users = await asyncio.to_thread(gate.users.all)
    for user in users:
        user["tokens"] = await asyncio.to_thread(gate.users.tokens, str(user["name"]))
    context = {
        "users": users,
        "roles": ROLES,
        "scopes": SCOPES,
        "error": error,
        "notice": notice,
        "token": token,
    }
    return _render(request, "admin_users.html", context, status)


@router.get("/admin/users")
@group("admin")
async def users_page(request: Request) -> Response:
    """Every user with role, tenant, state and tokens; forms to add, disable, rotate."""
    return await _users_page(request)


@router.post("/admin/users")
@group("admin")
async def add_user(request: Request) -> Response:
    """Add a user of this tenant (the password is set by the admin, at least 12 characters)."""
    gate, form = _gate(request), await read_form(request)
    name, role = form.get("name", "").strip(), form.get("role", "")
    if role not in ROLES:
        return await _users_page(request, error=f"unknown role {role!r}", status=422)
    try:
        await asyncio.to_thread(gate.users.add, name, gate.tenant, role, form.get("password", ""))
    except ValueError as exc:
        return await _users_page(request, error=str(exc), status=422)
    except ConflictError as exc:
        return await _users_page(request, error=str(exc), status=409)
    return await _users_page(request, notice=f"Added {name} ({role}).")


@router.post("/admin/users/{name}/{state}")
@group("admin")
async def set_user_state(name: str, state: str, request: Request) -> Response:
    """Disable a user (their sessions end and their tokens stop at once) or enable again."""
    gate = _gate(request)
    if state not in ("disable", "enable"):
        return await _users_page(request, error=f"unknown action {state!r}", status=422)
    try:
        await asyncio.to_thread(gate.users.set_disabled, name, state == "disable")
    except NotFoundError as exc:
        return await _users_page(request, error=str(exc), status=404)
    if state == "disable":
        await asyncio.to_thread(gate.sessions.end_all, name)
    return await _users_page(request, notice=f"{name}: {state}d.")


@router.post("/admin/tokens/{name}")
@group("admin")
async def rotate_token(name: str, request: Request) -> Response:
    """Revoke the user's tokens and issue one new token, shown on this page once."""
    gate, form = _gate(request), await read_form(request)
    scopes = [s for s in SCOPES if form.get(f"scope_{s}")] or ["read"]
    days = gate_token_days(request)
    try:
        token = await asyncio.to_thread(gate.users.rotate_token, name, scopes, days)
    except NotFoundError as exc:
        return await _users_page(request, error=str(exc), status=404)
    return await _users_page(
        request,
        notice=f"New token for {name} ({', '.join(scopes)}); older tokens are revoked.",
        token=token,
    )


def gate_token_days(request: Request) -> float:
    """``auth.token_days`` of the running platform."""
    platform = getattr(request.app.state, "platform", None)
    return float(platform.settings.auth.token_days) if platform is not None else 90.0


@router.get("/admin/policies")
@group("audit")
async def policies_page(request: Request) -> Response:
    """The policies in force, their validation against the schema, and the actions."""
    engine = _gate(request).policies
    try:
        await asyncio.to_thread(engine.validate, engine.text)
        status, problem = "valid", ""
    except PolicyError as exc:  # cannot happen for a loaded set, but the page says so if it does
        status, problem = "invalid", str(exc)
    report, report_error = await asyncio.to_thread(_policy_tests, request)
    context = {
        "report": report,
        "report_error": report_error,
        "policy_text": engine.text,
        "status": status,
        "problem": problem,
        "policy_actions": sorted(engine.actions.items(), key=lambda item: (item[1], item[0])),
        "source": _policy_source(request),
    }
    return _render(request, "admin_policies.html", context)


def _policy_tests(request: Request) -> tuple[Any, str]:
    """The ``*.tests.csv`` tables run against the loaded policies (``trellis policy test``'s
    runner); ``(None, why)`` when there is no runner or no table."""
    try:
        module = importlib.import_module("trellis.auth.policy_tests")
    except ImportError:
        return None, "the policy test runner is not installed in this build"
    engine = _gate(request).policies
    platform = getattr(request.app.state, "platform", None)
    directory = platform.settings.auth.policy_dir if platform is not None else None
    try:
        report = module.run_policy_tests(directory, actions=engine.actions, engine=engine)
    except ValueError as exc:  # a malformed or missing table: say so on the page
        return None, str(exc)
    return report, ""


def _policy_source(request: Request) -> str:
    platform = getattr(request.app.state, "platform", None)
    directory = platform.settings.auth.policy_dir if platform is not None else None
    return f"{directory}/*.cedar" if directory else "built-in (trellis/auth/policies)"


@router.get("/admin/audit")
@group("audit")
async def audit_page(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=2000)] = 200,
    principal: NameQuery = "",
) -> Response:
    """The newest audit entries, filterable by principal, with a Verify button."""
    gate = _gate(request)
    entries = await asyncio.to_thread(gate.audit.entries, limit if not principal else 10_000)
    if principal:
        entries = [e for e in entries if e.get("principal") == principal][:limit]
    context = {"entries": entries, "limit": limit, "principal": principal}
    return _render(request, "admin_audit.html", context)


@router.get("/ui/audit/verify")
@group("audit")
async def audit_verify_fragment(request: Request) -> Response:
    """Check the whole chain; names the first entry that was edited, deleted or moved."""
    path = _gate(request).audit.path
    checked, broken = (0, None) if not path.exists() else await asyncio.to_thread(verify, path)
    return _render(request, "_audit_verify.html", {"checked": checked, "broken": broken})
