"""Flow routes: save (a new version), list versions, deploy, revert, run the flow tests."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from trellis.api.deps import MAX_ROW_ID, PlatformDep, TenantDep
from trellis.api.encoding import documented, json_response
from trellis.rules.flows import (
    FlowTestResult,
    ModelNode,
    PredictNode,
    parse_flow,
    run_flow_tests,
)
from trellis.rules.flowstats import NodeStats, flow_node_stats
from trellis.rules.flowstore import FlowVersion

__all__ = ["router"]

router = APIRouter(tags=["flows"])


@router.get("/flows", responses=documented(list[FlowVersion]))
def list_flows(platform: PlatformDep, tenant: TenantDep) -> Response:
    """The newest version of every flow."""
    return json_response(platform.flows.find(tenant))


@router.get("/flows/{flow_id}", responses=documented(FlowVersion))
def get_flow(flow_id: str, platform: PlatformDep, tenant: TenantDep) -> Response:
    """The newest version of a flow."""
    return json_response(platform.flows.latest(tenant, flow_id))


@router.get("/flows/{flow_id}/versions", responses=documented(list[FlowVersion]))
def flow_versions(flow_id: str, platform: PlatformDep, tenant: TenantDep) -> Response:
    """Every version, newest first, with the deployed one marked."""
    return json_response(platform.flows.versions(tenant, flow_id))


@router.put("/flows/{flow_id}", responses=documented(FlowVersion))
async def put_flow(
    flow_id: str, request: Request, platform: PlatformDep, tenant: TenantDep
) -> Response:
    """Save a flow as its next version; it is validated first and not yet deployed."""
    try:
        flow = parse_flow(await request.body())
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if flow.id != flow_id:
        raise HTTPException(422, f"flow id {flow.id!r} in the body differs from {flow_id!r}")
    for index, node in enumerate(flow.nodes):
        if (
            isinstance(node, ModelNode | PredictNode)
            and platform.model_features(tenant, node.model) is None
        ):
            raise HTTPException(
                422,
                f"invalid flow: $.nodes[{index}] ({node.id}): unknown model {node.model!r}, "
                "or it has no version in production",
            )
    try:
        saved = await asyncio.to_thread(platform.flows.save, tenant, flow)
    except ValueError as exc:  # a sub-flow that does not exist, or leads back here
        raise HTTPException(422, str(exc)) from None
    return json_response(saved)


@router.get("/flows/{flow_id}/stats", responses=documented(list[NodeStats]))
def flow_stats(flow_id: str, platform: PlatformDep, tenant: TenantDep) -> Response:
    """Per node of the deployed version (the newest when none is): readings in, raises,
    clears, errors, actions, busy time; model calls, rows, timeouts and fallbacks for
    model nodes; the sums of the included rules for sub-flow nodes."""
    versions = platform.flows.versions(tenant, flow_id)
    chosen = next((v for v in versions if v.deployed), versions[0])
    engine = platform.rule_engine
    return json_response(
        flow_node_stats(chosen.flow, engine.stats(tenant), engine.model_stats(tenant))
    )


@router.post("/flows/{flow_id}/deploy", responses=documented(FlowVersion))
async def deploy_flow(
    flow_id: str,
    platform: PlatformDep,
    tenant: TenantDep,
    version: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
) -> Response:
    """Run a version (default the newest): its rules replace the flow's running rules."""
    try:
        deployed = await asyncio.to_thread(platform.flows.deploy, tenant, flow_id, version)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    await asyncio.to_thread(platform.rule_engine.reload)
    return json_response(deployed)


@router.post("/flows/{flow_id}/revert", responses=documented(FlowVersion))
async def revert_flow(
    flow_id: str,
    platform: PlatformDep,
    tenant: TenantDep,
    version: Annotated[int, Query(ge=1, le=MAX_ROW_ID)],
) -> Response:
    """Deploy an earlier version again, as the newest version."""
    reverted = await asyncio.to_thread(platform.flows.revert, tenant, flow_id, version)
    await asyncio.to_thread(platform.rule_engine.reload)
    return json_response(reverted)


@router.post("/flows/{flow_id}/tests", responses=documented(list[FlowTestResult]))
def run_tests(flow_id: str, platform: PlatformDep, tenant: TenantDep) -> Response:
    """Run the unit tests the newest version carries."""
    flow = platform.flows.latest(tenant, flow_id).flow
    return json_response(run_flow_tests(flow, resolve=platform.flows.resolver(tenant)))


@router.delete("/flows/{flow_id}", status_code=204)
async def delete_flow(flow_id: str, platform: PlatformDep, tenant: TenantDep) -> Response:
    """Delete the flow, its versions and its rules."""
    await asyncio.to_thread(platform.flows.delete, tenant, flow_id)
    await asyncio.to_thread(platform.rule_engine.reload)
    return Response(status_code=204)
