"""JSON responses straight from msgspec structs, documented in the OpenAPI schema.

FastAPI documents pydantic models; Trellis's types are msgspec structs (several
times faster on the hot path, see DESIGN.md). Rather than mirror every struct in
pydantic, routes return :func:`json_response` and declare their schema with
:func:`documented`; :func:`install_openapi` then puts msgspec's JSON Schema for
those types into the app's OpenAPI document.
"""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import FastAPI
from fastapi.responses import Response

__all__ = ["documented", "install_openapi", "json_response"]

_MARK = "x-trellis-msgspec"
_types: list[Any] = []
_encoder = msgspec.json.Encoder()


def json_response(content: object, status_code: int = 200) -> Response:
    """``content`` encoded by msgspec as ``application/json``."""
    return Response(_encoder.encode(content), status_code, media_type="application/json")


def documented(tp: Any, status_code: int = 200, description: str = "OK") -> dict[int | str, Any]:
    """The ``responses=`` argument of a route that returns ``tp``."""
    if tp not in _types:
        _types.append(tp)
    return {
        status_code: {
            "description": description,
            "content": {"application/json": {"schema": {_MARK: _types.index(tp)}}},
        }
    }


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` resolve :func:`documented` types to JSON Schema."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schemas, components = msgspec.json.schema_components(
            _types, ref_template="#/components/schemas/{name}"
        )
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                for response in operation.get("responses", {}).values():
                    media = response.get("content", {}).get("application/json", {})
                    marker = media.get("schema", {})
                    if _MARK in marker:
                        media["schema"] = schemas[marker[_MARK]]
        schema.setdefault("components", {}).setdefault("schemas", {}).update(components)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented hook
