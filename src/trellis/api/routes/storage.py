"""Storage routes: the budget (bytes per tenant, growth, days until full) and retention."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from trellis.api.deps import PlatformDep
from trellis.api.encoding import documented, json_response
from trellis.store.retention import RetentionRun, StorageBudget

__all__ = ["router"]

router = APIRouter(tags=["storage"])


@router.get("/storage", responses=documented(StorageBudget))
def storage_budget(platform: PlatformDep) -> Response:
    """Bytes used per tenant, growth over the last day, days until the disk is full."""
    return json_response(platform.storage.budget())


@router.post("/storage/retention", responses=documented(RetentionRun))
def run_retention(platform: PlatformDep) -> Response:
    """Apply retention now (it also runs every ``storage.retention_interval_s``)."""
    return json_response(platform.storage.retain())
