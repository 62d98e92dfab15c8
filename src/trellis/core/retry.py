"""Retry a write until it succeeds, for the places where giving up would lose data.

Backoff is capped and jittered (as aiomqtt's reconnect loop), and the log records
the first failure and the recovery, not every attempt.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import OperationalError

from trellis.core.errors import TrellisError

__all__ = ["TRANSIENT", "backoff_delay", "retry_until_done"]

T = TypeVar("T")

#: Errors worth waiting out: a full or locked disk, a database briefly unavailable.
TRANSIENT: tuple[type[BaseException], ...] = (TrellisError, OperationalError, OSError)


def backoff_delay(attempt: int, base_s: float, cap_s: float) -> float:
    """Seconds to wait before retry ``attempt`` (1 for the first retry): exponential
    from ``base_s``, capped at ``cap_s``, jittered over the upper half so that many
    callers failing together do not retry together."""
    ceiling = min(cap_s, base_s * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


async def retry_until_done(
    attempt: Callable[[], Awaitable[T]],
    *,
    what: str,
    logger: logging.Logger,
    on_retry: Callable[[], None] | None = None,
    max_delay_s: float = 5.0,
    give_up_on: tuple[type[BaseException], ...] = (),
    give_up_after: int = 3,
) -> T:
    """Await ``attempt()`` until it returns; transient errors are retried forever.

    The caller stalls meanwhile, and through bounded queues so do its producers:
    backpressure instead of loss. An error of a ``give_up_on`` type says retrying cannot
    help (the data itself is refused): after ``give_up_after`` such failures in a row
    it is raised, so the caller can set the offending data aside instead of stalling.
    """
    failures = 0
    refusals = 0
    while True:
        try:
            result = await attempt()
        except TRANSIENT as exc:
            refusals = refusals + 1 if isinstance(exc, give_up_on) else 0
            if refusals >= give_up_after:
                if failures:
                    logger.warning("%s gave up after %d attempts: %s", what, failures + 1, exc)
                raise
            failures += 1
            if on_retry is not None:
                on_retry()
            if failures == 1:
                logger.error("%s failed, retrying until it succeeds: %s", what, exc)
            await asyncio.sleep(backoff_delay(failures, 0.05, max_delay_s))
            continue
        if failures:
            logger.warning("%s recovered after %d retries", what, failures)
        return result
