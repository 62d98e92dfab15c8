"""The dashboard's data fabric pages: device models and their compiled contracts, the
quarantine (reason, original bytes, replay), and the lineage of any item, an alert
back to its readings and their source messages in particular."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from trellis.api.deps import PlatformDep
from trellis.api.routes.fabric import replay_entries
from trellis.contracts.compiled import ContractError, contract_of
from trellis.core.errors import ClosedError, NotFoundError
from trellis.lineage.graph import KINDS, LineageGraph
from trellis.platform import Platform

__all__ = ["lineage_rows", "router"]

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


def _model_view(platform: Platform, name: str) -> dict[str, Any]:
    versions = platform.registry.model_versions(name)
    if not versions:
        raise NotFoundError("device model", name)
    current = versions[-1]
    contract_error = None
    checks: list[dict[str, Any]] = []
    try:
        contract = contract_of(current)
    except ContractError as exc:
        contract_error = str(exc)
    else:
        for metric, spec in current.metrics.items():
            check = contract.metrics[metric]
            checks.append(
                {
                    "metric": metric,
                    "model_unit": spec.unit,
                    "unit": check.unit,
                    "minimum": check.minimum,
                    "maximum": check.maximum,
                    "conversion": None
                    if check.identity
                    else f"× {check.scale:.6g} + {check.offset:.6g}",
                    "description": spec.description,
                }
            )
    devices = [d for d in platform.registry.find(platform.tenant) if d.model == name]
    return {
        "model": current,
        "versions": versions,
        "checks": checks,
        "contract_error": contract_error,
        "devices": devices[:50],
        "device_count": len(devices),
    }


@router.get("/device-models")
async def device_models_page(request: Request, platform: PlatformDep) -> HTMLResponse:
    """Every device model in use, its version, metrics, mappings and devices."""
    from trellis.ui.routes import _render

    models = sorted(platform.registry.models.values(), key=lambda m: m.name)
    counts: dict[str, int] = {}
    for device in platform.registry.find(platform.tenant):
        counts[device.model] = counts.get(device.model, 0) + 1
    return _render(request, "device_models.html", {"models": models, "counts": counts})


@router.get("/device-models/{name}")
async def device_model_page(name: str, request: Request, platform: PlatformDep) -> HTMLResponse:
    """One model: its versions and the compiled contract (unit, range, normalisation)."""
    from trellis.ui.routes import _not_found, _render

    try:
        view = await asyncio.to_thread(_model_view, platform, name)
    except NotFoundError:
        return _not_found(request, f"There is no device model {name!r}.")
    return _render(request, "device_model.html", view)


@router.get("/quarantine")
async def quarantine_page(
    request: Request, platform: PlatformDep, all: bool = False, page: int = 1
) -> HTMLResponse:
    """Refused messages, newest first, 50 a page; pending only unless ``all``."""
    from trellis.ui.routes import _render

    page = max(page, 1)
    quarantine = platform.quarantine
    entries = await asyncio.to_thread(
        quarantine.find, platform.tenant, 51, (page - 1) * 50, pending=not all
    )
    pending = await asyncio.to_thread(quarantine.count, platform.tenant, pending=True)
    return _render(
        request,
        "quarantine.html",
        {
            "entries": entries[:50],
            "more": len(entries) > 50,
            "page": page,
            "all": all,
            "pending": pending,
        },
    )


def _entry_view(platform: Platform, entry_id: int) -> dict[str, Any]:
    entry = platform.quarantine.get(entry_id, platform.tenant)
    payload = entry.message.payload
    try:
        text, binary = payload.decode("utf-8"), False
    except UnicodeDecodeError:
        text, binary = payload.hex(" "), True
    return {"entry": entry, "payload": text, "binary": binary}


@router.get("/quarantine/{entry_id:int}")
async def quarantine_entry_page(
    entry_id: int, request: Request, platform: PlatformDep
) -> HTMLResponse:
    """One refused message: the reason, the contract version, the original bytes."""
    from trellis.ui.routes import _not_found, _render

    try:
        view = await asyncio.to_thread(_entry_view, platform, entry_id)
    except NotFoundError:
        return _not_found(request, f"There is no quarantined message {entry_id}.")
    return _render(request, "quarantine_entry.html", view | {"outcome": None})


@router.post("/quarantine/{entry_id:int}/replay", response_model=None)
async def replay_entry(entry_id: int, request: Request, platform: PlatformDep) -> Response:
    """Replay one entry with today's models; the page shows what became of it (origin
    and CSRF are checked by the dashboard's guard)."""
    from trellis.ui.routes import _not_found, _render

    try:
        view = await asyncio.to_thread(_entry_view, platform, entry_id)
    except NotFoundError:
        return _not_found(request, f"There is no quarantined message {entry_id}.")
    report, recovered = await asyncio.to_thread(
        replay_entries, platform, platform.tenant, [entry_id]
    )
    for readings in recovered:
        with contextlib.suppress(ClosedError):
            await platform.bus.publish(readings)
    outcome = report.outcomes[0] if report.outcomes else None
    view = await asyncio.to_thread(_entry_view, platform, entry_id)
    return _render(request, "quarantine_entry.html", view | {"outcome": outcome})


@router.post("/quarantine/replay", response_model=None)
async def replay_pending(request: Request, platform: PlatformDep) -> Response:
    """Replay every pending entry of the tenant, then show the list."""

    _, recovered = await asyncio.to_thread(replay_entries, platform, platform.tenant, [])
    for readings in recovered:
        with contextlib.suppress(ClosedError):
            await platform.bus.publish(readings)
    return RedirectResponse("/quarantine", status_code=303)


def lineage_rows(graph: LineageGraph) -> list[dict[str, Any]]:
    """The graph as indented rows from its root (depth-first, each node expanded once),
    for a page that needs no JavaScript."""
    nodes = {n.key: n for n in graph.nodes}
    children: dict[str, list[tuple[str, str]]] = {}
    for edge in graph.edges:
        children.setdefault(edge.source, []).append((edge.relation, edge.target))
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()

    def visit(key: str, relation: str, depth: int) -> None:
        node = nodes[key]
        rows.append({"node": node, "relation": relation, "depth": depth, "repeat": key in seen})
        if key in seen:
            return
        seen.add(key)
        for child_relation, child in children.get(key, []):
            visit(child, child_relation, depth + 1)

    visit(graph.root, "", 0)
    return rows


@router.get("/lineage/{kind}/{ident:path}")
async def lineage_page(
    kind: str, ident: str, request: Request, platform: PlatformDep
) -> HTMLResponse:
    """Where an item came from: readings to messages, seq, contract and mapping version."""
    from trellis.ui.routes import _not_found, _render

    if kind not in KINDS:
        return _not_found(request, f"Unknown lineage kind {kind!r}; known: {', '.join(KINDS)}.")
    try:
        graph = await asyncio.to_thread(platform.lineage_walker.walk, platform.tenant, kind, ident)
    except (NotFoundError, ValueError) as exc:
        return _not_found(request, str(exc))
    return _render(
        request,
        "lineage.html",
        {"graph": graph, "rows": lineage_rows(graph), "kind": kind, "ident": ident},
    )
