"""Request-scoped access to the running platform, and the query types routes share."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request

from trellis.api.auth import authorized
from trellis.auth.users import Principal
from trellis.core.clock import now_ms, parse_timestamp
from trellis.core.errors import NotFoundError
from trellis.core.types import Device
from trellis.platform import Platform

__all__ = [
    "MAX_ROW_ID",
    "PlatformDep",
    "RowId",
    "SiteDep",
    "TenantDep",
    "get_platform",
    "get_site",
    "get_tenant",
    "require_device",
    "time_range",
]

#: The largest id a database row can have (SQLite and PostgreSQL BIGINT): larger ids in a
#: request are refused with 422 instead of overflowing the driver (a 500).
MAX_ROW_ID = 2**63 - 1


async def get_platform(request: Request) -> Platform:
    """The platform the app's lifespan started (``async``: a sync dependency would cost
    every request a hop through the thread pool for one attribute read)."""
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]


async def get_tenant(
    request: Request, principal: Annotated[Principal | None, Depends(authorized)]
) -> str:
    """The tenant every query of this request is scoped to: the caller's own.

    It comes from the authenticated principal, never from a client-supplied parameter, so a
    route cannot read another tenant's rows by forgetting a check. Only with authentication
    disabled (no principal) is it the configured ``tenant``. ``authorized`` is the same
    dependency the router runs; FastAPI runs it once per request. ``async`` for the same
    reason as :func:`get_platform`.
    """
    if principal is not None:
        return principal.tenant
    tenant: str = request.app.state.gate.tenant
    return tenant


#: Every route that reads or writes tenant data takes ``tenant: TenantDep``.
TenantDep = Annotated[str, Depends(get_tenant)]


def _instant(value: str, name: str) -> int:
    try:
        return parse_timestamp(int(value) if value.lstrip("-").isdigit() else value)
    except ValueError as exc:
        raise HTTPException(422, f"query parameter {name!r}: {exc}") from None


def time_range(
    start: str | None, end: str | None, default_span_ms: int = 3_600_000
) -> tuple[int, int]:
    """``[start, end)`` in epoch ms from epoch-ms or RFC 3339 query values.

    ``end`` defaults to now, ``start`` to ``default_span_ms`` before ``end``.
    """
    end_ms = now_ms() + 1 if end is None else _instant(end, "end")
    start_ms = end_ms - default_span_ms if start is None else _instant(start, "start")
    if start_ms >= end_ms:
        raise HTTPException(422, f"start ({start_ms}) must be before end ({end_ms})")
    return start_ms, end_ms


#: A numeric row id in a path (alerts, quarantine entries).
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="the row's numeric id")]


async def get_site(principal: Annotated[Principal | None, Depends(authorized)]) -> str | None:
    """The site a principal is limited to (a contractor), or ``None`` for the whole tenant.

    Only endpoints marked :func:`trellis.api.auth.site_scoped` take it; the gate refuses a
    site-limited principal every other endpoint."""
    return principal.site if principal is not None else None


#: The caller's site, for routes that filter rows by it (see :func:`get_site`).
SiteDep = Annotated[str | None, Depends(get_site)]


def require_device(platform: Platform, tenant: str, site: str | None, device_id: str) -> Device:
    """The device, or 404 when it is not in the tenant or (for a site-limited caller) not at
    the caller's site: a device elsewhere is as unknown as a missing one."""
    device = platform.registry.require(tenant, device_id)
    if site is not None and device.site != site:
        raise NotFoundError("device", device_id)
    return device
