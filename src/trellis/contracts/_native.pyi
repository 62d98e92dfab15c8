# The C decoder built from _native.c; see trellis.contracts.accelerator.
from collections.abc import Callable, Sequence
from typing import Any

from trellis.core.types import Reading

__all__ = ["Spec"]

class Spec:
    def __init__(
        self,
        parse: Callable[[bytes], Any],
        payload_type: type[Any],
        values_type: type[Any],
        invalid: tuple[type[BaseException], ...],
        parse_timestamp: Callable[[Any], int],
        reading_type: type[Reading],
        good: object,
        unset: object,
        metrics: Sequence[tuple[str, str, str, float, float, bool, float | None, float | None]],
    ) -> None: ...
    def __call__(
        self,
        payload: bytes,
        received: int,
        tenant: str,
        device: str,
        given_seq: int | None,
        message_id: str,
        oldest: int,
        newest: int,
        /,
    ) -> list[Reading] | None: ...
