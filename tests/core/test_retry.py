"""retry_until_done: transient errors are waited out forever, refusals only so often."""

from __future__ import annotations

import logging

import pytest

from tests.helpers import run
from trellis.core.errors import StoreError, WriteRefusedError
from trellis.core.retry import retry_until_done

log = logging.getLogger(__name__)


class Script:
    """An attempt that raises the given errors in turn, then returns how often it ran."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> int:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.calls


def test_transient_errors_are_retried_until_success() -> None:
    """Plain store errors never end the retrying, even with give_up_on set."""
    attempt = Script(*[StoreError("connection lost")] * 4)
    got = run(
        retry_until_done(
            attempt, what="w", logger=log, max_delay_s=0.001, give_up_on=(WriteRefusedError,)
        )
    )
    assert got == 5


def test_refusals_in_a_row_are_raised_after_the_limit() -> None:
    """The give_up_after-th refusal in a row propagates, so the caller can set data aside."""
    attempt = Script(*[WriteRefusedError("check violated")] * 5)
    with pytest.raises(WriteRefusedError, match="check violated"):
        run(
            retry_until_done(
                attempt,
                what="w",
                logger=log,
                max_delay_s=0.001,
                give_up_on=(WriteRefusedError,),
                give_up_after=3,
            )
        )
    assert attempt.calls == 3


def test_a_transient_error_resets_the_refusal_count() -> None:
    """Refusals separated by a lost connection are not 'in a row': retrying goes on."""
    refused, lost = WriteRefusedError("refused"), StoreError("lost")
    attempt = Script(refused, refused, lost, refused, refused)
    got = run(
        retry_until_done(
            attempt,
            what="w",
            logger=log,
            max_delay_s=0.001,
            give_up_on=(WriteRefusedError,),
            give_up_after=3,
        )
    )
    assert got == 6


def test_without_give_up_on_refusals_are_retried_like_any_error() -> None:
    """Callers that must never give up (the default) keep retrying refusals too."""
    attempt = Script(*[WriteRefusedError("refused")] * 4)
    assert run(retry_until_done(attempt, what="w", logger=log, max_delay_s=0.001)) == 5
