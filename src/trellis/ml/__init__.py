"""Models as first-class citizens: a registry with semantic versions and stages, ONNX
artifacts by sha256, batched inference with champion/challenger, shadow and canary
routing, a validation gate, drift detection and carbon per prediction.

Importing this package needs none of the ML stack; using a model feature without
``trellis-aiot[ml]`` raises :class:`MissingExtraError` naming the install command.
"""

from trellis.ml.carbon import CarbonModel, Footprint
from trellis.ml.drift import DriftReport, FeatureDrift
from trellis.ml.errors import MissingExtraError, ModelFailedError, ModelFileError, SignatureError
from trellis.ml.gate import GateCheck, GatePolicy, GateReport
from trellis.ml.inference import InferenceService, Prediction, PredictResult, PredictRow
from trellis.ml.registry import ModelRegistry, ModelSummary, ModelVersion, Stage
from trellis.ml.routing import Route, RoutingMode, RoutingPolicy, route
from trellis.ml.service import ModelService, VersionStats
from trellis.ml.signature import Feature, Output, Signature

__all__ = [
    "CarbonModel",
    "DriftReport",
    "Feature",
    "FeatureDrift",
    "Footprint",
    "GateCheck",
    "GatePolicy",
    "GateReport",
    "InferenceService",
    "MissingExtraError",
    "ModelFailedError",
    "ModelFileError",
    "ModelRegistry",
    "ModelService",
    "ModelSummary",
    "ModelVersion",
    "Output",
    "PredictResult",
    "PredictRow",
    "Prediction",
    "Route",
    "RoutingMode",
    "RoutingPolicy",
    "Signature",
    "SignatureError",
    "Stage",
    "VersionStats",
    "route",
]
