"""The REST API, version 1. Each resource has its own module and router; adding a
resource adds one module and one line here."""

from __future__ import annotations

from fastapi import APIRouter

from trellis.api.routes import alerts, devices, flows, ingest, mqtt, rules, system, telemetry

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")
for module in (system, devices, telemetry, alerts, rules, flows, ingest, mqtt):
    router.include_router(module.router)
