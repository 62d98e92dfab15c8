"""The optional ML stack: checked once, with an error that says how to install it."""

from __future__ import annotations

import functools
import importlib.util

from trellis.ml.errors import MissingExtraError

__all__ = ["require_ml"]

#: Import names of the ``ml`` extra that serving and training need.
_MODULES = ("numpy", "onnx", "onnxruntime", "sklearn", "skl2onnx", "river", "scipy")


@functools.cache
def _missing() -> str | None:
    for module in _MODULES:
        try:
            if importlib.util.find_spec(module) is None:
                return module
        except (ImportError, ValueError):
            return module
    return None


def require_ml() -> None:
    """Raise :class:`MissingExtraError` unless ``trellis-aiot[ml]`` is installed."""
    missing = _missing()
    if missing is not None:
        raise MissingExtraError(missing)
