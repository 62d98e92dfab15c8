"""Authentication and audit routes: log in for a token, read and verify the audit log."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from trellis.api.auth import Gate, public
from trellis.api.deps import TenantDep
from trellis.api.encoding import documented, json_response
from trellis.auth.audit import check
from trellis.auth.users import SCOPES

__all__ = ["LoginIn", "router"]

router = APIRouter(tags=["auth"])
audit_router = APIRouter(tags=["audit"])
log = logging.getLogger(__name__)


class LoginIn(BaseModel):
    """A user's password exchanged for an API token."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    scopes: list[str] = Field(default_factory=lambda: ["read"], min_length=1)
    days: float = Field(default=1.0, gt=0, le=3650)


class TokenOut(msgspec.Struct):
    """The token; shown once, only its digest is stored."""

    token: str
    scopes: list[str]


class AuditVerified(msgspec.Struct):
    """The chain checked from the first entry."""

    entries: int
    ok: bool
    first_bad_line: int | None
    reason: str | None
    checkpoints: int = 0  # signed by the platform key, all verified
    unprotected: int = 0  # entries after the newest checkpoint


@router.post("/auth/token", responses=documented(TokenOut, 201, "Created"), status_code=201)
@public
def login(body: LoginIn, request: Request) -> Response:
    """Exchange a username and password for a scoped, expiring token (rate limited)."""
    gate: Gate = request.app.state.gate
    client = request.client.host if request.client else "?"
    wait = gate.limiter.retry_after(client, body.username)
    if wait:
        raise HTTPException(
            429, f"too many failed logins; retry in {wait} s", {"Retry-After": str(wait)}
        )
    bad = sorted(set(body.scopes) - set(SCOPES))
    if bad:
        raise HTTPException(422, f"unknown scope(s) {bad}; choose from {', '.join(SCOPES)}")
    principal = gate.users.login(body.username, body.password)
    if principal is None:
        log.info("failed login for %r from %s (token endpoint)", body.username, client)
        gate.limiter.failed(client, body.username)
        gate.audit.append(
            principal=body.username,
            decision="deny",
            reason="bad credentials",
            action="auth.login",
            method="POST",
            path=request.url.path,
            client=client,
        )
        raise HTTPException(401, "wrong username or password")
    token = gate.users.issue_token(principal.name, body.scopes, body.days)
    gate.audit.append(
        principal=principal.name,
        tenant=principal.tenant,
        decision="allow",
        reason="password",
        action="auth.login",
        method="POST",
        path=request.url.path,
        client=client,
    )
    return json_response(TokenOut(token, sorted(set(body.scopes))), 201)


@audit_router.get("/audit", responses=documented(list[dict[str, Any]]))
def audit_entries(
    request: Request, tenant: TenantDep, limit: Annotated[int, Query(ge=1, le=10_000)] = 100
) -> Response:
    """The newest audit entries of the caller's tenant, newest first."""
    gate: Gate = request.app.state.gate
    return json_response(gate.audit.entries(limit, tenant=tenant))


@audit_router.get("/audit/verify", responses=documented(AuditVerified))
def audit_verify(request: Request) -> Response:
    """Check the hash chain and the signed checkpoints; name the first entry that was
    edited, deleted or moved, or the range cut off the end."""
    gate: Gate = request.app.state.gate
    if not gate.audit.path.exists():
        return json_response(AuditVerified(0, True, None, None))
    key = gate.audit.key.public_key() if gate.audit.key is not None else None
    found = check(gate.audit.path, key, require_checkpoint_file=True)
    broken = found.broken
    return json_response(
        AuditVerified(
            found.entries,
            broken is None,
            broken.line if broken else None,
            broken.reason if broken else None,
            found.checkpoints,
            found.unprotected,
        )
    )
