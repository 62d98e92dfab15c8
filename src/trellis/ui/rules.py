"""Dashboard pages for rules and flows: stats, dry-run chart, and the visual editor.

The editor is a static page plus ``static/flows.js``: it talks to the REST API
(``/api/v1/flows``, ``/api/v1/rules/stats``, ``/api/v1/alerts``) like any other
client, so what it saves is exactly what ``trellis flows import`` would save.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Annotated

import msgspec
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from trellis.api.deps import PlatformDep
from trellis.core.clock import now_ms
from trellis.core.errors import NotFoundError
from trellis.rules.dryrun import dry_run, parse_since
from trellis.rules.flows import flow_text
from trellis.rules.store import rule_text
from trellis.ui.routes import _not_found, _render

__all__ = ["pages"]

pages = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


@pages.get("/flows")
async def flows_page(request: Request, platform: PlatformDep) -> HTMLResponse:
    """Every flow with its newest version and whether that one is deployed."""
    flows = await asyncio.to_thread(platform.flows.find, platform.tenant)
    return _render(request, "flows.html", {"flows": flows})


@pages.get("/flows/new")
async def new_flow_page(request: Request) -> HTMLResponse:
    """The editor on an empty canvas."""
    return _render(request, "flow_editor.html", {"flow_id": "", "flow_json": "null"})


@pages.get("/flows/{flow_id}/edit")
async def edit_flow_page(flow_id: str, request: Request, platform: PlatformDep) -> HTMLResponse:
    """The editor on the newest version of a flow."""
    try:
        latest = await asyncio.to_thread(platform.flows.latest, platform.tenant, flow_id)
    except NotFoundError:
        return _not_found(request, f"No flow {flow_id!r}.")
    return _render(
        request,
        "flow_editor.html",
        {"flow_id": flow_id, "flow_json": flow_text(latest.flow)},
    )


@pages.get("/rules")
async def rules_page(request: Request, platform: PlatformDep) -> HTMLResponse:
    """Every rule with what the engine counted for it: readings, raises, errors, latency."""
    rules = await asyncio.to_thread(platform.rules.find, platform.tenant)
    stats = {s.rule: s for s in platform.rule_engine.stats(platform.tenant)}
    rows = [(rule, stats.get(rule.id)) for _, rule in rules]
    return _render(request, "rules.html", {"rows": rows})


@pages.get("/rules/{rule_id}")
async def rule_page(
    rule_id: str,
    request: Request,
    platform: PlatformDep,
    since: Annotated[str, Query(pattern=r"^-\d+(\.\d+)?[smhd]$")] = "-24h",
) -> HTMLResponse:
    """One rule as stable text, and a dry run over stored data on a chart."""
    try:
        rule = await asyncio.to_thread(platform.rules.get, platform.tenant, rule_id)
    except NotFoundError:
        return _not_found(request, f"No rule {rule_id!r}.")
    end = now_ms()
    result = await asyncio.to_thread(
        functools.partial(dry_run, semantic=platform.semantic),
        rule,
        platform.store,
        platform.registry,
        platform.tenant,
        parse_since(since, end),
        end,
    )
    return _render(
        request,
        "rule.html",
        {
            "rule": rule,
            "text": rule_text(rule),
            "result": result,
            "since": since,
            "chart": msgspec.to_builtins(result),
        },
    )
