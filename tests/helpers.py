"""Small helpers the tests import: running a coroutine, building telemetry messages."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine
from typing import Any, TypeVar

import msgspec

from trellis.core.types import RawMessage
from trellis.ingest.decode import telemetry_topic

T = TypeVar("T")

TENANT = "default"
PUMPS = ("pump-0001", "pump-0002")
ROOMS = ("room-0001", "room-0002")
#: A fixed receive time (2025-11-25T03:40:00Z) so timestamps in tests are stable.
NOW_MS = 1_764_042_000_000

_ids = itertools.count(1)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine on a fresh event loop (pytest-asyncio is not a dependency)."""
    return asyncio.run(coroutine)


def telemetry(
    device: str,
    values: dict[str, Any] | None = None,
    *,
    ts: Any = NOW_MS,
    seq: int | None = None,
    payload: bytes | None = None,
    tenant: str = TENANT,
    received_ms: int = NOW_MS,
    message_id: str | None = None,
) -> RawMessage:
    """A telemetry message from ``device``; ``payload`` replaces the generated JSON body."""
    if payload is None:
        body: dict[str, Any] = {"values": values if values is not None else {}}
        if ts is not None:
            body["ts"] = ts
        if seq is not None:
            body["seq"] = seq
        payload = msgspec.json.encode(body)
    return RawMessage(
        id=message_id or f"msg-{next(_ids)}",
        source="test",
        topic=telemetry_topic(tenant, device),
        payload=payload,
        received_ms=received_ms,
    )
