"""Data fabric routes: device models (import, list, versions), quarantine entries and replay
(the quarantine list is in :mod:`trellis.api.routes.ingest`)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response
from pydantic import BaseModel, Field

from trellis.api.deps import MAX_ROW_ID, PlatformDep, RowId, TenantDep
from trellis.api.encoding import documented, json_response
from trellis.contracts.importers import ModelFormatError, parse_model
from trellis.core.errors import ClosedError, ConflictError
from trellis.core.types import Reading
from trellis.devices.models import DeviceModel
from trellis.ingest.quarantine import QuarantinedMessage
from trellis.ingest.replay import ReplayReport, limits_of, replay, replay_lineage

if TYPE_CHECKING:
    from trellis.platform import Platform

__all__ = ["ModelIn", "ReplayIn", "replay_entries", "router"]

router = APIRouter(tags=["fabric"])


class ModelIn(BaseModel):
    """A model file's text; ``format`` is detected when omitted."""

    text: str = Field(examples=["name: boiler\nversion: 1.0.0\nproperties: {t: {unit: Cel}}"])
    format: Literal["wot", "dtdl", "yaml"] | None = None


class ReplayIn(BaseModel):
    """Which entries to replay; all pending ones of the tenant when ``ids`` is empty."""

    ids: list[Annotated[int, Field(ge=1, le=MAX_ROW_ID)]] = Field(default=[], max_length=10_000)


@router.get("/device-models", responses=documented(list[DeviceModel]))
def list_models(platform: PlatformDep) -> Response:
    """The device models in use (newest version of each)."""
    return json_response(sorted(platform.registry.models.values(), key=lambda m: m.name))


@router.get("/device-models/{name}/versions", responses=documented(list[DeviceModel]))
def model_versions(name: str, platform: PlatformDep) -> Response:
    """Every version of one model, oldest first; the last is in use."""
    return json_response(platform.registry.model_versions(name))


@router.post("/device-models", responses=documented(DeviceModel))
def import_model(body: ModelIn, platform: PlatformDep) -> Response:
    """Import a WoT TM/TD, DTDL v3 interface or YAML model; 422 names what is wrong."""
    try:
        model, fmt = parse_model(body.text, body.format)
    except ModelFormatError as exc:
        raise HTTPException(422, str(exc)) from None
    try:
        return json_response(platform.registry.put_model(model, fmt))
    except ConflictError as exc:
        raise HTTPException(409, str(exc)) from None


@router.get("/quarantine/{entry_id}", responses=documented(QuarantinedMessage))
def get_quarantined(entry_id: RowId, platform: PlatformDep, tenant: TenantDep) -> Response:
    """One quarantined message of the tenant, its payload included."""
    return json_response(platform.quarantine.get(entry_id, tenant))


@router.post("/quarantine/replay", responses=documented(ReplayReport))
async def replay_quarantine(body: ReplayIn, platform: PlatformDep, tenant: TenantDep) -> Response:
    """Decode entries again with today's models; store what passes, each reading once.

    Recovered readings are published on the bus like live ones, so rules see them.
    """
    report, recovered = await asyncio.to_thread(replay_entries, platform, tenant, body.ids)
    for readings in recovered:
        with contextlib.suppress(ClosedError):
            await platform.bus.publish(readings)
    return json_response(report)


def replay_entries(
    platform: Platform, tenant: str, ids: list[int]
) -> tuple[ReplayReport, list[list[Reading]]]:
    """Replay ``ids`` of ``tenant`` (every pending entry of the tenant when empty); the
    report and the recovered readings, message by message, for the caller to publish."""
    quarantine = platform.quarantine
    entries = (
        [quarantine.get(i, tenant) for i in ids]
        if ids
        else quarantine.find(tenant, limit=10_000, pending=True)
    )
    recovered: list[list[Reading]] = []
    with replay_lineage(platform.lineage, tenant, archived=True) as count:
        report = replay(
            entries,
            quarantine,
            platform.registry,
            platform.store,
            limits_of(platform.settings.ingest),
            archive=platform.archive,
            on_stored=recovered.append,
        )
        count(report)
    return report, recovered
