"""Lineage routes: walk any reading, message, rollup, alert, prediction or model back to
its sources; the raw message archive; reprocessing a past period."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response
from pydantic import BaseModel, Field

from trellis.api.deps import PlatformDep, TenantDep
from trellis.api.encoding import documented, json_response
from trellis.core.clock import now_ms
from trellis.ingest.archive import ArchiveStats
from trellis.ingest.replay import limits_of
from trellis.ingest.reprocess import ReprocessReport, parse_instant, reprocess_run
from trellis.lineage.graph import KINDS, LineageGraph

__all__ = ["ReprocessIn", "router"]

router = APIRouter(tags=["lineage"])


class ReprocessIn(BaseModel):
    """Which model's archived messages to decode again, over which period of readings."""

    model: str = Field(min_length=1, examples=["pump"])
    since: str = Field(description="epoch ms, RFC 3339, or a duration ago (7d, 2h)")
    until: str | None = Field(default=None, description="same forms; default now")


@router.get("/lineage/{kind}/{ident:path}", responses=documented(LineageGraph))
def lineage(kind: str, ident: str, platform: PlatformDep, tenant: TenantDep) -> Response:
    """The lineage graph of one node; ``kind`` is one of reading (``device/metric/ts``),
    message, rollup (``device/metric/minute``), alert, prediction, model (``name@version``)."""
    if kind not in KINDS:
        raise HTTPException(422, f"unknown lineage kind {kind!r}; known: {list(KINDS)}")
    try:
        graph = platform.lineage_walker.walk(tenant, kind, ident)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return json_response(graph)


@router.get("/archive", responses=documented(ArchiveStats))
def archive_stats(platform: PlatformDep) -> Response:
    """How much the raw message archive holds: messages, segments, bytes."""
    return json_response(platform.archive.stats())


@router.post("/reprocess", responses=documented(ReprocessReport))
async def reprocess(body: ReprocessIn, platform: PlatformDep, tenant: TenantDep) -> Response:
    """Re-derive a past period's readings of one model's devices from the archive with the
    model's current version; readings already stored are kept (a second run adds none)."""
    now = now_ms()
    try:
        since = parse_instant(body.since, now)
        until = now + 1 if body.until is None else parse_instant(body.until, now)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    try:
        report = await asyncio.to_thread(
            reprocess_run,
            platform.lineage,
            platform.archive,
            platform.registry,
            platform.store,
            limits_of(platform.settings.ingest),
            tenant=tenant,
            model=body.model,
            since=since,
            until=until,
        )
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return json_response(report)
