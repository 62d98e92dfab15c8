"""The dashboard's security: who is looking (session or loopback admin), CSRF tokens on every
state-changing request, the one ``authorize`` for every page, and secure response headers.

Every dashboard route is included with :func:`guard` as a dependency (``ui.routes.mount``),
so no page checks anything itself. A page is a Cedar action like an API operation
(``dashboard.<endpoint>``), in the group ``read`` for GET and ``write`` otherwise unless the
endpoint says better with :func:`group`.

CSRF: with a session, the synchronizer token stored with the session; without one (the
loopback admin of ``trellis demo``, or the login form) a double-submit token in an HttpOnly,
SameSite=Strict cookie. Pages carry the token in ``<body hx-headers>`` (htmx sends it as
``X-CSRF-Token``) and in a hidden ``csrf`` field of every form.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trellis.api.auth import SESSION_COOKIE, Gate, is_loopback, same_origin
from trellis.auth.sessions import Session
from trellis.auth.users import SCOPES, Principal

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "PageDenied",
    "SecurityHeaders",
    "group",
    "guard",
    "may",
    "read_form",
]

CSRF_COOKIE = "trellis_csrf"
CSRF_HEADER = "x-csrf-token"
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def group(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Put a dashboard endpoint in the action group ``name`` (e.g. ``operate``)."""

    def mark(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        endpoint.__dict__["trellis_group"] = name
        return endpoint

    return mark


async def read_form(request: Request) -> dict[str, str]:
    """A urlencoded form body (what htmx and plain forms post), last value wins; cached,
    so the guard and the endpoint read the same body."""
    fields = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[-1] for key, values in fields.items()}


def session_of(request: Request, gate: Gate) -> Session | None:
    """The live session behind the request's cookie, if any."""
    cookie = request.cookies.get(SESSION_COOKIE)
    return gate.sessions.get(cookie) if cookie else None


def _csrf_token(request: Request, session: Session | None) -> str:
    if session is not None:
        return session.csrf
    token = request.cookies.get(CSRF_COOKIE)
    if not token or len(token) > 128:
        token = secrets.token_urlsafe(32)
        request.scope.setdefault("state", {})["csrf_cookie"] = token  # set by SecurityHeaders
    return token


async def _csrf_ok(request: Request, expected: str) -> bool:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        "application/x-www-form-urlencoded"
    ):
        sent = (await read_form(request)).get("csrf")
    return sent is not None and hmac.compare_digest(sent.encode(), expected.encode())


def _login_redirect(request: Request) -> HTTPException:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    location = f"/login?next={quote(target, safe='')}"
    if request.headers.get("hx-request"):
        # htmx follows HX-Redirect with a full page load instead of swapping the login form.
        return HTTPException(401, "log in again", {"HX-Redirect": location})
    if request.method == "GET":
        return HTTPException(303, "log in", {"Location": location})
    return HTTPException(401, "log in first")


async def guard(request: Request) -> Principal | None:
    """Dependency on every dashboard route: identify, check CSRF, authorise, like the API."""
    gate: Gate | None = getattr(request.app.state, "gate", None)
    if gate is None:  # the lifespan has not built it: nothing may be served yet
        raise HTTPException(503, "starting")
    endpoint = request.scope.get("endpoint")
    public = endpoint is not None and endpoint.__dict__.get("trellis_public", False)
    # A database read: off the event loop, like every other blocking call of the pages.
    session = await asyncio.to_thread(session_of, request, gate)
    expected = _csrf_token(request, session)
    request.state.csrf = expected
    if request.method in _UNSAFE and (
        not same_origin(request) or not await _csrf_ok(request, expected)
    ):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page")
    if public:
        return None
    if (
        session is not None
        and session.must_change
        and not getattr(endpoint, "__dict__", {}).get("trellis_password", False)
    ):
        # The first admin's one-time password: nothing else until it is changed.
        if request.method == "GET" and not request.headers.get("hx-request"):
            raise HTTPException(
                303, "change your password first", {"Location": "/account/password"}
            )
        raise HTTPException(403, "change your one-time password first (/account/password)")
    principal: Principal | None = session.principal if session else None
    client = request.client.host if request.client else None
    if principal is None and gate.loopback_admin and is_loopback(client):
        principal = Principal("local-admin", gate.tenant, "admin", frozenset(SCOPES), "loopback")
    if principal is None:
        if not gate.enabled:
            return None
        raise _login_redirect(request)
    request.state.principal = principal
    if principal.tenant != gate.tenant or principal.site is not None:
        # The pages read the configured tenant's whole data; until they scope by the
        # principal (as the API does), anyone else is refused rather than shown it.
        explanation = (
            f"the dashboard shows tenant {gate.tenant!r} to whole-tenant users; "
            f"{principal.name} ({principal.tenant}"
            + (f", site {principal.site}" if principal.site else "")
            + ") uses the API, which scopes every answer to its tenant and site"
        )
        if request.method == "GET" and not request.headers.get("hx-request"):
            raise PageDenied(explanation)
        raise HTTPException(403, explanation)
    op = gate.ops.get(endpoint) if endpoint is not None else None
    if op is None:
        raise HTTPException(403, "page not known to the policy schema")
    decision = gate.policies.authorize(principal, op.action, ("Tenant", gate.tenant))
    if op.changes or not decision.allowed:
        await asyncio.to_thread(
            gate.audit.append,
            principal=principal.name,
            role=principal.role,
            tenant=principal.tenant,
            via=principal.via,
            decision="allow" if decision.allowed else "deny",
            reason=decision.explanation,
            action=op.action,
            method=request.method,
            path=request.url.path,
            client=client,
        )
    if not decision.allowed:
        if request.method == "GET" and not request.headers.get("hx-request"):
            raise PageDenied(decision.explanation)
        raise HTTPException(403, decision.explanation)
    return principal


class PageDenied(HTTPException):
    """A page the policies deny: shown as a page that says why, not as JSON."""

    def __init__(self, explanation: str) -> None:
        super().__init__(403, explanation)


def may(request: Request, action: str) -> bool:
    """Whether the page's principal may do ``action`` (to show only the links that work);
    asks the same ``authorize`` the guard does. True when authentication is off."""
    gate: Gate | None = getattr(request.app.state, "gate", None)
    principal: Principal | None = getattr(request.state, "principal", None)
    if gate is None or principal is None:
        return gate is None or not gate.enabled
    return gate.policies.authorize(principal, action, ("Tenant", gate.tenant)).allowed


#: A JSON API response is never a document: it may load nothing and be framed nowhere.
_API_CSP = b"default-src 'none'; frame-ancestors 'none'"
_STATIC_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    # Any response may be gzipped for a client that asks (api.app.GzipWhenAccepted).
    (b"vary", b"Accept-Encoding"),
)
_HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")


def _is_api(path: str) -> bool:
    return path.startswith("/api/v1/") and not path.startswith(("/api/v1/docs", "/api/v1/openapi"))


def _csp(path: str, nonce: str) -> str:
    if path.startswith("/api/v1/docs"):
        # FastAPI's Swagger UI: its scripts come from a CDN and it starts with an inline script.
        return (
            "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "img-src 'self' data: https://fastapi.tiangolo.com; frame-ancestors 'none'"
        )
    # Scripts only from our own files (or carrying this response's nonce): no inline
    # handlers, no eval. Styles allow inline attributes because ECharts builds its tooltips
    # as HTML with style attributes.
    return (
        f"default-src 'self'; script-src 'self' 'nonce-{nonce}'; "
        "style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
        "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    )


class SecurityHeaders:
    """ASGI middleware: secure headers on every response, HSTS and Secure cookies over TLS,
    and the double-submit CSRF cookie a guard asked for (pure ASGI, so event streams pass)."""

    def __init__(self, app: ASGIApp, secure: bool | None = None) -> None:
        self.app = app
        self.secure = secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tls = self.secure if self.secure is not None else scope.get("scheme") == "https"
        path = str(scope.get("path", ""))
        if _is_api(path):
            csp = _API_CSP  # the hot path: no nonce to make, one constant policy
        else:
            # A fresh nonce per page: a page with an inline script puts it on the tag.
            nonce = secrets.token_urlsafe(16)
            scope.setdefault("state", {})["csp_nonce"] = nonce
            csp = _csp(path, nonce).encode()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                extra = [*_STATIC_HEADERS, (b"content-security-policy", csp)]
                if tls:
                    extra.append(_HSTS)
                headers += [(k, v) for k, v in extra if k not in present]
                token = scope.get("state", {}).get("csrf_cookie")
                if token:
                    headers.append((b"set-cookie", cookie(CSRF_COOKIE, token, tls).encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def cookie(name: str, value: str, secure: bool, max_age: int | None = None) -> str:
    """A Set-Cookie value: HttpOnly, SameSite=Strict, Path=/, Secure over TLS."""
    parts = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=Strict"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def uses_tls(request: Request, secure: bool | None) -> bool:
    """Whether cookies must be Secure: configured, or the request came over TLS."""
    return secure if secure is not None else request.url.scheme == "https"
