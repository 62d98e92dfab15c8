"""The REST API, version 1. Each resource has its own module and router; adding a
resource adds one module and one line in each list below (one name per line, so
parallel additions merge cleanly)."""

from __future__ import annotations

from fastapi import APIRouter

from trellis.api.routes import (
    alerts,
    commands,
    devices,
    experiments,
    fabric,
    flows,
    ingest,
    models,
    mqtt,
    rules,
    storage,
    system,
    telemetry,
)

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")
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
    experiments,
):
    router.include_router(module.router)
