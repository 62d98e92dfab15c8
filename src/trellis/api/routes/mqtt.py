"""MQTT routes: the gateway's state, per-device sequence gaps."""

from __future__ import annotations

import msgspec
from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from trellis.api.deps import PlatformDep, TenantDep
from trellis.api.encoding import documented, json_response
from trellis.platform import Platform
from trellis.protocols.mqtt import DeviceSequence, MqttGateway, MqttStatus

__all__ = ["router"]

router = APIRouter(tags=["mqtt"])


def _gateway(platform: Platform) -> MqttGateway:
    if platform.mqtt is None:
        raise HTTPException(
            404, "this process talks to no MQTT broker (set TRELLIS_MQTT__URL, or run the demo)"
        )
    return platform.mqtt


@router.get("/mqtt/status", responses=documented(MqttStatus))
def mqtt_status(platform: PlatformDep, tenant: TenantDep) -> Response:
    """Connected or not, subscriptions, msg/s, lag, refusals and sequence gaps per device
    (the per-device figures of the caller's tenant only)."""
    found = _gateway(platform).status()
    prefix = f"{tenant}/"
    return json_response(
        msgspec.structs.replace(
            found,
            sequences=[s for s in found.sequences if s.tenant == tenant],
            rate_limited_by_device={
                k: n for k, n in found.rate_limited_by_device.items() if k.startswith(prefix)
            },
        )
    )


@router.get("/mqtt/devices/{device_id}/sequence", responses=documented(DeviceSequence))
def device_sequence(device_id: str, platform: PlatformDep, tenant: TenantDep) -> Response:
    """One device's sequence numbers: last seen, gaps, repeats, restarts."""
    found = _gateway(platform).sequences.get(tenant, device_id)
    if found is None:
        raise HTTPException(404, f"no numbered message from device {device_id!r} yet")
    return json_response(found)
