"""Alert routes: the inbox, the actions operators take, feedback labels, metrics."""

from __future__ import annotations

import enum
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from trellis.alerts.export import labels_csv, labels_jsonl
from trellis.alerts.feedback import ACTIONS, Feedback, Label, Verdict, root_causes_for
from trellis.alerts.metrics import AlertMetrics, GroupBy
from trellis.alerts.notify import DeadLetter
from trellis.alerts.reports import alert_metrics
from trellis.alerts.service import AlertOutcome
from trellis.alerts.snooze import MAX_SNOOZE_MINUTES
from trellis.alerts.timeline import AlertEvent
from trellis.api.auth import site_scoped
from trellis.api.deps import MAX_ROW_ID, PlatformDep, RowId, SiteDep, TenantDep, time_range
from trellis.api.encoding import documented, json_response
from trellis.core.clock import now_ms
from trellis.core.errors import NotFoundError
from trellis.core.types import Alert, AlertStatus
from trellis.platform import Platform

__all__ = ["ActorIn", "FeedbackIn", "ResolveIn", "router"]

router = APIRouter(tags=["alerts"])

Actor = Annotated[str, Field(min_length=1, max_length=128)]


class ActorIn(BaseModel):
    """Who performs an action on an alert (authentication replaces this later)."""

    by: Actor = "operator"


class FeedbackIn(BaseModel):
    """The operator's judgement, given on resolve."""

    verdict: Verdict
    root_cause: str = Field(default="unknown", max_length=128)
    action_taken: str = Field(default="none", max_length=128)
    note: str = Field(default="", max_length=2000)


class ResolveIn(ActorIn):
    """Resolve, with feedback once the condition has cleared."""

    feedback: FeedbackIn | None = None


class AssignIn(ActorIn):
    """Give the alert to a person or team; ``null`` takes it back."""

    assignee: str | None = Field(default=None, min_length=1, max_length=128)


class CommentIn(ActorIn):
    """A note on the timeline."""

    text: str = Field(min_length=1, max_length=2000)


class SnoozeIn(ActorIn):
    """Keep the alert from escalating for a while."""

    minutes: float = Field(gt=0, le=MAX_SNOOZE_MINUTES)


class ActionIn(ActorIn):
    """Something done about the alert: a command, a work order, an adjustment."""

    action: str = Field(min_length=1, max_length=128)
    note: str = Field(default="", max_length=2000)


class ExportFormat(enum.StrEnum):
    """How labels are exported."""

    JSONL = "jsonl"
    CSV = "csv"


Window = Annotated[str | None, Query(description="epoch ms or RFC 3339")]


def _at_site(platform: Platform, tenant: str, site: str | None, alert_id: int) -> None:
    """404 for an alert of another site when the caller is limited to one (a contractor)."""
    if site is not None and platform.alerts.get(tenant, alert_id).site != site:
        raise NotFoundError("alert", alert_id)


async def _at_site_async(platform: Platform, tenant: str, site: str | None, alert_id: int) -> None:
    """:func:`_at_site` for the actions that run on the event loop (the read in a thread)."""
    if site is not None:
        await run_in_threadpool(_at_site, platform, tenant, site, alert_id)


@router.get("/alerts", responses=documented(list[Alert]))
@site_scoped
def list_alerts(
    platform: PlatformDep,
    tenant: TenantDep,
    scope: SiteDep,
    status: Annotated[list[AlertStatus] | None, Query()] = None,
    device: str | None = None,
    site: Annotated[str | None, Query(description="alerts of every device at the site")] = None,
    under: Annotated[
        str | None,
        Query(max_length=128, description="alerts propagated to this asset or site"),
    ] = None,
    order: Annotated[str, Query(pattern="^(newest|severity)$")] = "newest",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_ROW_ID)] = 0,
) -> Response:
    """Alerts, newest (or most severe) first; filter by status (repeatable), device, site,
    or any node above the devices in the asset tree (``under``); a contractor sees its
    own site's only."""
    if scope is not None:
        if site not in (None, scope):
            return json_response([])
        site = scope
    return json_response(
        platform.alerts.find(
            tenant,
            statuses=set(status) if status else None,
            device=device,
            site=site,
            under=under,
            by_severity=order == "severity",
            limit=limit,
            offset=offset,
        )
    )


@router.get("/alerts/metrics", responses=documented(list[AlertMetrics]))
def metrics(
    platform: PlatformDep,
    tenant: TenantDep,
    start: Window = None,
    end: Window = None,
    group_by: GroupBy = GroupBy.NONE,
    site: str | None = None,
    rule: str | None = None,
) -> Response:
    """MTTA, MTTR, mean time to action, false alert rate, HITL resolution ratio,
    alerts per asset-day and share never acknowledged, for the alerts raised in
    ``[start, end)`` (default: the last 7 days); definitions in docs/metrics.md."""
    start_ms, end_ms = time_range(start, end, default_span_ms=7 * 86_400_000)
    return json_response(
        alert_metrics(platform.engine, tenant, group_by, start_ms, end_ms, site=site, rule=rule)
    )


@router.get(
    "/alerts/labels",
    responses={
        200: {
            "description": "labels as JSON lines or CSV",
            "content": {"application/x-ndjson": {}, "text/csv": {}},
        }
    },
)
def labels(
    platform: PlatformDep,
    tenant: TenantDep,
    since: Window = None,
    until: Window = None,
    format: ExportFormat = ExportFormat.JSONL,
) -> Response:
    """Operator feedback as training labels (readings window, device, rule, model version)."""
    since_ms, until_ms = time_range(since, until, default_span_ms=365 * 86_400_000)
    found: list[Label] = platform.alerts.labels(tenant, since_ms=since_ms, until_ms=until_ms)
    if format is ExportFormat.CSV:
        return Response(labels_csv(found), media_type="text/csv")
    return Response(labels_jsonl(found), media_type="application/x-ndjson")


@router.get("/alerts/root-causes", responses=documented(dict[str, list[str]]))
@site_scoped
def root_causes(platform: PlatformDep, type: str) -> Response:
    """What an operator may answer for alerts of ``type``: root causes and actions."""
    causes = root_causes_for(type, platform.settings.alerts.root_causes)
    return json_response({"root_causes": list(causes), "actions": list(ACTIONS)})


@router.get("/alerts/dead-letters", responses=documented(list[DeadLetter]))
def dead_letters(
    platform: PlatformDep, tenant: TenantDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> Response:
    """Notifications no channel accepted after every retry, newest first."""
    notifier = platform.notifier
    return json_response(notifier.dead_letters(tenant, limit) if notifier else [])


@router.get("/alerts/{alert_id}", responses=documented(Alert))
@site_scoped
def get_alert(alert_id: RowId, platform: PlatformDep, tenant: TenantDep, site: SiteDep) -> Response:
    """One alert."""
    _at_site(platform, tenant, site, alert_id)
    return json_response(platform.alerts.get(tenant, alert_id))


@router.get("/alerts/{alert_id}/timeline", responses=documented(list[AlertEvent]))
@site_scoped
def timeline(alert_id: RowId, platform: PlatformDep, tenant: TenantDep, site: SiteDep) -> Response:
    """Every change of the alert, oldest first, with who and when."""
    _at_site(platform, tenant, site, alert_id)
    return json_response(platform.alerts.timeline(tenant, alert_id))


@router.post("/alerts/{alert_id}/acknowledge", responses=documented(AlertOutcome))
@site_scoped
async def acknowledge_alert(
    alert_id: RowId,
    platform: PlatformDep,
    tenant: TenantDep,
    site: SiteDep,
    body: ActorIn | None = None,
) -> Response:
    """Record that someone has seen the alert; a repeat says who did it first."""
    await _at_site_async(platform, tenant, site, alert_id)
    actor = body.by if body else "operator"
    return json_response(await platform.alerts.acknowledge_async(tenant, alert_id, actor))


@router.post("/alerts/{alert_id}/resolve", responses=documented(AlertOutcome))
@site_scoped
async def resolve_alert(
    alert_id: RowId,
    platform: PlatformDep,
    tenant: TenantDep,
    site: SiteDep,
    body: ResolveIn | None = None,
) -> Response:
    """Close the alert (a repeat says who did); feedback is refused (409) while the
    alert is still active and rejected (422) when it names an unknown root cause."""
    await _at_site_async(platform, tenant, site, alert_id)
    body = body or ResolveIn()
    feedback = Feedback(**body.feedback.model_dump()) if body.feedback else None
    try:
        outcome = await platform.alerts.resolve_async(tenant, alert_id, body.by, feedback)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return json_response(outcome)


@router.post("/alerts/{alert_id}/assign", responses=documented(AlertOutcome))
async def assign_alert(
    alert_id: RowId, body: AssignIn, platform: PlatformDep, tenant: TenantDep
) -> Response:
    """Assign the alert to a person or team."""
    return json_response(
        await platform.alerts.assign_async(tenant, alert_id, body.by, body.assignee)
    )


@router.post("/alerts/{alert_id}/comments", responses=documented(AlertOutcome))
@site_scoped
async def comment_alert(
    alert_id: RowId, body: CommentIn, platform: PlatformDep, tenant: TenantDep, site: SiteDep
) -> Response:
    """Add a comment to the alert's timeline."""
    await _at_site_async(platform, tenant, site, alert_id)
    try:
        outcome = await platform.alerts.comment_async(tenant, alert_id, body.by, body.text)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return json_response(outcome)


@router.post("/alerts/{alert_id}/snooze", responses=documented(AlertOutcome))
async def snooze_alert(
    alert_id: RowId, body: SnoozeIn, platform: PlatformDep, tenant: TenantDep
) -> Response:
    """Keep the alert from escalating for ``minutes``."""
    until = now_ms() + int(body.minutes * 60_000)
    return json_response(await platform.alerts.snooze_async(tenant, alert_id, body.by, until))


@router.post("/alerts/{alert_id}/actions", responses=documented(AlertOutcome))
@site_scoped
async def record_action(
    alert_id: RowId, body: ActionIn, platform: PlatformDep, tenant: TenantDep, site: SiteDep
) -> Response:
    """Record an action taken (what mean time to action measures)."""
    await _at_site_async(platform, tenant, site, alert_id)
    try:
        outcome = await platform.alerts.record_action_async(
            tenant, alert_id, body.by, body.action, body.note
        )
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return json_response(outcome)
