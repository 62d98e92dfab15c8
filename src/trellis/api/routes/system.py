"""System routes: liveness and the counters an operator checks first."""

from __future__ import annotations

import msgspec
from fastapi import APIRouter
from fastapi.responses import Response

from trellis._version import __version__
from trellis.api.auth import public
from trellis.api.deps import PlatformDep, TenantDep
from trellis.api.encoding import documented, json_response
from trellis.bus.base import SubscriberStats
from trellis.ingest.pipeline import IngestStats

__all__ = ["Health", "Live", "Stats", "router"]

router = APIRouter(tags=["system"])


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


class Live(msgspec.Struct, frozen=True):
    """The process answers; nothing about what it holds."""

    status: str


@router.get("/health/live", responses=documented(Live))
@public
def liveness() -> Response:
    """Public liveness probe: no version, no counts, so it tells an outsider nothing."""
    return json_response(Live("ok"))


@router.get("/health", responses=documented(Health))
def health(platform: PlatformDep, tenant: TenantDep) -> Response:
    """Readiness detail for operators (needs a token): version, devices, the ingest queue."""
    return json_response(
        Health(
            status="ok",
            version=__version__,
            devices=len(platform.registry.find(tenant)),
            ingest_queued=platform.pipeline.stats().queued,
            readings_per_s=round(platform.live.rate(), 1),
        )
    )


@router.get("/stats", responses=documented(Stats))
def stats(platform: PlatformDep, tenant: TenantDep) -> Response:
    """Counters of ingest and the bus: throughput, duplicates, quarantine, waits."""
    return json_response(
        Stats(
            ingest=platform.pipeline.stats(),
            bus=platform.bus.stats(),
            readings_per_s=round(platform.live.rate(), 1),
            stored_readings=platform.store.count(tenant),
        )
    )
