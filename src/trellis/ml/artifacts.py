"""Model artifacts stored by content: the file's sha256 is its name.

The default store is a local directory (``<data_dir>/artifacts``). An S3-compatible
store (``s3://bucket/prefix``) implements the same two methods; see docs/models.md.
Reading verifies the hash, so a file changed on disk is refused, never served.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

import msgspec

from trellis.ml._extra import require_ml
from trellis.ml.errors import ModelFileError
from trellis.ml.signature import Signature

__all__ = ["ArtifactStore", "LocalArtifactStore", "OnnxInfo", "inspect_onnx"]


class ArtifactStore(Protocol):
    """Where model files live, addressed by their sha256."""

    def put(self, data: bytes) -> str:
        """Store ``data`` (idempotently) and return its sha256."""
        ...

    def get(self, sha256: str) -> bytes:
        """The bytes whose hash is ``sha256``; :class:`ModelFileError` if absent or altered."""
        ...


class LocalArtifactStore:
    """Artifacts as files ``<root>/<aa>/<sha256>.onnx``, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.onnx"

    def put(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        path = self._path(sha256)
        if path.exists():
            return sha256
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        return sha256

    def get(self, sha256: str) -> bytes:
        path = self._path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ModelFileError(f"artifact {sha256} is missing from {self.root}") from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ModelFileError(f"artifact {path} does not match its sha256; refusing to serve it")
        return data


class OnnxInfo(msgspec.Struct, frozen=True):
    """What serving needs to know about an ONNX graph."""

    input_name: str
    n_features: int | None
    outputs: list[str]


def inspect_onnx(data: bytes, signature: Signature | None = None) -> OnnxInfo:
    """Check that ``data`` is a loadable ONNX model with one float matrix input, and
    (given a signature) that the feature count and outputs agree with it."""
    require_ml()
    import onnx
    import onnxruntime as ort

    try:
        model = onnx.load_model_from_string(data)
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, ...: all mean "bad file"
        raise ModelFileError(f"not a valid ONNX model: {type(exc).__name__}: {exc}") from exc
    try:
        ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ModelFileError(f"onnxruntime cannot load the model: {exc}") from exc
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelFileError(f"the model has {len(inputs)} inputs; Trellis serves exactly one")
    tensor = inputs[0].type.tensor_type
    if tensor.elem_type != onnx.TensorProto.FLOAT:
        raise ModelFileError("the model's input is not a float32 tensor")
    dims = tensor.shape.dim
    if len(dims) != 2:
        raise ModelFileError(f"the model's input has rank {len(dims)}; expected [batch, features]")
    n_features = dims[1].dim_value if dims[1].HasField("dim_value") else None
    info = OnnxInfo(inputs[0].name, n_features, [o.name for o in model.graph.output])
    if signature is not None:
        if n_features is not None and n_features != len(signature.features):
            raise ModelFileError(
                f"signature mismatch: the model reads {n_features} features, the signature "
                f"declares {len(signature.features)} ({signature.names})"
            )
        unknown = [o.name for o in signature.outputs if o.name not in info.outputs]
        if unknown:
            raise ModelFileError(
                f"signature mismatch: outputs {unknown} are not produced by the model "
                f"(it produces {info.outputs})"
            )
    return info
