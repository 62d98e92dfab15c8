"""The dashboard's asset tree page: the semantic model as nested lists, and a point finder
by Brick class and place (a plain GET form, so it works without JavaScript)."""

from __future__ import annotations

from collections import Counter
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from trellis.api.deps import PlatformDep
from trellis.core.errors import NotFoundError
from trellis.semantic.brick import SemanticError, brick_classes

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


@router.get("/semantic", response_class=HTMLResponse)
def semantic_page(
    request: Request,
    platform: PlatformDep,
    brick_class: Annotated[str | None, Query(alias="class")] = None,
    within: str | None = None,
) -> HTMLResponse:
    """The asset tree, and the points of a class inside a place when the form asks."""
    from trellis.ui.routes import _render

    semantic, tenant = platform.semantic, platform.tenant
    nodes = semantic.nodes(tenant)
    points = None
    error = ""
    if brick_class or within:
        try:
            points = semantic.points(tenant, brick_class or None, within or None)
        except (SemanticError, NotFoundError) as exc:
            error = str(exc)
    return _render(
        request,
        "semantic.html",
        {
            "tree": semantic.tree(tenant),
            "counts": Counter(node.kind for node in nodes),
            "places": [node for node in nodes if node.kind != "point"],
            "classes": sorted(brick_classes().descendants("Point")),
            "brick_class": brick_class or "",
            "within": within or "",
            "points": points,
            "error": error,
        },
        422 if error else 200,
    )
