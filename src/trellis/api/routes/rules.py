"""Rule routes: rules as data, validated before they are saved."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from trellis.api.deps import PlatformDep
from trellis.api.encoding import documented, json_response
from trellis.rules.model import ThresholdRule
from trellis.rules.store import parse_rule

__all__ = ["router"]

router = APIRouter(tags=["rules"])


@router.get("/rules", responses=documented(list[ThresholdRule]))
def list_rules(platform: PlatformDep) -> Response:
    """The tenant's rules."""
    return json_response([rule for _, rule in platform.rules.find(platform.tenant)])


@router.put("/rules/{rule_id}", responses=documented(ThresholdRule))
async def put_rule(rule_id: str, request: Request, platform: PlatformDep) -> Response:
    """Create or replace a rule; it is validated before it is saved."""
    body = await request.body()
    try:
        rule = parse_rule(body)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if rule.id != rule_id:
        raise HTTPException(422, f"rule id {rule.id!r} in the body differs from {rule_id!r}")
    await asyncio.to_thread(platform.rules.put, platform.tenant, rule)
    await asyncio.to_thread(platform.rule_engine.reload)
    return json_response(rule)


@router.delete("/rules/{rule_id}", status_code=204)
async def delete_rule(rule_id: str, platform: PlatformDep) -> Response:
    """Delete a rule; its open alerts stay open until resolved."""
    await asyncio.to_thread(platform.rules.delete, platform.tenant, rule_id)
    await asyncio.to_thread(platform.rule_engine.reload)
    return Response(status_code=204)
