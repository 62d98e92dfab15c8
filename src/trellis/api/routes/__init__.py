"""The REST API, version 1. Each resource has its own module and router; adding a
resource adds one module and one line in each list below (one name per line, so
parallel additions merge cleanly).

The modules' routes are copied into one flat router rather than included: FastAPI
(0.165) keeps included routers nested and walks every level twice per request (to match,
then to handle), which cost more CPU than anything else a cheap request did. ``router``
is the API as one list (what the gate and the policy schema walk); the app adds these
routes to its own router, so a request is matched once, at one level."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.routing import APIRoute

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

__all__ = ["copy_routes", "router"]


def copy_routes(target: APIRouter, source: APIRouter) -> None:
    """Add each route of ``source`` to ``target`` as it was declared (tags, responses,
    status, docs), under ``target``'s prefix and dependencies."""
    for route in source.routes:
        if not isinstance(route, APIRoute):
            raise TypeError(f"only path operations belong in an API module, not {route!r}")
        target.add_api_route(
            route.path,
            route.endpoint,
            methods=route.methods,
            response_model=route.response_model,
            status_code=route.status_code,
            tags=route.tags,
            dependencies=route.dependencies,
            summary=route.summary,
            description=route.description,
            response_description=route.response_description,
            responses=route.responses,
            deprecated=route.deprecated,
            operation_id=route.operation_id,
            include_in_schema=route.include_in_schema,
            response_class=route.response_class,
            name=route.name,
            openapi_extra=route.openapi_extra,
        )


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
    copy_routes(router, module.router)
copy_routes(router, auth.audit_router)
