"""The C decoder of native payloads, when it is built; the generated Python otherwise.

``trellis.contracts._native`` is compiled from ``_native.c`` at install time when a C
compiler is there (``hatch_build.py``); without one the install still succeeds and
every contract decodes with its generated Python function, the same readings at about
two thirds of the speed. ``TRELLIS_PURE_PYTHON=1`` in the environment turns the C
decoder off (to rule it out when chasing a bug). :func:`status` says which is in use.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from trellis.core.types import Reading

__all__ = ["NativeDecode", "native_spec", "status"]

log = logging.getLogger(__name__)

#: ``decode(payload, received_ms, tenant, device, seq, message_id, oldest, newest)``:
#: the readings of a native payload, or None; ``oldest``/``newest`` bound ``ts - received``.
NativeDecode = Callable[[bytes, int, str, str, int | None, str, int, int], list[Reading] | None]

_native: Any
try:
    from trellis.contracts import _native
except ImportError as exc:  # not built: no compiler at install time
    _native, _missing = None, str(exc)
else:
    _missing = ""

_DISABLED = os.environ.get("TRELLIS_PURE_PYTHON", "") not in ("", "0")


def status() -> str:
    """``"c"`` when contracts decode in C, else why they decode in Python."""
    if _DISABLED:
        return "python (TRELLIS_PURE_PYTHON is set)"
    if _native is None:
        return f"python (the C decoder is not built: {_missing})"
    return "c"


def native_spec(
    *,
    parse: Callable[[bytes], Any],
    payload_type: type[Any],
    values_type: type[Any],
    invalid: tuple[type[BaseException], ...],
    parse_timestamp: Callable[[Any], int],
    reading_type: type[Reading],
    good: object,
    unset: object,
    metrics: Sequence[tuple[str, str, str, float, float, bool, float | None, float | None]],
) -> NativeDecode | None:
    """The C decoder for one contract, or None when contracts decode in Python.

    ``metrics`` holds, per metric in the model's order: the values struct's field,
    the metric's name, its stored unit, ``scale`` and ``offset`` (stored = value *
    scale + offset), whether that is the identity, and the stored range to check
    (None, None where the struct's msgspec constraints already enforce it).
    """
    if _native is None or _DISABLED:
        return None
    try:
        decode: NativeDecode = _native.Spec(
            parse,
            payload_type,
            values_type,
            invalid,
            parse_timestamp,
            reading_type,
            good,
            unset,
            metrics,
        )
    except TypeError:  # a struct the C decoder cannot read: a bug, but not a fatal one
        log.exception("the C decoder refused a contract; it decodes in Python instead")
        return None
    return decode
