"""Alert routes: the inbox and the actions operators take."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from trellis.api.deps import PlatformDep
from trellis.api.encoding import documented, json_response
from trellis.core.types import Alert, AlertStatus

__all__ = ["ActorIn", "router"]

router = APIRouter(tags=["alerts"])


class ActorIn(BaseModel):
    """Who performs an action on an alert (authentication replaces this later)."""

    by: str = Field(default="operator", min_length=1, max_length=128)


@router.get("/alerts", responses=documented(list[Alert]))
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


@router.get("/alerts/{alert_id}", responses=documented(Alert))
def get_alert(alert_id: int, platform: PlatformDep) -> Response:
    """One alert."""
    return json_response(platform.alerts.get(platform.tenant, alert_id))


@router.post("/alerts/{alert_id}/acknowledge", responses=documented(Alert))
def acknowledge_alert(
    alert_id: int, platform: PlatformDep, body: ActorIn | None = None
) -> Response:
    """Record that someone has seen the alert (idempotent)."""
    actor = body.by if body else "operator"
    return json_response(platform.alerts.acknowledge(platform.tenant, alert_id, actor))


@router.post("/alerts/{alert_id}/resolve", responses=documented(Alert))
def resolve_alert(alert_id: int, platform: PlatformDep, body: ActorIn | None = None) -> Response:
    """Close the alert (idempotent)."""
    actor = body.by if body else "operator"
    return json_response(platform.alerts.resolve(platform.tenant, alert_id, actor))
