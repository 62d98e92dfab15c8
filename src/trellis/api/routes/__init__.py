"""The REST API, version 1. Each resource has its own module and router; adding a
resource adds one module and one line in each list below (one name per line, so
parallel additions merge cleanly)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from trellis.api.auth import authorized
from trellis.api.routes import (
    alerts,
    auth,
    commands,
    devices,
    experiments,
    fabric,
    flows,
    ingest,
    lineage,
    models,
    mqtt,
    policies,
    rules,
    semantic,
    storage,
    system,
    telemetry,
    twins,
)

__all__ = ["router"]

# Every operation passes the one gate (authentication, Cedar authorization, audit).
router = APIRouter(prefix="/api/v1", dependencies=[Depends(authorized)])
for module in (
    system,
    devices,
    commands,
    telemetry,
    storage,
    alerts,
    rules,
    flows,
    ingest,
    mqtt,
    models,
    fabric,
    auth,
    experiments,
    semantic,
    lineage,
    twins,
    policies,
):
    router.include_router(module.router)
router.include_router(auth.audit_router)
