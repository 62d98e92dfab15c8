"""Telemetry routes: latest values, raw ranges, time buckets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from trellis.api.auth import site_scoped
from trellis.api.deps import PlatformDep, SiteDep, TenantDep, require_device, time_range
from trellis.api.encoding import documented, json_response
from trellis.core.errors import NotFoundError
from trellis.platform import Platform
from trellis.store.base import Aggregate, Bucket, Fill, Latest, Point
from trellis.store.query import Series, SeriesQuery, plan, run

__all__ = ["router"]

router = APIRouter(tags=["telemetry"])


def _require_metric(
    platform: Platform, tenant: str, site: str | None, device_id: str, metric: str
) -> None:
    """404 for an unknown device, or a metric its model does not have (ingest stores no
    other), rather than an empty answer that looks like missing data."""
    device = require_device(platform, tenant, site, device_id)
    model = platform.registry.models.get(device.model)
    if model is not None and metric not in model.metrics:
        raise NotFoundError(f"metric of device model {device.model!r}", metric)


@router.get("/devices/{device_id}/latest", responses=documented(list[Latest]))
@site_scoped
def latest(device_id: str, platform: PlatformDep, tenant: TenantDep, site: SiteDep) -> Response:
    """The newest stored value of every metric of the device."""
    require_device(platform, tenant, site, device_id)
    return json_response(platform.store.latest(tenant, device_id))


@router.get(
    "/devices/{device_id}/telemetry/{metric}", responses=documented(list[Point]), tags=["telemetry"]
)
@site_scoped
def telemetry(
    device_id: str,
    metric: str,
    platform: PlatformDep,
    tenant: TenantDep,
    site: SiteDep,
    start: Annotated[str | None, Query(description="epoch ms or RFC 3339; default end-1h")] = None,
    end: Annotated[str | None, Query(description="epoch ms or RFC 3339; default now")] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> Response:
    """Raw values in ``[start, end)``, oldest first, as ``[ts, value]`` pairs."""
    _require_metric(platform, tenant, site, device_id, metric)
    start_ms, end_ms = time_range(start, end)
    return json_response(platform.store.query(tenant, device_id, metric, start_ms, end_ms, limit))


@router.get(
    "/devices/{device_id}/telemetry/{metric}/aggregate",
    responses=documented(list[Bucket]),
)
@site_scoped
def aggregate(
    device_id: str,
    metric: str,
    platform: PlatformDep,
    tenant: TenantDep,
    site: SiteDep,
    start: Annotated[str | None, Query(description="epoch ms or RFC 3339; default end-1h")] = None,
    end: Annotated[str | None, Query(description="epoch ms or RFC 3339; default now")] = None,
    bucket_ms: Annotated[int, Query(ge=1000, le=31 * 86_400_000)] = 60_000,
    fn: Aggregate = Aggregate.AVG,
) -> Response:
    """Values reduced per time bucket (``[bucket_start, value]`` pairs)."""
    _require_metric(platform, tenant, site, device_id, metric)
    start_ms, end_ms = time_range(start, end)
    if (end_ms - start_ms) // bucket_ms > 100_000:
        raise HTTPException(422, "more than 100000 buckets; widen bucket_ms or narrow the range")
    return json_response(
        platform.store.aggregate(tenant, device_id, metric, start_ms, end_ms, bucket_ms, fn)
    )


@router.get("/telemetry", responses=documented(list[Series]))
@site_scoped
def query_telemetry(
    platform: PlatformDep,
    tenant: TenantDep,
    site: SiteDep,
    device: Annotated[list[str], Query(min_length=1, description="repeat for more devices")],
    metric: Annotated[
        list[str] | None, Query(description="repeat for more; default every reported metric")
    ] = None,
    start: Annotated[str | None, Query(description="epoch ms or RFC 3339; default end-1h")] = None,
    end: Annotated[str | None, Query(description="epoch ms or RFC 3339; default now")] = None,
    bucket_ms: Annotated[
        int | None,
        Query(
            ge=1000, le=31 * 86_400_000, description="aggregate into buckets; default raw values"
        ),
    ] = None,
    fn: Aggregate = Aggregate.AVG,
    fill: Fill = Fill.NONE,
    limit: Annotated[int, Query(ge=1, le=100_000, description="raw values per series")] = 10_000,
) -> Response:
    """Several devices and metrics at once: raw values or time buckets per series.

    Refused with 422 beyond the documented limits (2,000 series, 2,000,000 values,
    100,000 buckets per series), before any data is read.
    """
    for device_id in device:
        require_device(platform, tenant, site, device_id)
    start_ms, end_ms = time_range(start, end)
    query = SeriesQuery(tenant, device, metric, start_ms, end_ms, bucket_ms, fn, fill, limit)
    pairs = plan(platform.store, query)
    return json_response(list(run(platform.store, query, pairs)))
