"""Storage routes: the budget (bytes per tenant, growth, days until full) and retention."""

from __future__ import annotations

import msgspec
from fastapi import APIRouter
from fastapi.responses import Response

from trellis.api.deps import PlatformDep, TenantDep
from trellis.api.encoding import documented, json_response
from trellis.store.retention import RetentionRun, StorageBudget

__all__ = ["router"]

router = APIRouter(tags=["storage"])


@router.get("/storage", responses=documented(StorageBudget))
def storage_budget(platform: PlatformDep, tenant: TenantDep) -> Response:
    """The disk's bytes, growth and days until full, and the caller's tenant's share
    (other tenants' rows are left out: their names and sizes are theirs)."""
    found = platform.storage.budget()
    mine = [share for share in found.tenants if share.tenant == tenant]
    return json_response(msgspec.structs.replace(found, tenants=mine))


@router.post("/storage/retention", responses=documented(RetentionRun))
def run_retention(platform: PlatformDep) -> Response:
    """Apply retention now (it also runs every ``storage.retention_interval_s``)."""
    return json_response(platform.storage.retain())
