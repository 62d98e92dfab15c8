"""Device commands: ``POST /api/v1/devices/{id}/commands``, answered over MQTT 5."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response
from pydantic import BaseModel, Field

from trellis.api.deps import PlatformDep, TenantDep
from trellis.api.encoding import documented, json_response
from trellis.protocols.mqtt import CommandResult

__all__ = ["CommandRequest", "router"]

router = APIRouter(tags=["devices"])


class CommandRequest(BaseModel):
    """A command for one device; the answer must come within ``timeout_s``."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    args: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float = Field(default=10.0, gt=0, le=300)


@router.post("/devices/{device_id}/commands", responses=documented(CommandResult))
async def send_command(
    device_id: str, body: CommandRequest, platform: PlatformDep, tenant: TenantDep
) -> Response:
    """Publish the command with a response topic and correlation data; wait for the answer.

    Always 200 once the command was sent: ``outcome`` says ``answered``, ``timed_out``
    or ``device_error`` (with ``reason``).
    """
    if platform.registry.get(tenant, device_id) is None:
        raise HTTPException(404, f"unknown device {device_id!r} in tenant {tenant!r}")
    gateway = platform.mqtt
    if gateway is None:
        raise HTTPException(
            503, "commands need an MQTT broker: this process talks to none (TRELLIS_MQTT__URL)"
        )
    try:
        result = await gateway.command(tenant, device_id, body.name, body.args, body.timeout_s)
    except OverflowError as exc:
        raise HTTPException(429, str(exc)) from None
    return json_response(result)
