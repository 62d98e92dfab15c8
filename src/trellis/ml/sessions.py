"""Cached, warmed onnxruntime sessions, one per artifact.

Creating a session parses the graph (tens of ms for a forest); the first run
allocates. Both happen once per artifact, under a lock, before the session serves.
Each session runs on the calling thread (one intra-op thread), which both keeps the
CPU time measured for carbon honest and lets API worker threads scale across cores.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from trellis.ml._extra import require_ml
from trellis.ml.artifacts import ArtifactStore, inspect_onnx

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["LoadedModel", "SessionCache"]


class LoadedModel:
    """A warmed session and the names needed to call it."""

    def __init__(self, data: bytes) -> None:
        import numpy as np
        import onnxruntime as ort

        info = inspect_onnx(data)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        self.input_name = info.input_name
        self.outputs = info.outputs
        width = info.n_features or 1
        self.run(np.zeros((1, width), dtype=np.float32))  # warm: first run allocates

    def run(self, x: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[Any]]:
        """Outputs by name for the batch ``x`` (rows × features)."""
        values = self.session.run(None, {self.input_name: x})
        return dict(zip(self.outputs, values, strict=True))


class SessionCache:
    """At most ``capacity`` loaded models, least recently used evicted."""

    def __init__(self, artifacts: ArtifactStore, capacity: int = 16) -> None:
        self._artifacts = artifacts
        self._capacity = capacity
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sha256: str) -> LoadedModel:
        """The loaded model for an artifact, loading and warming it on first use."""
        with self._lock:
            model = self._loaded.get(sha256)
            if model is not None:
                self._loaded.move_to_end(sha256)
                return model
        require_ml()
        loaded = LoadedModel(self._artifacts.get(sha256))
        with self._lock:
            self._loaded[sha256] = loaded
            while len(self._loaded) > self._capacity:
                self._loaded.popitem(last=False)
        return loaded
