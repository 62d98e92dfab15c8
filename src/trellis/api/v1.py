"""The REST API, version 1: health, devices, telemetry, alerts, rules, ingest."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from trellis._version import __version__
from trellis.api.deps import PlatformDep, time_range
from trellis.api.encoding import documented, json_response
from trellis.bus.base import SubscriberStats
from trellis.core.clock import now_ms
from trellis.core.types import Alert, AlertStatus, Device, RawMessage
from trellis.ingest.decode import telemetry_topic
from trellis.ingest.pipeline import IngestResult, IngestStats
from trellis.ingest.quarantine import QuarantinedMessage
from trellis.rules.model import ThresholdRule
from trellis.rules.store import parse_rule
from trellis.store.base import Aggregate, Bucket, Latest, Point

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")


class Health(msgspec.Struct, frozen=True):
    """Liveness and the few numbers an operator checks first."""

    status: str
    version: str
    devices: int
    ingest_queued: int
    readings_per_s: float


class Stats(msgspec.Struct, frozen=True):
    """Pipeline counters and the state of every bus subscriber."""

    ingest: IngestStats
    bus: list[SubscriberStats]
    readings_per_s: float
    stored_readings: int


class DeviceIn(BaseModel):
    """A device to register or update."""

    model: str = Field(examples=["pump"])
    name: str = ""
    site: str = ""
    attributes: dict[str, Any] = {}


class ActorIn(BaseModel):
    """Who performs an action on an alert (authentication replaces this later)."""

    by: str = Field(default="operator", min_length=1, max_length=128)


@router.get("/health", responses=documented(Health), tags=["system"])
def health(platform: PlatformDep) -> Response:
    """Liveness, version, and the ingest queue."""
    return json_response(
        Health(
            status="ok",
            version=__version__,
            devices=len(platform.registry.find(platform.tenant)),
            ingest_queued=platform.pipeline.stats().queued,
            readings_per_s=round(platform.live.rate(), 1),
        )
    )


@router.get("/stats", responses=documented(Stats), tags=["system"])
def stats(platform: PlatformDep) -> Response:
    """Counters of ingest and the bus: throughput, duplicates, quarantine, waits."""
    return json_response(
        Stats(
            ingest=platform.pipeline.stats(),
            bus=platform.bus.stats(),
            readings_per_s=round(platform.live.rate(), 1),
            stored_readings=platform.store.count(platform.tenant),
        )
    )


@router.get("/devices", responses=documented(list[Device]), tags=["devices"])
def list_devices(platform: PlatformDep) -> Response:
    """Every device of the tenant, ordered by id."""
    return json_response(platform.registry.find(platform.tenant))


@router.get("/devices/{device_id}", responses=documented(Device), tags=["devices"])
def get_device(device_id: str, platform: PlatformDep) -> Response:
    """One device."""
    return json_response(platform.registry.require(platform.tenant, device_id))


@router.put("/devices/{device_id}", responses=documented(Device), tags=["devices"])
def put_device(device_id: str, body: DeviceIn, platform: PlatformDep) -> Response:
    """Register a device, or update it; the model must be known."""
    try:
        device = platform.registry.register(
            Device(
                tenant=platform.tenant,
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


@router.get("/devices/{device_id}/latest", responses=documented(list[Latest]), tags=["telemetry"])
def latest(device_id: str, platform: PlatformDep) -> Response:
    """The newest stored value of every metric of the device."""
    platform.registry.require(platform.tenant, device_id)
    return json_response(platform.store.latest(platform.tenant, device_id))


@router.get(
    "/devices/{device_id}/telemetry/{metric}", responses=documented(list[Point]), tags=["telemetry"]
)
def telemetry(
    device_id: str,
    metric: str,
    platform: PlatformDep,
    start: Annotated[str | None, Query(description="epoch ms or RFC 3339; default end-1h")] = None,
    end: Annotated[str | None, Query(description="epoch ms or RFC 3339; default now")] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> Response:
    """Raw values in ``[start, end)``, oldest first, as ``[ts, value]`` pairs."""
    platform.registry.require(platform.tenant, device_id)
    start_ms, end_ms = time_range(start, end)
    return json_response(
        platform.store.query(platform.tenant, device_id, metric, start_ms, end_ms, limit)
    )


@router.get(
    "/devices/{device_id}/telemetry/{metric}/aggregate",
    responses=documented(list[Bucket]),
    tags=["telemetry"],
)
def aggregate(
    device_id: str,
    metric: str,
    platform: PlatformDep,
    start: Annotated[str | None, Query(description="epoch ms or RFC 3339; default end-1h")] = None,
    end: Annotated[str | None, Query(description="epoch ms or RFC 3339; default now")] = None,
    bucket_ms: Annotated[int, Query(ge=1000, le=31 * 86_400_000)] = 60_000,
    fn: Aggregate = Aggregate.AVG,
) -> Response:
    """Values reduced per time bucket (``[bucket_start, value]`` pairs)."""
    platform.registry.require(platform.tenant, device_id)
    start_ms, end_ms = time_range(start, end)
    if (end_ms - start_ms) // bucket_ms > 100_000:
        raise HTTPException(422, "more than 100000 buckets; widen bucket_ms or narrow the range")
    return json_response(
        platform.store.aggregate(
            platform.tenant, device_id, metric, start_ms, end_ms, bucket_ms, fn
        )
    )


@router.get("/alerts", responses=documented(list[Alert]), tags=["alerts"])
def list_alerts(
    platform: PlatformDep,
    status: Annotated[list[AlertStatus] | None, Query()] = None,
    device: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """Alerts, newest first; filter by status (repeatable) and device."""
    return json_response(
        platform.alerts.find(
            platform.tenant,
            statuses=set(status) if status else None,
            device=device,
            limit=limit,
            offset=offset,
        )
    )


@router.get("/alerts/{alert_id}", responses=documented(Alert), tags=["alerts"])
def get_alert(alert_id: int, platform: PlatformDep) -> Response:
    """One alert."""
    return json_response(platform.alerts.get(platform.tenant, alert_id))


@router.post("/alerts/{alert_id}/acknowledge", responses=documented(Alert), tags=["alerts"])
def acknowledge_alert(
    alert_id: int, platform: PlatformDep, body: ActorIn | None = None
) -> Response:
    """Record that someone has seen the alert (idempotent)."""
    actor = body.by if body else "operator"
    return json_response(platform.alerts.acknowledge(platform.tenant, alert_id, actor))


@router.post("/alerts/{alert_id}/resolve", responses=documented(Alert), tags=["alerts"])
def resolve_alert(alert_id: int, platform: PlatformDep, body: ActorIn | None = None) -> Response:
    """Close the alert (idempotent)."""
    actor = body.by if body else "operator"
    return json_response(platform.alerts.resolve(platform.tenant, alert_id, actor))


@router.get("/rules", responses=documented(list[ThresholdRule]), tags=["rules"])
def list_rules(platform: PlatformDep) -> Response:
    """The tenant's rules."""
    return json_response([rule for _, rule in platform.rules.find(platform.tenant)])


@router.put("/rules/{rule_id}", responses=documented(ThresholdRule), tags=["rules"])
async def put_rule(rule_id: str, request: Request, platform: PlatformDep) -> Response:
    """Create or replace a rule; it is validated before it is saved."""
    body = await request.body()
    try:
        rule = parse_rule(body)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if rule.id != rule_id:
        raise HTTPException(422, f"rule id {rule.id!r} in the body differs from {rule_id!r}")
    await asyncio.to_thread(platform.rules.put, platform.tenant, rule)
    await asyncio.to_thread(platform.rule_engine.reload)
    return json_response(rule)


@router.delete("/rules/{rule_id}", status_code=204, tags=["rules"])
async def delete_rule(rule_id: str, platform: PlatformDep) -> Response:
    """Delete a rule; its open alerts stay open until resolved."""
    await asyncio.to_thread(platform.rules.delete, platform.tenant, rule_id)
    await asyncio.to_thread(platform.rule_engine.reload)
    return Response(status_code=204)


@router.get("/quarantine", responses=documented(list[QuarantinedMessage]), tags=["ingest"])
def list_quarantine(
    platform: PlatformDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """Refused messages, newest first, with the reason and the original bytes (base64)."""
    return json_response(platform.quarantine.find(platform.tenant, limit=limit, offset=offset))


@router.post(
    "/telemetry/{device_id}",
    responses={
        **documented(IngestResult, 202, "Stored (durably, before this response)"),
        **documented(IngestResult, 422, "Quarantined; `reason` says why"),
    },
    status_code=202,
    tags=["ingest"],
)
async def post_telemetry(device_id: str, request: Request, platform: PlatformDep) -> Response:
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
        topic=telemetry_topic(platform.tenant, device_id),
        payload=bytes(body),
        received_ms=now_ms(),
    )
    result = await platform.pipeline.submit_and_wait(raw)
    return json_response(result, 422 if result.quarantined else 202)
