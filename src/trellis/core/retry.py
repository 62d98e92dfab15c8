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
) -> T:
    """Await ``attempt()`` until it returns; transient errors are retried forever.

    The caller stalls meanwhile, and through bounded queues so do its producers:
    backpressure instead of loss.
    """
    failures = 0
    while True:
        try:
            result = await attempt()
        except TRANSIENT as exc:
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
