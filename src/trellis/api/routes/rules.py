"""Rule routes: rules as data, validated before they are saved; stats, dry runs, dead letters."""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from trellis.api.deps import PlatformDep, TenantDep, time_range
from trellis.api.encoding import documented, json_response
from trellis.rules.actions import RuleDeadLetter
from trellis.rules.dryrun import DryRun, dry_run, parse_since
from trellis.rules.engine import RuleStats, TraceEntry
from trellis.rules.model import ThresholdRule
from trellis.rules.spec import PredictAction, StreamRule
from trellis.rules.store import AnyRule, parse_rule

if TYPE_CHECKING:
    from trellis.platform import Platform

__all__ = ["router"]

router = APIRouter(tags=["rules"])

#: A threshold rule or a stream rule (the schemas of ThresholdRule and StreamRule);
#: msgspec cannot document a union of untagged structs, and tagging would change the
#: rule files people already keep in git.
RuleDefinition = dict[str, Any]


def _known_metric(platform: Platform, tenant: str, rule: AnyRule) -> None:
    """A rule must name a metric some device model has, and models that exist."""
    models = platform.registry.models
    wanted = (
        ([rule.model] if rule.model else [])
        if isinstance(rule, ThresholdRule)
        else rule.select.models
    )
    unknown = sorted(set(wanted) - set(models))
    if unknown:
        raise HTTPException(422, f"$.select.models: unknown model(s) {', '.join(unknown)}")
    missing = [n for n in rule.select.within if n not in _node_ids(platform, tenant)]
    if missing:
        raise HTTPException(
            422, f"$.select.within: no node(s) {', '.join(missing)} in the semantic model"
        )
    if isinstance(rule, StreamRule):
        named = ([rule.model.name] if rule.model else []) + [
            action.model for action in rule.actions if isinstance(action, PredictAction)
        ]
        for index, name in enumerate(named):
            if platform.model_features(tenant, name) is None:
                field = "$.model.name" if rule.model and index == 0 else "$.actions"
                raise HTTPException(
                    422, f"{field}: unknown model {name!r}, or it has no version in production"
                )
    if not rule.metric:
        return  # a point selector: each point's own metric is judged
    candidates = [models[name] for name in wanted] or list(models.values())
    if not any(rule.metric in model.metrics for model in candidates):
        known = sorted({m for model in candidates for m in model.metrics})
        raise HTTPException(
            422, f"$.metric: no selected model measures {rule.metric!r}; known: {', '.join(known)}"
        )


def _node_ids(platform: Platform, tenant: str) -> set[str]:
    return {node.id for node in platform.semantic.nodes(tenant)}


@router.get("/rules", responses=documented(list[RuleDefinition]))
def list_rules(platform: PlatformDep, tenant: TenantDep) -> Response:
    """The tenant's rules."""
    return json_response([rule for _, rule in platform.rules.find(tenant)])


@router.get("/rules/stats", responses=documented(list[RuleStats]))
def rule_stats(platform: PlatformDep, tenant: TenantDep) -> Response:
    """Per-rule readings judged, raises, clears, errors, suppressed, late, actions, busy time."""
    return json_response(platform.rule_engine.stats(tenant))


@router.get("/rules/dead-letters", responses=documented(list[RuleDeadLetter]))
def dead_letters(
    platform: PlatformDep, tenant: TenantDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> Response:
    """Rule actions that failed every retry, newest first."""
    return json_response(platform.rule_engine.actions.dead_letters(tenant, limit))


@router.get("/rules/{rule_id}/trace", responses=documented(list[TraceEntry]))
def rule_trace(rule_id: str, platform: PlatformDep, tenant: TenantDep) -> Response:
    """The rule's last judgements ``[device, ts, value, holds]``, for a live debug view.

    Recording starts with the first call and stops 30 s after the last one."""
    platform.rules.get(tenant, rule_id)  # 404 for a rule the tenant does not have
    return json_response(platform.rule_engine.trace(tenant, rule_id))


@router.get("/rules/{rule_id}", responses=documented(RuleDefinition))
def get_rule(rule_id: str, platform: PlatformDep, tenant: TenantDep) -> Response:
    """One rule."""
    return json_response(platform.rules.get(tenant, rule_id))


@router.put("/rules/{rule_id}", responses=documented(RuleDefinition))
async def put_rule(
    rule_id: str, request: Request, platform: PlatformDep, tenant: TenantDep
) -> Response:
    """Create or replace a rule; it is validated before it is saved."""
    body = await request.body()
    try:
        rule = parse_rule(body)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if rule.id != rule_id:
        raise HTTPException(422, f"rule id {rule.id!r} in the body differs from {rule_id!r}")
    _known_metric(platform, tenant, rule)
    try:
        await asyncio.to_thread(platform.rules.put, tenant, rule)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    await asyncio.to_thread(platform.rule_engine.reload)
    return json_response(rule)


@router.post("/rules/{rule_id}/enabled", responses=documented(RuleDefinition))
async def set_enabled(
    rule_id: str, platform: PlatformDep, tenant: TenantDep, enabled: Annotated[bool, Query()] = True
) -> Response:
    """Enable or disable a rule; disabling keeps its open alerts open."""
    rule = await asyncio.to_thread(platform.rules.set_enabled, tenant, rule_id, enabled)
    await asyncio.to_thread(platform.rule_engine.reload)
    return json_response(rule)


@router.post("/rules/{rule_id}/test", responses=documented(DryRun))
async def replay_rule(
    rule_id: str,
    platform: PlatformDep,
    tenant: TenantDep,
    since: Annotated[str | None, Query(description="-24h, -30m, -7d (instead of start)")] = None,
    start: Annotated[str | None, Query(description="epoch ms or RFC 3339")] = None,
    end: Annotated[str | None, Query(description="epoch ms or RFC 3339; default now")] = None,
) -> Response:
    """What the rule would have fired over stored data; nothing is written."""
    rule = await asyncio.to_thread(platform.rules.get, tenant, rule_id)
    start_ms, end_ms = time_range(start, end, default_span_ms=86_400_000)
    if since is not None:
        try:
            start_ms = parse_since(since, end_ms)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
    result = await asyncio.to_thread(
        functools.partial(dry_run, semantic=platform.semantic),
        rule,
        platform.store,
        platform.registry,
        tenant,
        start_ms,
        end_ms,
    )
    return json_response(result)


@router.delete("/rules/{rule_id}", status_code=204)
async def delete_rule(rule_id: str, platform: PlatformDep, tenant: TenantDep) -> Response:
    """Delete a rule; its open alerts stay open until resolved."""
    await asyncio.to_thread(platform.rules.delete, tenant, rule_id)
    await asyncio.to_thread(platform.rule_engine.reload)
    return Response(status_code=204)
