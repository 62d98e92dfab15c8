"""Device commands over MQTT 5 request/response: correlation data, response topic, expiry.

The platform publishes ``{"name", "args"}`` on the device's ``commands`` topic with
the MQTT 5 *response topic* ``trellis/v1/{tenant}/{device}/responses``, a random
*correlation data* and a *message expiry* equal to the caller's timeout (a device
that connects later than that never runs a stale command). The device answers on the
response topic, echoing the correlation data, with ``{"status": "ok", "result": …}``
or ``{"status": "error", "reason": …}``. Every ingest worker subscribes (not shared)
to the responses, so the worker that asked sees the answer; the others hold no
waiter for that correlation and ignore it.
"""

from __future__ import annotations

import asyncio
import enum
import secrets
import time
from typing import Any

import msgspec

__all__ = ["CommandOutcome", "CommandResult", "PendingCommands"]

#: The most commands one gateway waits for at once; more are refused, not queued.
MAX_PENDING = 10_000


class CommandOutcome(enum.StrEnum):
    """How a command ended."""

    ANSWERED = "answered"
    TIMED_OUT = "timed_out"
    DEVICE_ERROR = "device_error"


class CommandResult(msgspec.Struct, frozen=True):
    """What ``POST /api/v1/devices/{id}/commands`` returns."""

    device: str
    name: str
    correlation: str
    outcome: CommandOutcome
    elapsed_ms: int
    result: Any = None
    reason: str | None = None


class _Answer(msgspec.Struct, frozen=True):
    status: str = "ok"
    result: Any = None
    reason: str | None = None


_decoder = msgspec.json.Decoder(_Answer)


class PendingCommands:
    """Waiters keyed by correlation data; resolved from the event loop."""

    def __init__(self) -> None:
        self._waiting: dict[bytes, asyncio.Future[_Answer]] = {}

    def open(self) -> tuple[bytes, asyncio.Future[_Answer]]:
        """A fresh correlation and the future its answer will complete."""
        if len(self._waiting) >= MAX_PENDING:
            raise OverflowError(f"{MAX_PENDING} commands already wait for their answers")
        correlation = secrets.token_bytes(16)
        future: asyncio.Future[_Answer] = asyncio.get_running_loop().create_future()
        self._waiting[correlation] = future
        return correlation, future

    def close(self, correlation: bytes) -> None:
        """Forget a waiter (answered or timed out)."""
        self._waiting.pop(correlation, None)

    def resolve(self, correlation: bytes | None, payload: bytes) -> bool:
        """Complete the waiter of ``correlation``; False when nobody here waits for it."""
        future = self._waiting.get(correlation) if correlation is not None else None
        if future is None or future.done():
            return False
        try:
            answer = _decoder.decode(payload)
        except msgspec.DecodeError as exc:
            answer = _Answer("error", reason=f"the device's answer is not valid: {exc}")
        future.set_result(answer)
        return True


async def await_answer(
    pending: PendingCommands,
    correlation: bytes,
    future: asyncio.Future[_Answer],
    device: str,
    name: str,
    timeout_s: float,
) -> CommandResult:
    """Wait up to ``timeout_s`` for the answer and say clearly how the command ended."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            answer = await future
    except TimeoutError:
        return CommandResult(
            device,
            name,
            correlation.hex(),
            CommandOutcome.TIMED_OUT,
            int((time.monotonic() - started) * 1000),
            reason=f"no answer from device {device!r} within {timeout_s:g} s",
        )
    finally:
        pending.close(correlation)
    elapsed = int((time.monotonic() - started) * 1000)
    if answer.status == "ok":
        return CommandResult(
            device, name, correlation.hex(), CommandOutcome.ANSWERED, elapsed, answer.result
        )
    return CommandResult(
        device,
        name,
        correlation.hex(),
        CommandOutcome.DEVICE_ERROR,
        elapsed,
        answer.result,
        answer.reason or f"the device answered status {answer.status!r}",
    )
