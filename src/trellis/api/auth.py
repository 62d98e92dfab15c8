"""The API's one gate: who is calling (bearer token or the loopback admin), may they do this
operation (Cedar, through :meth:`PolicyEngine.authorize`), and the audit entry for changes."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from trellis.auth.audit import AuditLog
from trellis.auth.limits import LoginLimiter
from trellis.auth.oidc import OidcVerifier, looks_like_jwt
from trellis.auth.policy import PolicyEngine
from trellis.auth.sessions import SessionStore
from trellis.auth.users import SCOPES, Principal, TokenError, UserStore

log = logging.getLogger(__name__)

__all__ = [
    "SESSION_COOKIE",
    "Gate",
    "Operation",
    "authorized",
    "is_loopback",
    "operations",
    "public",
    "same_origin",
    "site_scoped",
]

_READ = frozenset({"GET", "HEAD", "OPTIONS"})
#: The dashboard's session cookie; the API accepts it too, so the pages' scripts can call it.
SESSION_COOKIE = "trellis_session"
#: Tags whose changing operations are an operator's work, or a data scientist's.
_OPERATE = frozenset({"alerts", "commands"})
_ML = frozenset({"models", "fabric"})


def public(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Mark an endpoint that needs no principal (only the login that issues one)."""
    endpoint.__dict__["trellis_public"] = True
    return endpoint


def site_scoped(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Mark an endpoint that filters its rows by the caller's site (``api.deps.SiteDep``):
    the only ones a principal limited to a site may call, whatever the policies say."""
    endpoint.__dict__["trellis_site_scoped"] = True
    return endpoint


@dataclass(frozen=True, slots=True)
class Operation:
    """One API operation as the policies see it."""

    action: str  # "<tag>.<endpoint>", one per operation
    group: str  # the action group (and the token scope it needs)
    changes: bool  # audited when true


def _group(tag: str, method: str) -> str:
    if tag == "audit":
        return "audit"
    if tag == "users":
        return "admin"
    if method in _READ:
        return "read"
    if tag in _OPERATE:
        return "operate"
    if tag in _ML:
        return "ml"
    return "write"


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route, _ in _tagged_routes(routes, []):
        yield route


def _tagged_routes(routes: list[Any], tags: list[Any]) -> Iterator[tuple[APIRoute, list[Any]]]:
    """Every APIRoute with the tags it serves under (those of the routers including it)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route, [*tags, *route.tags]
        elif hasattr(route, "include_context"):  # FastAPI >= 0.165 keeps included routers
            context = route.include_context
            yield from _tagged_routes(context.included_router.routes, [*tags, *context.tags])
        elif isinstance(route, APIRouter):
            yield from _tagged_routes(route.routes, tags)


def operations(router: APIRouter) -> dict[Callable[..., Any], Operation]:
    """Every guarded operation of ``router`` keyed by its endpoint; refuses ambiguous names."""
    found: dict[Callable[..., Any], Operation] = {}
    names: set[str] = set()
    for route, tags in _tagged_routes(router.routes, []):
        if route.endpoint.__dict__.get("trellis_public"):
            continue
        tag = str(tags[0]) if tags else "system"
        method = sorted(route.methods or {"GET"})[0]
        action = f"{tag}.{route.endpoint.__name__}"
        if action in names and route.endpoint not in found:
            raise RuntimeError(f"two API operations share the action name {action!r}")
        names.add(action)
        kind = route.endpoint.__dict__.get("trellis_group") or _group(tag, method)
        found[route.endpoint] = Operation(action, kind, method not in _READ)
    return found


@dataclass
class Gate:
    """What the guard needs, built once in the app's lifespan."""

    enabled: bool
    loopback_admin: bool
    tenant: str
    users: UserStore
    policies: PolicyEngine
    audit: AuditLog
    ops: dict[Callable[..., Any], Operation]
    sessions: SessionStore
    limiter: LoginLimiter
    oidc: OidcVerifier | None = None


_LOCAL = Principal("local-admin", "", "admin", frozenset(SCOPES), "loopback")


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` is 127.0.0.0/8 or ::1."""
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def same_origin(request: Request) -> bool:
    """Whether a request that acts on ambient credentials comes from our own pages.

    Browsers label cross-site requests with ``Sec-Fetch-Site`` (or at least ``Origin``);
    clients without either (curl, scripts) are not browsers acting for someone else.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"


async def _principal(gate: Gate, request: Request) -> Principal:
    """Who is calling. Runs on the event loop: a cached API token costs no I/O; a token
    seen for the first time, a JWT (its issuer's keys may need fetching) and a session
    (a database read, an idle-time touch) go to the thread pool."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(
                401, "use 'Authorization: Bearer <token>'", {"WWW-Authenticate": "Bearer"}
            )
        token = token.strip()
        try:
            if gate.oidc is not None and looks_like_jwt(token):
                return await run_in_threadpool(gate.oidc.verify, token)
            cached = gate.users.cached(token)
            if cached is not None:
                return cached
            return await run_in_threadpool(gate.users.resolve, token)
        except TokenError as exc:
            # The reason names what is wrong with the token, never the token itself.
            log.info("refused a bearer token from %s: %s", request.client, exc)
            raise HTTPException(
                401, f"invalid token: {exc}", {"WWW-Authenticate": "Bearer"}
            ) from None
    # Ambient credentials (the dashboard's session cookie, the loopback admin) act only for
    # our own pages: a change needs the session's CSRF token and a same-origin request.
    unsafe = request.method not in _READ
    if unsafe and not same_origin(request):
        raise HTTPException(403, "cross-site request refused")
    cookie = request.cookies.get(SESSION_COOKIE)
    session = await run_in_threadpool(gate.sessions.get, cookie) if cookie else None
    if session is not None:
        if unsafe and not session.csrf_ok(request.headers.get("x-csrf-token")):
            raise HTTPException(403, "missing or wrong CSRF token (X-CSRF-Token)")
        return session.principal
    client = request.client.host if request.client else None
    if gate.loopback_admin and is_loopback(client):
        return Principal(_LOCAL.name, gate.tenant, "admin", _LOCAL.scopes, "loopback")
    raise HTTPException(401, "authentication required", {"WWW-Authenticate": "Bearer"})


async def authorized(request: Request) -> Principal | None:
    """FastAPI dependency on every /api/v1 route: authenticate, authorise, audit changes.

    ``async``: a sync dependency would cost every request a hop through the thread pool
    and back (measured: most of the CPU of a cheap request). What stays on the event loop
    is CPU-bound (a cached Cedar decision or one evaluation) or a short local append (the
    audit line); lookups that may wait go to the thread pool inside :func:`_principal`."""
    gate: Gate = request.app.state.gate
    endpoint = request.scope.get("endpoint")
    if endpoint is not None and getattr(endpoint, "__dict__", {}).get("trellis_public"):
        return None
    op = gate.ops.get(endpoint) if endpoint is not None else None
    if op is None:  # a route added after start: refuse rather than guess
        raise HTTPException(403, "operation not known to the policy schema")
    client = request.client.host if request.client else None
    record = {
        "action": op.action,
        "method": request.method,
        "path": request.scope["path"],  # not request.url: that builds a whole URL object
        "client": client,
    }
    if not gate.enabled:
        if op.changes:
            gate.audit.append(
                principal="anonymous", decision="allow", reason="auth disabled", **record
            )
        return None
    try:
        principal = await _principal(gate, request)
    except HTTPException as exc:
        if op.changes:
            gate.audit.append(principal=None, decision="deny", reason=str(exc.detail), **record)
        raise
    who = {
        "principal": principal.name,
        "role": principal.role,
        "tenant": principal.tenant,
        "via": principal.via,
    }
    if principal.site is not None:
        who["site"] = principal.site
    if op.group not in principal.scopes:
        reason = f"token lacks scope {op.group!r}"
        if op.changes:
            gate.audit.append(**who, decision="deny", reason=reason, **record)
        raise HTTPException(403, reason)
    if principal.site is not None and not endpoint.__dict__.get("trellis_site_scoped"):
        reason = f"{op.action} is not limited to a site; {principal.name!r} works at one site"
        gate.audit.append(**who, decision="deny", reason=reason, **record)
        raise HTTPException(403, reason)
    # The resource is the caller's own tenant (or site): every query of the request is scoped
    # to it (api.deps.TenantDep, SiteDep), so no request can name another tenant's data.
    resource = (
        ("Site", principal.site) if principal.site is not None else ("Tenant", principal.tenant)
    )
    decision = gate.policies.authorize(principal, op.action, resource)
    if op.changes or not decision.allowed:
        gate.audit.append(
            **who,
            decision="allow" if decision.allowed else "deny",
            reason=decision.explanation,
            **record,
        )
    if not decision.allowed:
        raise HTTPException(403, decision.explanation)
    request.state.principal = principal
    return principal
