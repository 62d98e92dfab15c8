"""Request-scoped access to the running platform, and the query types routes share."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from trellis.core.clock import now_ms, parse_timestamp
from trellis.platform import Platform

__all__ = ["PlatformDep", "get_platform", "time_range"]


async def get_platform(request: Request) -> Platform:
    """The platform the app's lifespan started (``async``: a sync dependency would cost
    every request a hop through the thread pool for one attribute read)."""
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]


def _instant(value: str, name: str) -> int:
    try:
        return parse_timestamp(int(value) if value.lstrip("-").isdigit() else value)
    except ValueError as exc:
        raise HTTPException(422, f"query parameter {name!r}: {exc}") from None


def time_range(
    start: str | None, end: str | None, default_span_ms: int = 3_600_000
) -> tuple[int, int]:
    """``[start, end)`` in epoch ms from epoch-ms or RFC 3339 query values.

    ``end`` defaults to now, ``start`` to ``default_span_ms`` before ``end``.
    """
    end_ms = now_ms() + 1 if end is None else _instant(end, "end")
    start_ms = end_ms - default_span_ms if start is None else _instant(start, "start")
    if start_ms >= end_ms:
        raise HTTPException(422, f"start ({start_ms}) must be before end ({end_ms})")
    return start_ms, end_ms
