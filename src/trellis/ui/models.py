"""The dashboard's model pages: versions and stages, routing, the champion vs
challenger score chart, drift (reference vs current per feature) and carbon."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from trellis.api.deps import PlatformDep
from trellis.core.clock import now_ms
from trellis.core.errors import ConflictError, NotFoundError
from trellis.ml.errors import MissingExtraError
from trellis.platform import Platform

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
#: The comparison chart's span and bucket.
SPAN_MS = 6 * 3_600_000
BUCKET_MS = 60_000


def _model_view(platform: Platform, name: str) -> dict[str, Any]:
    models, tenant = platform.models, platform.tenant
    summary = models.registry.model(tenant, name)
    drift: Any = None
    drift_note = ""
    try:
        drift = msgspec.to_builtins(models.check_drift(tenant, name, alert=False))
    except (ConflictError, MissingExtraError) as exc:
        drift_note = str(exc)
    series = models.score_series(tenant, name, now_ms() - SPAN_MS, BUCKET_MS)
    return {
        "model": summary,
        "versions": models.registry.versions(tenant, name),
        "stats": models.stats(tenant, name),
        "history": models.registry.history(tenant, name)[-20:],
        "drift": drift,
        "drift_note": drift_note,
        "chart": {
            "series": {v: [[t, s] for t, s in points] for v, points in series.items()},
            "drift": drift["features"] if drift else [],
        },
        "carbon": models.carbon,
    }


@router.get("/models", response_class=HTMLResponse)
async def models_page(request: Request, platform: PlatformDep) -> HTMLResponse:
    """Every model with its champion and routing."""
    from trellis.ui.routes import _render

    found = await asyncio.to_thread(platform.models.registry.models, platform.tenant)
    return _render(request, "models.html", {"models": found})


@router.get("/models/{name}", response_class=HTMLResponse)
async def model_page(name: str, request: Request, platform: PlatformDep) -> HTMLResponse:
    """One model: versions, routing, champion vs challenger, drift, carbon."""
    from trellis.ui.routes import _not_found, _render

    try:
        view = await asyncio.to_thread(_model_view, platform, name)
    except NotFoundError:
        return _not_found(request, f"There is no model {name!r}.")
    return _render(request, "model.html", view)
