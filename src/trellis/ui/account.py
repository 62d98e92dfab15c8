"""Logging in and out of the dashboard: a username/password form that starts a server-side
session (rate limited per address and per user name, audited), and logout that ends it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from trellis.api.auth import SESSION_COOKIE, Gate, public
from trellis.auth.users import Principal
from trellis.ui.auth import cookie, group, read_form, session_of, uses_tls

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

NextQuery = Annotated[str, Query(max_length=512)]


def _safe_next(target: str) -> str:
    """Only a path on this site: an open redirect would make the login page a phishing aid."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _page(request: Request, next_: str, error: str = "", status: int = 200) -> HTMLResponse:
    from trellis.ui.routes import _render

    return _render(request, "login.html", {"next": next_, "error": error}, status)


@router.get("/login")
@public
async def login_page(request: Request, next: NextQuery = "/") -> Response:
    """The login form (or straight on, when already logged in)."""
    gate: Gate = request.app.state.gate
    if await asyncio.to_thread(session_of, request, gate) is not None:
        return RedirectResponse(_safe_next(next), 303)
    return _page(request, _safe_next(next))


@router.post("/login")
@public
async def login(request: Request) -> Response:
    """Check the password and start a session; failures are counted, audited, and slowed."""
    gate: Gate = request.app.state.gate
    form = await read_form(request)
    username, password = form.get("username", "")[:64], form.get("password", "")[:1024]
    next_ = _safe_next(form.get("next", "/"))
    client = request.client.host if request.client else "?"
    wait = gate.limiter.retry_after(client, username)
    if wait:
        page = _page(request, next_, f"Too many failed logins. Try again in {wait} s.", 429)
        page.headers["Retry-After"] = str(wait)
        return page
    principal = await asyncio.to_thread(gate.users.login, username, password)
    record = {"action": "auth.login", "method": "POST", "path": "/login", "client": client}
    if principal is None:
        log.info("failed login for %r from %s (dashboard)", username, client)
        gate.limiter.failed(client, username)
        await asyncio.to_thread(
            gate.audit.append,
            principal=username,
            decision="deny",
            reason="bad credentials",
            **record,
        )
        return _page(request, next_, "Wrong username or password.", 401)
    session_id = await asyncio.to_thread(gate.sessions.create, principal.name, client)
    await asyncio.to_thread(
        gate.audit.append,
        principal=principal.name,
        role=principal.role,
        tenant=principal.tenant,
        decision="allow",
        reason="password (dashboard session)",
        **record,
    )
    response = RedirectResponse(next_, 303)
    secure = uses_tls(request, gate_secure(request))
    lifetime = max(1, int(gate.sessions.lifetime_s))
    response.headers.append(
        "set-cookie", cookie(SESSION_COOKIE, session_id, secure, max_age=lifetime)
    )
    return response


def gate_secure(request: Request) -> bool | None:
    """The configured ``auth.secure_cookies`` (``None``: follow the request's scheme)."""
    platform = getattr(request.app.state, "platform", None)
    return platform.settings.auth.secure_cookies if platform is not None else None


@router.post("/logout")
@public
async def logout(request: Request) -> Response:
    """End the session on the server and drop the cookie."""
    gate: Gate = request.app.state.gate
    cookie_value = request.cookies.get(SESSION_COOKIE)
    session = await asyncio.to_thread(session_of, request, gate)
    if cookie_value:
        await asyncio.to_thread(gate.sessions.end, cookie_value)
    if session is not None:
        await asyncio.to_thread(
            gate.audit.append,
            principal=session.principal.name,
            decision="allow",
            reason="logout",
            action="auth.logout",
            method="POST",
            path="/logout",
            client=request.client.host if request.client else None,
        )
    response = RedirectResponse("/login", 303)
    secure = uses_tls(request, gate_secure(request))
    response.headers.append("set-cookie", cookie(SESSION_COOKIE, "", secure, max_age=0))
    return response


def _password_form(
    request: Request, error: str = "", notice: str = "", status: int = 200
) -> Response:
    from trellis.ui.routes import _render

    context = {"error": error, "notice": notice}
    return _render(request, "password.html", context, status)


def _password_page(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    # Reachable while the one-time password is still in use (everything else is not).
    endpoint.__dict__["trellis_password"] = True
    return endpoint


@router.get("/account/password")
@group("read")  # every role may change its own password
@_password_page
async def password_page(request: Request) -> Response:
    """The form to change one's own password."""
    return _password_form(request)


@router.post("/account/password")
@group("read")
@_password_page
async def change_password(request: Request) -> Response:
    """Change one's own password (the current one is asked again); audited."""
    gate: Gate = request.app.state.gate
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None or principal.via != "session":
        return _password_form(request, "Only a logged-in user has a password to change.", "", 400)
    client = request.client.host if request.client else "?"
    wait = gate.limiter.retry_after(client, principal.name)
    if wait:  # a stolen session must not become a way to guess the password
        page = _password_form(request, f"Too many wrong passwords. Try again in {wait} s.", "", 429)
        page.headers["Retry-After"] = str(wait)
        return page
    form = await read_form(request)
    new = form.get("new", "")
    if new != form.get("repeat", ""):
        return _password_form(request, "The two new passwords differ.", "", 422)
    try:
        await asyncio.to_thread(
            gate.users.change_password, principal.name, form.get("current", ""), new
        )
    except ValueError as exc:
        if "current password" in str(exc):
            gate.limiter.failed(client, principal.name)
        return _password_form(request, str(exc).capitalize() + ".", "", 422)
    await asyncio.to_thread(
        gate.audit.append,
        principal=principal.name,
        role=principal.role,
        tenant=principal.tenant,
        decision="allow",
        reason="password changed",
        action="auth.change_password",
        method="POST",
        path="/account/password",
        client=client,
    )
    return _password_form(request, "", "Password changed.")
