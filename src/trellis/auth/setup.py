"""Building the API gate at start: policies loaded and validated, first admin created."""

from __future__ import annotations

import secrets
import sys

import sqlalchemy as sa
from fastapi import APIRouter

from trellis.api.auth import Gate, operations
from trellis.auth.audit import open_audit
from trellis.auth.limits import LoginLimiter
from trellis.auth.oidc import OidcVerifier
from trellis.auth.policy import PolicyEngine, policy_files
from trellis.auth.sessions import SessionStore
from trellis.auth.users import UserStore
from trellis.core.config import Settings
from trellis.core.errors import ConfigError

__all__ = ["bootstrap_admin", "guarded_router", "open_gate", "policy_engine"]


def guarded_router() -> APIRouter:
    """Every guarded operation: the REST API's and the dashboard's pages (one schema)."""
    from trellis.api import routes
    from trellis.ui.routes import dashboard_router

    router = APIRouter()
    router.include_router(routes.router)
    router.include_router(dashboard_router())
    return router


def policy_engine(settings: Settings, router: APIRouter) -> PolicyEngine:
    """The configured policies validated against the schema of ``router``'s operations."""
    actions = {op.action: op.group for op in operations(router).values()}
    return PolicyEngine(
        actions, policy_files(settings.auth.policy_dir), settings.auth.decision_cache
    )


def bootstrap_admin(users: UserStore, tenant: str) -> str | None:
    """On first start, create ``admin`` and return its one-time password (else ``None``)."""
    if users.count():
        return None
    password = secrets.token_urlsafe(18)
    users.add("admin", tenant, "admin", password, must_change=True)
    return password


def open_gate(settings: Settings, engine: sa.Engine, router: APIRouter) -> Gate:
    """The gate the API's dependency uses; prints the first admin's password once."""
    if settings.auth.loopback_admin and settings.http.host not in ("127.0.0.1", "::1", "localhost"):
        raise ConfigError("auth.loopback_admin needs http.host to be a loopback address")
    users = UserStore(engine, token_cache_s=settings.auth.token_cache_seconds)
    password = bootstrap_admin(users, settings.tenant) if settings.auth.enabled else None
    if password is not None:
        # Printed once, to the terminal only (never logged): it is not stored anywhere.
        sys.stderr.write(
            f"\ntrellis: created user 'admin' (tenant {settings.tenant!r}); one-time password: "
            f"{password}\n  get a token: trellis users token admin --scope read --scope write\n\n"
        )
    auth = settings.auth
    return Gate(
        enabled=settings.auth.enabled,
        loopback_admin=settings.auth.loopback_admin,
        tenant=settings.tenant,
        users=users,
        policies=policy_engine(settings, router),
        audit=open_audit(settings),
        ops=operations(router),
        oidc=OidcVerifier(auth.oidc, settings.tenant) if auth.oidc else None,
        sessions=SessionStore(engine, auth.session_hours * 3600, auth.session_idle_minutes * 60),
        limiter=LoginLimiter(auth.login_per_ip_per_min, auth.login_per_user_per_min),
    )
