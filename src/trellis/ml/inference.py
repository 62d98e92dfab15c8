"""Inference: route each row, run each version once per batch, log every prediction.

Rows of one request are grouped by the version that serves them, so a batch costs
one ``session.run`` per version. A challenger in shadow runs on the same rows after
the champion; its failure never reaches the caller. A served version that throws
raises :class:`ModelFailedError` (and an alert through the ``on_failure`` hook);
:meth:`InferenceService.predict_or` gives rules a fallback instead.
"""

from __future__ import annotations

import hashlib
import time
from array import array
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from trellis.core.clock import now_ms
from trellis.core.errors import ConflictError
from trellis.ml._extra import require_ml
from trellis.ml.drift import DriftMonitor
from trellis.ml.errors import ModelFailedError, SignatureError
from trellis.ml.predlog import DIGEST_BYTES, LoggedBatch, PredictionLog
from trellis.ml.registry import ModelRegistry, ModelVersion
from trellis.ml.routing import RoutingMode, RoutingPolicy, route
from trellis.ml.sessions import SessionCache
from trellis.ml.signature import feature_row

__all__ = ["InferenceService", "PredictResult", "PredictRow", "Prediction"]

Lookup = Callable[[str, str], tuple[str, str] | None]


class PredictRow(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One input: feature values by name, and the device (and site) they come from."""

    features: dict[str, Any]
    device: str | None = None
    site: str | None = None


class Prediction(msgspec.Struct, frozen=True):
    """One output row, with the version that produced it."""

    version: str
    outputs: dict[str, Any]
    device: str | None = None


class PredictResult(msgspec.Struct, frozen=True):
    """The answer to a predict request."""

    model: str
    predictions: list[Prediction]
    shadow: list[str] = []


class _Plan(msgspec.Struct):
    champion: ModelVersion
    policy: RoutingPolicy
    versions: dict[str, ModelVersion]
    at: float


def _column(array: Any, n: int) -> list[Any]:
    """One output as a list of per-row values (scalars where the output is [n, 1])."""
    import numpy as np

    values = np.asarray(array).reshape(n, -1)
    result: list[Any] = values[:, 0].tolist() if values.shape[1] == 1 else values.tolist()
    return result


def _fast_matrix(names: Sequence[str], rows: Sequence[PredictRow]) -> Any:
    """The rows as a float32 matrix when every row is well formed, else ``None`` (the
    slow path then names the offending row and feature)."""
    import numpy as np

    width = len(names)
    try:
        values = [[row.features[n] for n in names] for row in rows]
    except KeyError:
        return None
    if any(len(row.features) != width for row in rows):
        return None
    if any(isinstance(v, bool) for row in values for v in row):
        return None
    try:
        matrix = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if matrix.shape != (len(rows), width) or not np.isfinite(matrix).all():
        return None
    return matrix.astype(np.float32)


class InferenceService:
    """Predictions for every model of every tenant."""

    def __init__(
        self,
        registry: ModelRegistry,
        sessions: SessionCache,
        log: PredictionLog,
        drift: DriftMonitor,
        devices: Lookup,
        on_failure: Callable[[str, ModelVersion, str], None] | None = None,
        plan_ttl_s: float = 1.0,
    ) -> None:
        self.registry = registry
        self.sessions = sessions
        self.log = log
        self.drift = drift
        self._devices = devices
        self.on_failure = on_failure
        self._plan_ttl_s = plan_ttl_s
        self._plans: dict[tuple[str, str], _Plan] = {}

    def invalidate(self, tenant: str, name: str) -> None:
        """Forget the cached champion and policy (after a stage or routing change)."""
        self._plans.pop((tenant, name), None)

    def _plan(self, tenant: str, name: str) -> _Plan:
        # Stage and routing reads cost more than a batched prediction; hold them for
        # plan_ttl_s (changes made through this process invalidate at once).
        key = (tenant, name)
        plan = self._plans.get(key)
        if plan is not None and time.monotonic() - plan.at < self._plan_ttl_s:
            return plan
        summary = self.registry.model(tenant, name)
        if summary.production is None:
            raise ConflictError(
                f"model {name} has no version in production; promote one, or call "
                f"/models/{name}/versions/{{version}}:predict"
            )
        versions = {summary.production: self.registry.get(tenant, name, summary.production)}
        if summary.routing.challenger is not None:
            versions[summary.routing.challenger] = self.registry.get(
                tenant, name, summary.routing.challenger
            )
        plan = _Plan(versions[summary.production], summary.routing, versions, time.monotonic())
        self._plans[key] = plan
        return plan

    def predict(
        self, tenant: str, name: str, rows: Sequence[PredictRow], version: str | None = None
    ) -> PredictResult:
        """Predict ``rows`` by routing (or with the pinned ``version``)."""
        require_ml()
        if not rows:
            raise SignatureError("no rows to predict")
        routes: list[tuple[str, str | None]] = []
        if version is not None:
            versions = {version: self.registry.get(tenant, name, version)}
            routes = [(version, None)] * len(rows)
        else:
            plan = self._plan(tenant, name)
            versions = plan.versions
            champion = plan.champion.version
            if plan.policy.mode is RoutingMode.OFF or plan.policy.challenger is None:
                routes = [(champion, None)] * len(rows)
            for row in rows if not routes else ():
                site = row.site
                if site is None and row.device is not None:
                    known = self._devices(tenant, row.device)
                    site = known[1] if known else ""
                r = route(plan.policy, name, champion, row.device or "", site or "")
                routes.append((r.served, r.shadow))
        matrix = self._matrix(tenant, name, versions, rows, routes)
        outputs: list[Prediction | None] = [None] * len(rows)
        shadows: set[str] = set()
        served_by = {r[0] for r in routes}
        for served in served_by:
            index = (
                list(range(len(rows)))
                if len(served_by) == 1
                else [i for i, r in enumerate(routes) if r[0] == served]
            )
            results = self._run(tenant, versions[served], matrix, index, "served", rows)
            for i, result in zip(index, results, strict=True):
                outputs[i] = Prediction(served, result, rows[i].device)
        for shadow in {r[1] for r in routes if r[1] is not None}:
            assert shadow is not None
            index = [i for i, r in enumerate(routes) if r[1] == shadow]
            try:
                self._run(tenant, versions[shadow], matrix, index, "shadow", rows)
                shadows.add(shadow)
            except ModelFailedError:
                pass  # isolated: logged and alerted by _run, never seen by the caller
        done = [p for p in outputs if p is not None]
        return PredictResult(name, done, sorted(shadows))

    def predict_or(
        self,
        tenant: str,
        name: str,
        rows: Sequence[PredictRow],
        fallback: Callable[[PredictRow], Mapping[str, Any]],
        version: str | None = None,
    ) -> PredictResult:
        """Like :meth:`predict`, but a failing model yields ``fallback(row)`` per row
        (tagged version ``fallback``); the failure is alerted, not raised."""
        try:
            return self.predict(tenant, name, rows, version)
        except ModelFailedError:
            return PredictResult(
                name, [Prediction("fallback", dict(fallback(row)), row.device) for row in rows]
            )

    def _matrix(
        self,
        tenant: str,
        name: str,
        versions: Mapping[str, ModelVersion],
        rows: Sequence[PredictRow],
        routes: Sequence[tuple[str, str | None]],
    ) -> Any:
        import numpy as np

        signature = versions[routes[0][0]].signature
        for v in versions.values():
            if v.signature.features != signature.features:
                raise SignatureError(
                    f"versions of {name} in this route disagree on features; pin a version"
                )
        out = _fast_matrix(signature.names, rows)
        if out is None:  # something is wrong: find the first bad row and name it
            out = np.empty((len(rows), len(signature.features)), dtype=np.float32)
            for i, row in enumerate(rows):
                out[i] = feature_row(signature, row.features, f"row {i}")
        for i, row in enumerate(rows):
            if row.device is not None:
                known = self._devices(tenant, row.device)
                if known is not None and known[0] != signature.device_model:
                    raise SignatureError(
                        f"row {i}: device {row.device} is a {known[0]!r}, model {name} reads "
                        f"{signature.device_model!r} features"
                    )
        return out

    def _run(
        self,
        tenant: str,
        version: ModelVersion,
        matrix: Any,
        index: list[int],
        role: str,
        inputs: Sequence[PredictRow],
    ) -> list[dict[str, Any]]:
        x = matrix if len(index) == len(matrix) else matrix[index]
        started_cpu = time.thread_time_ns()
        started = time.perf_counter_ns()
        try:
            loaded = self.sessions.get(version.sha256)
            result = loaded.run(x)
        except Exception as exc:  # any failure of the model is isolated the same way
            reason = f"{type(exc).__name__}: {exc}"
            if self.on_failure is not None:
                self.on_failure(tenant, version, reason)
            raise ModelFailedError(version.name, version.version, reason) from exc
        cpu_us = (time.thread_time_ns() - started_cpu) // 1000
        latency_us = (time.perf_counter_ns() - started) // 1000
        n = len(index)
        columns = {name: _column(values, n) for name, values in result.items()}
        rows = [{name: column[j] for name, column in columns.items()} for j in range(n)]
        score_name = version.signature.score_output
        scores: list[float] = columns.get(score_name, []) if score_name else []
        at = now_ms()
        packed = array("f", scores).tobytes() if scores else None
        self.log.append(
            LoggedBatch(
                tenant=tenant,
                name=version.name,
                version=version.version,
                role=role,
                n=n,
                devices=[inputs[i].device for i in index],
                digests=b"".join(
                    hashlib.blake2b(x[j].tobytes(), digest_size=DIGEST_BYTES).digest()
                    for j in range(n)
                ),
                scores=packed,
                score_sum=float(sum(scores)) if scores else None,
                latency_us=int(latency_us),
                cpu_us=int(cpu_us),
                at_ms=at,
            )
        )
        self.drift.observe(tenant, version.name, version.version, x.tolist(), scores)
        return rows
