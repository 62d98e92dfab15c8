"""Semantic model routes: the asset tree, points by Brick class and place, Brick Turtle in/out."""

from __future__ import annotations

import asyncio
from typing import Annotated

import msgspec
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from trellis.api.deps import PlatformDep, TenantDep
from trellis.api.encoding import documented, json_response
from trellis.semantic.brick import brick_classes
from trellis.semantic.model import Node, SemanticError, TreeNode
from trellis.semantic.turtle import export_turtle, parse_turtle

__all__ = ["ImportReport", "NodeIn", "router"]

router = APIRouter(tags=["semantic"])
#: A Brick file is a few hundred kB at most; anything bigger is not a building model.
MAX_TURTLE_BYTES = 8 * 1024 * 1024


class NodeIn(BaseModel):
    """A node of the asset tree; a point binds ``device`` and ``metric``."""

    brick_class: str = Field(examples=["Zone_Air_Temperature_Sensor"])
    name: str = ""
    parent: str | None = None
    device: str | None = None
    metric: str | None = None
    tags: list[str] = []


class ImportReport(msgspec.Struct, frozen=True):
    """What an import stored."""

    nodes: int
    relations: int
    replaced: bool


@router.get("/semantic/points", responses=documented(list[Node]))
def semantic_points(
    platform: PlatformDep,
    tenant: TenantDep,
    brick_class: Annotated[
        str | None,
        Query(alias="class", description="a Brick class; its subclasses are included"),
    ] = None,
    within: Annotated[str | None, Query(description="a node id: site, floor, zone, asset")] = None,
    tag: Annotated[list[str] | None, Query(description="tags every point must carry")] = None,
) -> Response:
    """Points by class and place: "all Supply_Air_Temperature_Sensor within B2"."""
    try:
        found = platform.semantic.points(tenant, brick_class, within, tag or [])
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return json_response(found)


@router.get("/semantic/tree", responses=documented(list[TreeNode]))
def semantic_tree(
    platform: PlatformDep,
    tenant: TenantDep,
    root: Annotated[
        str | None, Query(description="a node id; the whole forest when omitted")
    ] = None,
) -> Response:
    """The asset tree: sites, buildings, floors, zones, equipment, points."""
    return json_response(platform.semantic.tree(tenant, root))


@router.get("/semantic/classes", responses=documented(list[str]))
def semantic_classes(
    under: Annotated[str, Query(description="Point, Equipment, Location or any class")] = "Point",
) -> Response:
    """The Brick classes Trellis knows under ``under`` (itself included), sorted."""
    try:
        root = brick_classes().require(under, "under")
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return json_response(sorted(brick_classes().descendants(root)))


@router.get("/semantic/nodes/{node_id}", responses=documented(Node))
def get_node(node_id: str, platform: PlatformDep, tenant: TenantDep) -> Response:
    """One node."""
    return json_response(platform.semantic.get(tenant, node_id))


@router.put("/semantic/nodes/{node_id}", responses=documented(Node))
async def put_node(
    node_id: str, body: NodeIn, platform: PlatformDep, tenant: TenantDep
) -> Response:
    """Create or move a node; an unknown class, a missing parent or a cycle is a 422."""
    node = Node(
        id=node_id,
        brick_class=body.brick_class,
        name=body.name,
        parent=body.parent,
        device=body.device,
        metric=body.metric,
        tags=body.tags,
    )
    try:
        await asyncio.to_thread(platform.semantic.put, tenant, [node])
    except SemanticError as exc:
        raise HTTPException(422, str(exc)) from None
    return json_response(node)


@router.delete("/semantic/nodes/{node_id}", status_code=204)
async def delete_node(node_id: str, platform: PlatformDep, tenant: TenantDep) -> Response:
    """Delete a node without children (409 while it has some)."""
    await asyncio.to_thread(platform.semantic.delete, tenant, node_id)
    return Response(status_code=204)


@router.post(
    "/semantic/import",
    responses=documented(ImportReport),
    openapi_extra={
        "requestBody": {
            "content": {"text/turtle": {"schema": {"type": "string"}}},
            "required": True,
        }
    },
)
async def import_brick(
    request: Request,
    platform: PlatformDep,
    tenant: TenantDep,
    replace: Annotated[
        bool, Query(description="replace the tenant's whole model instead of merging")
    ] = False,
) -> Response:
    """Import a Brick Turtle file; unknown classes, cycles and dangling parts are a 422
    naming them, and nothing is stored then."""
    body = await request.body()
    if len(body) > MAX_TURTLE_BYTES:
        raise HTTPException(413, f"a Brick file is limited to {MAX_TURTLE_BYTES} bytes")
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise HTTPException(422, "the Turtle file must be UTF-8") from None
    try:
        nodes, relations = await asyncio.to_thread(parse_turtle, text)
        await asyncio.to_thread(platform.semantic.put, tenant, nodes, relations, replace=replace)
    except SemanticError as exc:
        raise HTTPException(422, str(exc)) from None
    return json_response(ImportReport(len(nodes), len(relations), replace))


@router.get(
    "/semantic/export",
    responses={200: {"content": {"text/turtle": {"schema": {"type": "string"}}}}},
)
def export_brick(platform: PlatformDep, tenant: TenantDep) -> Response:
    """The tenant's model as Brick Turtle (what import reads back)."""
    semantic = platform.semantic
    text = export_turtle(tenant, semantic.nodes(tenant), semantic.relations(tenant))
    return Response(text, media_type="text/turtle")
