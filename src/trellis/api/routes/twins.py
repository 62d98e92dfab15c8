"""Device twins: desired state beside reported state, and what the device has not
applied yet (``delta``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Body, HTTPException
from fastapi.responses import Response

from trellis.api.deps import PlatformDep, TenantDep
from trellis.api.encoding import documented, json_response
from trellis.devices.twins import Twin

if TYPE_CHECKING:
    from trellis.platform import Platform

__all__ = ["router"]

router = APIRouter(tags=["devices"])


def _known(platform: Platform, tenant: str, device_id: str) -> None:
    if platform.registry.get(tenant, device_id) is None:
        raise HTTPException(404, f"unknown device {device_id!r} in tenant {tenant!r}")


@router.get("/devices/{device_id}/twin", responses=documented(Twin))
def get_twin(device_id: str, platform: PlatformDep, tenant: TenantDep) -> Response:
    """Desired and reported state with their versions, and the delta between them."""
    _known(platform, tenant, device_id)
    return json_response(platform.twins.get(tenant, device_id))


@router.patch("/devices/{device_id}/twin/desired", responses=documented(Twin))
async def patch_desired(
    device_id: str,
    platform: PlatformDep,
    tenant: TenantDep,
    patch: Annotated[dict[str, Any], Body(examples=[{"mode": "eco", "old_key": None}])],
) -> Response:
    """Merge ``patch`` into the desired state (``null`` removes a key) and send the whole
    desired document to the device on its ``config`` topic, retained."""
    _known(platform, tenant, device_id)
    if not patch:
        raise HTTPException(422, "an empty patch changes nothing")
    try:
        twin = await platform.set_desired(tenant, device_id, patch)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return json_response(twin)
