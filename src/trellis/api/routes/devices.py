"""Device routes: the registry."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response
from pydantic import BaseModel, Field

from trellis.api.auth import site_scoped
from trellis.api.deps import PlatformDep, SiteDep, TenantDep, require_device
from trellis.api.encoding import documented, json_response
from trellis.core.types import Device

__all__ = ["DeviceIn", "router"]

router = APIRouter(tags=["devices"])


class DeviceIn(BaseModel):
    """A device to register or update."""

    model: str = Field(examples=["pump"])
    name: str = ""
    site: str = ""
    attributes: dict[str, Any] = {}


@router.get("/devices", responses=documented(list[Device]))
@site_scoped
def list_devices(platform: PlatformDep, tenant: TenantDep, site: SiteDep) -> Response:
    """Every device of the tenant (of the caller's site, for a contractor), ordered by id."""
    found = platform.registry.find(tenant)
    return json_response(found if site is None else [d for d in found if d.site == site])


@router.get("/devices/{device_id}", responses=documented(Device))
@site_scoped
def get_device(device_id: str, platform: PlatformDep, tenant: TenantDep, site: SiteDep) -> Response:
    """One device."""
    return json_response(require_device(platform, tenant, site, device_id))


@router.put("/devices/{device_id}", responses=documented(Device))
def put_device(
    device_id: str, body: DeviceIn, platform: PlatformDep, tenant: TenantDep
) -> Response:
    """Register a device, or update it; the model must be known."""
    try:
        device = platform.registry.register(
            Device(
                tenant=tenant,
                id=device_id,
                model=body.model,
                name=body.name,
                site=body.site,
                attributes=body.attributes,
            )
        )
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return json_response(device)
