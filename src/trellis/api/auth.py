"""The API's one gate: who is calling (bearer token or the loopback admin), may they do this
operation (Cedar, through :meth:`PolicyEngine.authorize`), and the audit entry for changes."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.routing import APIRoute

from trellis.auth.audit import AuditLog
from trellis.auth.policy import PolicyEngine
from trellis.auth.users import SCOPES, Principal, TokenError, UserStore

__all__ = ["Gate", "Operation", "authorized", "operations", "public", "site_scoped"]

_READ = frozenset({"GET", "HEAD", "OPTIONS"})
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
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "include_context"):  # FastAPI >= 0.165 keeps included routers
            yield from _api_routes(route.include_context.included_router.routes)
        elif isinstance(route, APIRouter):
            yield from _api_routes(route.routes)


def operations(router: APIRouter) -> dict[Callable[..., Any], Operation]:
    """Every guarded operation of ``router`` keyed by its endpoint; refuses ambiguous names."""
    found: dict[Callable[..., Any], Operation] = {}
    names: set[str] = set()
    for route in _api_routes(router.routes):
        if route.endpoint.__dict__.get("trellis_public"):
            continue
        tag = str(route.tags[0]) if route.tags else "system"
        method = sorted(route.methods or {"GET"})[0]
        action = f"{tag}.{route.endpoint.__name__}"
        if action in names and route.endpoint not in found:
            raise RuntimeError(f"two API operations share the action name {action!r}")
        names.add(action)
        found[route.endpoint] = Operation(action, _group(tag, method), method not in _READ)
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


_LOCAL = Principal("local-admin", "", "admin", frozenset(SCOPES), "loopback")


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _principal(gate: Gate, request: Request) -> Principal:
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(
                401, "use 'Authorization: Bearer <token>'", {"WWW-Authenticate": "Bearer"}
            )
        try:
            return gate.users.resolve(token.strip())
        except TokenError as exc:
            raise HTTPException(
                401, f"invalid token: {exc}", {"WWW-Authenticate": "Bearer"}
            ) from None
    client = request.client.host if request.client else None
    if gate.loopback_admin and _is_loopback(client):
        return Principal(_LOCAL.name, gate.tenant, "admin", _LOCAL.scopes, "loopback")
    raise HTTPException(401, "authentication required", {"WWW-Authenticate": "Bearer"})


def authorized(request: Request) -> Principal | None:
    """FastAPI dependency on every /api/v1 route: authenticate, authorise, audit changes."""
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
        "path": request.url.path,
        "client": client,
    }
    if not gate.enabled:
        if op.changes:
            gate.audit.append(
                principal="anonymous", decision="allow", reason="auth disabled", **record
            )
        return None
    try:
        principal = _principal(gate, request)
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
