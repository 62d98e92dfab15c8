"""Model registry routes: versions, promotion through the gate, routing, predictions,
drift and carbon. ML errors map to HTTP here: a bad file or bad features is 422, a
model that throws is 502, the missing ``ml`` extra is 501."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import msgspec
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from trellis.api.deps import PlatformDep, TenantDep
from trellis.api.encoding import documented, json_response
from trellis.ml.drift import DriftReport
from trellis.ml.errors import MissingExtraError, ModelFailedError, ModelFileError, SignatureError
from trellis.ml.gate import GateReport
from trellis.ml.inference import PredictResult, PredictRow
from trellis.ml.registry import ModelSummary, ModelVersion, Stage
from trellis.ml.routing import RoutingPolicy
from trellis.ml.service import VersionStats
from trellis.ml.signature import Signature

__all__ = ["router"]

router = APIRouter(tags=["models"])
_T = TypeVar("_T")


class PredictRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Rows to predict: ``{"rows": [{"features": {...}, "device": "pump-0001"}]}``."""

    rows: list[PredictRow]


class PromoteRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Which version goes to which stage, and who asks."""

    version: str
    stage: Stage = Stage.PRODUCTION
    actor: str = "api"


def _decode(body: bytes, tp: type[_T]) -> _T:
    try:
        return msgspec.json.decode(body, type=tp)
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
        raise HTTPException(422, f"invalid request body: {exc}") from None


async def _call(fn: Callable[..., _T], *args: Any) -> _T:
    try:
        return await asyncio.to_thread(fn, *args)
    except (SignatureError, ModelFileError, ValueError) as exc:
        raise HTTPException(422, str(exc)) from None
    except ModelFailedError as exc:
        raise HTTPException(502, str(exc)) from None
    except MissingExtraError as exc:
        raise HTTPException(501, str(exc)) from None


@router.get("/models", responses=documented(list[ModelSummary]))
async def list_models(platform: PlatformDep, tenant: TenantDep) -> Response:
    """Every model with its champion, versions and routing."""
    return json_response(await _call(platform.models.registry.models, tenant))


@router.get("/models/{name}/versions", responses=documented(list[ModelVersion]))
async def list_versions(name: str, platform: PlatformDep, tenant: TenantDep) -> Response:
    """Every version of a model with stage, signature, metrics, card and lineage."""
    platform.models.registry.model(tenant, name)
    return json_response(await _call(platform.models.registry.versions, tenant, name))


@router.put("/models/{name}/versions/{version}", responses=documented(ModelVersion, 201))
async def register_version(
    name: str,
    version: str,
    request: Request,
    platform: PlatformDep,
    tenant: TenantDep,
    signature: Annotated[str, Query(description="the signature as JSON")],
    registered_by: str = "api",
) -> Response:
    """Register an ONNX file (the request body) as a new version, in stage ``dev``."""
    parsed = _decode(signature.encode(), Signature)
    data = await request.body()
    registered = await _call(
        platform.models.register, tenant, name, version, data, parsed, registered_by
    )
    return json_response(registered, 201)


@router.post("/models/{name}:predict", responses=documented(PredictResult))
async def predict(
    name: str, request: Request, platform: PlatformDep, tenant: TenantDep
) -> Response:
    """Predict with the production version, routed by the model's policy."""
    body = _decode(await request.body(), PredictRequest)
    return json_response(await _call(platform.models.inference.predict, tenant, name, body.rows))


@router.post("/models/{name}/versions/{version}:predict", responses=documented(PredictResult))
async def predict_pinned(
    name: str, version: str, request: Request, platform: PlatformDep, tenant: TenantDep
) -> Response:
    """Predict with exactly this version."""
    body = _decode(await request.body(), PredictRequest)
    result = await _call(platform.models.inference.predict, tenant, name, body.rows, version)
    return json_response(result)


@router.post(
    "/models/{name}/promote",
    responses=documented(ModelVersion) | documented(GateReport, 409, "the gate failed"),
)
async def promote(
    name: str, request: Request, platform: PlatformDep, tenant: TenantDep
) -> Response:
    """Move a version to a stage; into production only through the validation gate."""
    body = _decode(await request.body(), PromoteRequest)
    result = await _call(
        platform.models.promote, tenant, name, body.version, body.actor, body.stage
    )
    return json_response(result, 409 if isinstance(result, GateReport) else 200)


@router.post("/models/{name}/rollback", responses=documented(ModelVersion))
async def rollback(
    name: str, platform: PlatformDep, tenant: TenantDep, actor: str = "api"
) -> Response:
    """Put the previous champion back in production."""
    return json_response(await _call(platform.models.rollback, tenant, name, actor))


@router.put("/models/{name}/routing", responses=documented(RoutingPolicy))
async def put_routing(
    name: str, request: Request, platform: PlatformDep, tenant: TenantDep
) -> Response:
    """Replace the routing policy (shadow, split percentage, canary sites)."""
    policy = _decode(await request.body(), RoutingPolicy)
    return json_response(await _call(platform.models.set_routing, tenant, name, policy))


@router.post("/models/{name}/drift:check", responses=documented(DriftReport))
async def check_drift(
    name: str, platform: PlatformDep, tenant: TenantDep, version: str | None = None
) -> Response:
    """Compare recent inputs with the training reference; drift raises an alert."""
    return json_response(await _call(platform.models.check_drift, tenant, name, version))


@router.get("/models/{name}/stats", responses=documented(list[VersionStats]))
async def stats(name: str, platform: PlatformDep, tenant: TenantDep) -> Response:
    """Per version: predictions served and shadowed, latency, score, energy and carbon."""
    platform.models.registry.model(tenant, name)
    return json_response(await _call(platform.models.stats, tenant, name))
