"""Dashboard pages for flows: the list, and the visual editor (Drawflow).

The editor is a static page plus ``static/flows.js``: it talks to the REST API
(``/api/v1/flows``, ``/api/v1/rules/stats``, ``/api/v1/alerts``) like any other
client, so what it saves is exactly what ``trellis flows import`` would save.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from trellis.api.deps import PlatformDep
from trellis.core.errors import NotFoundError
from trellis.rules.flows import flow_text
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
