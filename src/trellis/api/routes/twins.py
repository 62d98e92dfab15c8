"""Device twins: desired state beside reported state, and what the device has not
applied yet (``delta``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException
from fastapi.responses import Response

from trellis.api.deps import PlatformDep
from trellis.api.encoding import documented, json_response
from trellis.devices.twins import Twin

__all__ = ["router"]

router = APIRouter(tags=["devices"])


def _known(platform: PlatformDep, device_id: str) -> None:
    if platform.registry.get(platform.tenant, device_id) is None:
        raise HTTPException(404, f"unknown device {device_id!r} in tenant {platform.tenant!r}")


@router.get("/devices/{device_id}/twin", responses=documented(Twin))
def get_twin(device_id: str, platform: PlatformDep) -> Response:
    """Desired and reported state with their versions, and the delta between them."""
    _known(platform, device_id)
    return json_response(platform.twins.get(platform.tenant, device_id))


@router.patch("/devices/{device_id}/twin/desired", responses=documented(Twin))
async def patch_desired(
    device_id: str,
    platform: PlatformDep,
    patch: Annotated[dict[str, Any], Body(examples=[{"mode": "eco", "old_key": None}])],
) -> Response:
    """Merge ``patch`` into the desired state (``null`` removes a key) and send the whole
    desired document to the device on its ``config`` topic, retained."""
    _known(platform, device_id)
    if not patch:
        raise HTTPException(422, "an empty patch changes nothing")
    try:
        twin = await platform.set_desired(platform.tenant, device_id, patch)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return json_response(twin)
