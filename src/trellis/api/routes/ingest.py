"""Ingest routes: telemetry over HTTP, and the quarantine."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from trellis.api.deps import MAX_ROW_ID, PlatformDep, TenantDep
from trellis.api.encoding import documented, json_response
from trellis.core.clock import now_ms
from trellis.core.types import RawMessage
from trellis.ingest.decode import telemetry_topic
from trellis.ingest.pipeline import IngestResult
from trellis.ingest.quarantine import QuarantinedMessage

__all__ = ["router"]

router = APIRouter(tags=["ingest"])


@router.get("/quarantine", responses=documented(list[QuarantinedMessage]))
def list_quarantine(
    platform: PlatformDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_ROW_ID)] = 0,
) -> Response:
    """Refused messages, newest first, with the reason and the original bytes (base64)."""
    return json_response(platform.quarantine.find(tenant, limit=limit, offset=offset))


@router.post(
    "/telemetry/{device_id}",
    responses={
        **documented(IngestResult, 202, "Stored (durably, before this response)"),
        **documented(IngestResult, 422, "Quarantined; `reason` says why"),
    },
    status_code=202,
)
async def post_telemetry(
    device_id: str, request: Request, platform: PlatformDep, tenant: TenantDep
) -> Response:
    """Send one telemetry message over HTTP, as a device without MQTT would.

    The body is the same JSON as on MQTT. The response comes after the batch holding
    the message has committed: 202 means stored, 422 means quarantined with a reason.
    """
    limit = platform.pipeline.limits.max_payload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"payload of {declared} bytes exceeds the limit of {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"payload exceeds the limit of {limit} bytes")
    raw = RawMessage(
        id=str(uuid.uuid4()),
        source="http",
        topic=telemetry_topic(tenant, device_id),
        payload=bytes(body),
        received_ms=now_ms(),
    )
    result = await platform.pipeline.submit_and_wait(raw)
    return json_response(result, 422 if result.quarantined else 202)
