"""The errors of the model registry and inference, each naming what to fix.

::

    TrellisError
     ├── MissingExtraError      a model feature was used without ``trellis-aiot[ml]``
     ├── ModelFileError         the artifact is not ONNX, is corrupt, or fails its hash
     ├── SignatureError         features do not match what the model declares
     ├── ModelFailedError       the model threw while predicting (isolated, alerted)
     ├── NotFoundError          (core) no such model or version  -> HTTP 404
     └── ConflictError          (core) e.g. a promotion is already running -> HTTP 409
"""

from __future__ import annotations

from trellis.core.errors import TrellisError

__all__ = ["MissingExtraError", "ModelFailedError", "ModelFileError", "SignatureError"]


class MissingExtraError(TrellisError):
    """The optional ML stack is not installed."""

    def __init__(self, module: str) -> None:
        super().__init__(
            f"model features need the optional ML stack ({module} is not installed): "
            "pip install 'trellis-aiot[ml]'"
        )


class ModelFileError(TrellisError):
    """A model artifact that cannot be served: not ONNX, corrupt, or tampered with."""


class SignatureError(TrellisError):
    """Inputs that do not fit the model's signature (names, count, NaN, device model)."""


class ModelFailedError(TrellisError):
    """The model raised while predicting; the caller falls back, an alert says so."""

    def __init__(self, name: str, version: str, reason: str) -> None:
        super().__init__(f"model {name} {version} failed to predict: {reason}")
        self.name = name
        self.version = version
        self.reason = reason
