"""The dashboard's routes: pages, the fragments htmx swaps in, actions, live streams.

Pages (``/``, ``/devices/{id}``, ``/alerts``) render whole documents; everything the
pages fetch afterwards lives under ``/ui/``: fragments for htmx, the alert actions
(which answer with the re-rendered card) and the server-sent event streams. None of
it is in the OpenAPI document: the API under ``/api/v1`` is the programmable face,
these routes are the dashboard's own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

import jinja2
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from trellis._version import __version__
from trellis.alerts.feedback import ACTIONS, Feedback, Verdict, root_causes_for
from trellis.alerts.service import AlertOutcome
from trellis.alerts.snooze import PRESETS, snooze_minutes
from trellis.api.deps import PlatformDep
from trellis.auth.users import Principal
from trellis.core.clock import now_ms, to_iso
from trellis.core.errors import ConflictError, NotFoundError
from trellis.core.types import Alert, Device
from trellis.platform import Platform
from trellis.ui import experiments, fabric, semantic, streams, views
from trellis.ui import models as model_pages
from trellis.ui.auth import PageDenied, group, guard, may, read_form
from trellis.ui.streams import end_streams

__all__ = ["end_streams", "mount"]

TEMPLATES_DIR = Path(__file__).parent / "templates"
#: Who the dashboard records as acting on an alert when authentication is disabled.
ACTOR = "operator"

StatusTab = Literal["open", "all"]
AlertAction = Literal["acknowledge", "resolve", "assign", "comment", "snooze"]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,  # every template is HTML; device names and messages are input
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        value=views.format_value,
        age=views.format_age,
        iso=lambda ms: to_iso(ms) if ms is not None else "",
        segment=lambda text: quote(str(text), safe=""),
    )
    env.globals.update(version=__version__, severities=[s.value for s in views.SEVERITIES])
    return env


def _common(request: Request) -> dict[str, Any]:
    platform: Platform | None = getattr(request.app.state, "platform", None)
    catalogue = platform.settings.alerts.root_causes if platform else {}
    return {
        "missing_assets": views.missing_assets(),
        "tenant": platform.tenant if platform else "",
        "path": request.url.path,
        "root_causes_for": lambda alert_type: root_causes_for(alert_type, catalogue),
        "actions": ACTIONS,
        "verdicts": [(v.value, v.value.replace("_", " ").capitalize()) for v in Verdict],
        "snooze_presets": PRESETS,
        "csrf": getattr(request.state, "csrf", ""),
        "user": getattr(request.state, "principal", None),
        "can": lambda action: may(request, action),
    }


templates = Jinja2Templates(env=_environment(), context_processors=[_common])


def _render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def _not_found(request: Request, message: str) -> HTMLResponse:
    return _render(request, "not_found.html", {"message": message}, 404)


def _names(platform: Platform, alerts: Iterable[Alert]) -> dict[str, str]:
    """Display names of the devices the alerts are about."""
    names = {}
    for alert in alerts:
        device = platform.registry.get(platform.tenant, alert.device)
        names[alert.device] = device.name if device and device.name else alert.device
    return names


def _require_device(device_id: str, platform: PlatformDep) -> Device:
    return platform.registry.require(platform.tenant, device_id)


DeviceDep = Annotated[Device, Depends(_require_device)]


# -- pages -------------------------------------------------------------------------

pages = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


async def _fleet(platform: Platform, query: str, page: int) -> views.FleetView:
    devices, matching, total, pages_ = views.fleet_devices(platform, query, page)
    live = views.live_latest(platform, [d.id for d in devices])
    return await asyncio.to_thread(
        views.fleet_view,
        platform,
        devices=devices,
        matching=matching,
        total=total,
        page=page,
        pages=pages_,
        query=query,
        live=live,
        readings_per_s=platform.live.rate(),
        now_ms=now_ms(),
    )


PageQuery = Annotated[int, Query(ge=1, le=1_000_000)]
SearchQuery = Annotated[str, Query(max_length=200)]
OffsetQuery = Annotated[int, Query(ge=0, le=1_000_000)]
SiteQuery = Annotated[str, Query(max_length=128)]


@pages.get("/")
async def fleet_page(
    request: Request, platform: PlatformDep, q: SearchQuery = "", page: PageQuery = 1
) -> HTMLResponse:
    """Every device with its newest values and open alerts, and the fleet overview."""
    view = await _fleet(platform, q, page)
    # Measuring scans the readings; a figure up to a minute old is good enough here.
    storage = await asyncio.to_thread(platform.storage.budget, 60.0)
    return _render(request, "fleet.html", {"view": view, "storage": storage})


@pages.get("/ui/fleet/table")
async def fleet_fragment(
    request: Request, platform: PlatformDep, q: SearchQuery = "", page: PageQuery = 1
) -> HTMLResponse:
    """The live part of the fleet page, polled by htmx: figures, table, chart data."""
    view = await _fleet(platform, q, page)
    return _render(request, "_fleet_live.html", {"view": view})


@pages.get("/devices/{device_id}")
async def device_page(device_id: str, request: Request, platform: PlatformDep) -> HTMLResponse:
    """One device: latest values, live charts of the last 15 minutes, its alerts."""
    device = platform.registry.get(platform.tenant, device_id)
    if device is None:
        return _not_found(request, f"There is no device {device_id!r} in this fleet.")
    live = platform.live.latest(platform.tenant, device_id)
    view = await asyncio.to_thread(views.device_view, platform, device, live, now_ms())
    twin = await asyncio.to_thread(platform.twins.get, platform.tenant, device_id)
    stream_url = f"/ui/devices/{quote(device_id, safe='')}/stream"
    return _render(
        request,
        "device.html",
        {
            "view": view,
            "chart": view.chart_data(stream_url),
            "alerts": view.alerts,
            "names": {device.id: device.name or device.id},
            "now": view.now_ms,
            "refresh_url": f"/ui/devices/{quote(device_id, safe='')}/alerts",
            "twin": twin,
        },
    )


@pages.get("/ui/devices/{device_id}/alerts")
async def device_alerts_fragment(
    device_id: str, request: Request, platform: PlatformDep
) -> HTMLResponse:
    """The device page's alert list, reloaded when one of them changes."""
    device = platform.registry.get(platform.tenant, device_id)
    if device is None:
        return _not_found(request, f"There is no device {device_id!r} in this fleet.")
    alerts = await asyncio.to_thread(
        platform.alerts.find, platform.tenant, device=device_id, limit=20
    )
    context = {"alerts": alerts, "names": {device.id: device.name or device.id}, "now": now_ms()}
    return _render(request, "_device_alerts.html", context)


@pages.get("/alerts")
async def alerts_page(
    request: Request,
    platform: PlatformDep,
    status: StatusTab = "open",
    offset: OffsetQuery = 0,
    site: SiteQuery = "",
) -> HTMLResponse:
    """The alert inbox: cards an operator can acknowledge and resolve from a phone;
    ``site`` shows the alerts of every device at one site."""
    view = await asyncio.to_thread(views.alerts_view, platform, status, offset, now_ms(), site)
    return _render(request, "alerts.html", _alerts_context(platform, view))


@pages.get("/alerts/metrics")
async def alert_metrics_page(
    request: Request,
    platform: PlatformDep,
    days: Annotated[int, Query(ge=1, le=366)] = 7,
) -> HTMLResponse:
    """MTTA, MTTR, false alert rate, HITL ratio and their trends (docs/metrics.md)."""
    view = await asyncio.to_thread(views.metrics_view, platform, days, now_ms())
    return _render(
        request,
        "metrics.html",
        {"view": view, "chart": view.chart_data(), "periods": views.METRIC_PERIODS},
    )


@pages.get("/alerts/{alert_id:int}")
async def alert_page(alert_id: int, request: Request, platform: PlatformDep) -> HTMLResponse:
    """One alert: the card with its actions, the readings around it, its timeline."""
    try:
        view = await asyncio.to_thread(views.alert_detail_view, platform, alert_id, now_ms())
    except NotFoundError:
        return _not_found(request, f"There is no alert {alert_id}.")
    context = {
        "view": view,
        "alert": view.alert,
        "names": _names(platform, [view.alert]),
        "now": view.now_ms,
        "chart": view.chart_data(),
    }
    return _render(request, "alert.html", context)


@pages.get("/ui/alerts/list")
async def alerts_fragment(
    request: Request,
    platform: PlatformDep,
    status: StatusTab = "open",
    offset: OffsetQuery = 0,
    site: SiteQuery = "",
) -> HTMLResponse:
    """The inbox's list, reloaded on every alert change."""
    view = await asyncio.to_thread(views.alerts_view, platform, status, offset, now_ms(), site)
    return _render(request, "_alert_list.html", _alerts_context(platform, view))


def _alerts_context(platform: Platform, view: views.AlertsView) -> dict[str, Any]:
    return {
        "view": view,
        "alerts": view.alerts,
        "names": _names(platform, view.alerts),
        "now": view.now_ms,
        "refresh_url": f"/ui/alerts/list?status={view.status}&offset={view.offset}"
        + (f"&site={quote(view.site, safe='')}" if view.site else ""),
    }


@pages.get("/ui/alerts/{alert_id:int}")
async def alert_fragment(alert_id: int, request: Request, platform: PlatformDep) -> HTMLResponse:
    """One alert card."""
    try:
        alert = await asyncio.to_thread(platform.alerts.get, platform.tenant, alert_id)
    except NotFoundError:
        return _not_found(request, f"There is no alert {alert_id}.")
    return _card(request, platform, alert)


def _card(
    request: Request,
    platform: Platform,
    alert: Alert,
    error: str | None = None,
    notice: str | None = None,
) -> HTMLResponse:
    context = {
        "alert": alert,
        "names": _names(platform, [alert]),
        "now": now_ms(),
        "error": error,
        "notice": notice,
    }
    return _render(request, "_alert_card.html", context)


@pages.post("/ui/alerts/{alert_id:int}/{action}", response_model=None)
@group("operate")
async def alert_action(
    alert_id: int,
    action: AlertAction,
    request: Request,
    platform: PlatformDep,
    hx_request: Annotated[str | None, Header()] = None,
) -> Response:
    """Acknowledge, resolve (with the verdict the resolve sheet's button carries),
    assign, comment or snooze; htmx gets the card back saying what happened, a plain
    form the inbox. The guard has already checked origin, CSRF and the policy."""
    form = await read_form(request)
    actor = _actor(request)
    error = notice = None
    try:
        outcome = await asyncio.to_thread(_act, platform, alert_id, action, form, actor)
        alert = outcome.alert
        if not outcome.changed:
            notice = outcome.detail.capitalize() + "."
        elif action in ("assign", "comment", "snooze"):
            notice = outcome.detail[:1].upper() + outcome.detail[1:] + "."
    except NotFoundError:
        return _not_found(request, f"There is no alert {alert_id}.")
    except (ConflictError, ValueError) as exc:
        alert = await asyncio.to_thread(platform.alerts.get, platform.tenant, alert_id)
        error = str(exc)
    if hx_request is None:
        return RedirectResponse("/alerts", status_code=303)
    return _card(request, platform, alert, error, notice)


def _act(
    platform: Platform, alert_id: int, action: AlertAction, form: dict[str, str], actor: str
) -> AlertOutcome:
    """Carry out one card action (in a worker thread: the service writes the database)."""
    alerts, tenant = platform.alerts, platform.tenant
    if action == "acknowledge":
        return alerts.acknowledge(tenant, alert_id, actor)
    if action == "resolve":
        return alerts.resolve(tenant, alert_id, actor, _feedback(form))
    if action == "assign":
        assignee = actor if form.get("me") else form.get("to", "").strip()
        if not assignee or len(assignee) > 128:
            raise ValueError("type a person or team (1-128 characters), or tap Assign to me")
        return alerts.assign(tenant, alert_id, actor, assignee)
    if action == "comment":
        return alerts.comment(tenant, alert_id, actor, form.get("text", ""))
    # The server's zone decides "tomorrow" until users carry their own time zone.
    minutes = snooze_minutes(form.get("preset", ""), datetime.now().astimezone())
    return alerts.snooze(tenant, alert_id, actor, now_ms() + int(minutes * 60_000))


def _actor(request: Request) -> str:
    """Who the alert's timeline names: the logged-in user (or the loopback admin)."""
    principal: Principal | None = getattr(request.state, "principal", None)
    return principal.name if principal is not None else ACTOR


def _feedback(form: dict[str, str]) -> Feedback | None:
    """The feedback a resolve sheet posted, or ``None`` for a resolve without verdict."""
    verdict = form.get("verdict")
    if not verdict:
        return None
    try:
        return Feedback(
            verdict=Verdict(verdict),
            root_cause=form.get("root_cause") or "unknown",
            action_taken=form.get("action_taken") or "none",
            note=form.get("note", "").strip(),
        )
    except ValueError:
        raise ValueError(
            f"verdict {verdict!r} is not one of {[v.value for v in Verdict]}"
        ) from None


# -- live streams ------------------------------------------------------------------

live = APIRouter(include_in_schema=False)


@live.get("/ui/devices/{device_id}/stream", response_class=EventSourceResponse)
async def device_stream(
    device: DeviceDep,
    request: Request,
    platform: PlatformDep,
    since: Annotated[int | None, Query(ge=0)] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> AsyncGenerator[ServerSentEvent, None]:
    """The device's readings and alert changes as they happen.

    ``since`` (epoch ms, the newest point the page has) or, on reconnection, the
    ``Last-Event-ID`` header makes the stream begin with the stored points after it.
    """
    if last_event_id is not None and last_event_id.isdigit():
        since = int(last_event_id)
    events = streams.device_events(request, platform, device, since)
    async with contextlib.aclosing(events):
        async for event in events:
            yield event


@live.get("/ui/alerts/stream", response_class=EventSourceResponse)
async def alert_stream(
    request: Request, platform: PlatformDep
) -> AsyncGenerator[ServerSentEvent, None]:
    """Every change of the tenant's alerts, for the inbox to reload its list."""
    events = streams.alert_events(request, platform)
    async with contextlib.aclosing(events):
        async for event in events:
            yield event


def dashboard_router() -> APIRouter:
    """Every dashboard route behind the one guard (session or loopback admin, CSRF, Cedar,
    audit); each is the Cedar action ``dashboard.<endpoint>``."""
    from trellis.ui import account, admin, rules  # they render with this module's templates

    router = APIRouter(dependencies=[Depends(guard)], tags=["dashboard"])
    for module_router in (
        rules.pages,
        pages,
        model_pages.router,
        live,
        experiments.router,
        account.router,
        admin.router,
        semantic.router,
        fabric.router,
    ):
        router.include_router(module_router)
    return router


async def _denied(request: Request, exc: Exception) -> Response:
    detail = exc.detail if isinstance(exc, PageDenied) else str(exc)
    return _render(request, "denied.html", {"message": detail}, 403)


def mount(app: FastAPI) -> None:
    """Add the dashboard's pages, fragments, streams and static files to ``app``."""
    app.include_router(dashboard_router())
    app.add_exception_handler(PageDenied, _denied)
    app.mount("/static", StaticFiles(directory=views.STATIC_DIR), name="static")
    streams.stop_event(app)  # created here, before any thread may ask for it
