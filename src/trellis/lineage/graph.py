"""Lineage: where a number came from, walked from any node back to the bytes.

Nothing on the hot path writes lineage: it is resolved when asked, from what the
platform keeps anyway. A reading's source message is found in the raw message
archive by device and time (readings carry no lineage columns); the archive's index
row names the device sequence number, the contract (``model@version``) and the vendor
mapping that decoded it. Derived data points back to its inputs:

- ``rollup`` (``device/metric/minute``) → the readings of that minute;
- ``alert`` (id) → its rule at the version now stored (a digest of the definition),
  the model version that scored it, and the readings window (the rule's window or
  for-duration before the raise, at least :data:`LABEL_MARGIN_MS`, to the clear);
- ``prediction`` (a prediction-log batch id) → the model version, and as inputs each
  device's feature readings at the time of the batch;
- ``model`` (``name@version``) → the datasets its training run read.

Kinds and ids: ``reading`` ``device/metric/ts``, ``message`` (message id), ``rollup``,
``alert``, ``prediction``, ``model``. Each walk is bounded (:data:`MAX_READINGS`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgspec
import sqlalchemy as sa

from trellis.alerts.service import LABEL_MARGIN_MS, AlertService
from trellis.core.clock import to_iso
from trellis.core.errors import NotFoundError
from trellis.core.types import Reading
from trellis.devices.registry import DeviceRegistry
from trellis.ingest.archive import Archive, ArchivedMessage
from trellis.ingest.decode import Limits, decode_telemetry
from trellis.store.base import ROLLUP_MS, TimeSeriesStore
from trellis.store.metadata import ml_prediction_batches, ml_versions, rules

__all__ = [
    "KINDS",
    "MAX_READINGS",
    "LineageEdge",
    "LineageGraph",
    "LineageNode",
    "LineageWalker",
    "reading_id",
]

#: What :meth:`LineageWalker.walk` accepts.
KINDS = ("reading", "message", "rollup", "alert", "prediction", "model")
#: Most readings one walk lists (an alert's window, a rollup's minute).
MAX_READINGS = 200
_PREVIEW_BYTES = 2048


class LineageNode(msgspec.Struct, frozen=True):
    """One thing in the graph; ``key`` is ``kind:id``."""

    key: str
    kind: str
    id: str
    label: str
    detail: dict[str, Any] = {}


class LineageEdge(msgspec.Struct, frozen=True):
    """``source`` was derived from (or produced by) ``target``, as ``relation`` says."""

    source: str
    target: str
    relation: str


class LineageGraph(msgspec.Struct, frozen=True):
    """The walk from ``root`` back to its inputs; ``truncated`` when a bound cut it."""

    root: str
    nodes: list[LineageNode]
    edges: list[LineageEdge]
    truncated: bool = False


def reading_id(reading: Reading | tuple[str, str, int]) -> str:
    """The lineage id of a reading: ``device/metric/ts`` (the tenant is the caller's)."""
    if isinstance(reading, Reading):
        return f"{reading.device}/{reading.metric}/{reading.ts}"
    device, metric, ts = reading
    return f"{device}/{metric}/{ts}"


class _Builder:
    def __init__(self) -> None:
        self.nodes: dict[str, LineageNode] = {}
        self.edges: list[LineageEdge] = []
        self.truncated = False

    def node(self, kind: str, ident: str, label: str, **detail: Any) -> str:
        key = f"{kind}:{ident}"
        if key not in self.nodes:
            self.nodes[key] = LineageNode(key, kind, ident, label, detail)
        return key

    def edge(self, source: str, target: str, relation: str) -> None:
        self.edges.append(LineageEdge(source, target, relation))

    def graph(self, root: str) -> LineageGraph:
        return LineageGraph(root, list(self.nodes.values()), self.edges, self.truncated)


class LineageWalker:
    """Resolves lineage from the archive, the store and the metadata database."""

    def __init__(
        self,
        engine: sa.Engine,
        store: TimeSeriesStore,
        archive: Archive,
        registry: DeviceRegistry,
        alerts: AlertService,
    ) -> None:
        self._engine = engine
        self._store = store
        self._archive = archive
        self._registry = registry
        self._alerts = alerts

    def walk(self, tenant: str, kind: str, ident: str) -> LineageGraph:
        """The lineage of one node; ``ValueError`` for a malformed id or unknown kind,
        :class:`NotFoundError` for one that does not exist."""
        b = _Builder()
        if kind == "reading":
            device, metric, ts = _parse_reading(ident)
            root = self._reading(b, tenant, device, metric, ts)
        elif kind == "message":
            root = self._message(b, tenant, self._archive.get(ident), readings=True)
        elif kind == "rollup":
            root = self._rollup(b, tenant, ident)
        elif kind == "alert":
            root = self._alert(b, tenant, _int(ident, "alert"))
        elif kind == "prediction":
            root = self._prediction(b, tenant, _int(ident, "prediction"))
        elif kind == "model":
            name, sep, version = ident.rpartition("@")
            if not sep or not name:
                raise ValueError(f"model id {ident!r} is not name@version")
            root = self._model(b, tenant, name, version)
        else:
            raise ValueError(f"unknown lineage kind {kind!r}; known: {list(KINDS)}")
        return b.graph(root)

    # -- readings and messages -----------------------------------------------------

    def _reading(self, b: _Builder, tenant: str, device: str, metric: str, ts: int) -> str:
        points = self._store.query(tenant, device, metric, ts, ts + 1, limit=1)
        if not points:
            raise NotFoundError("reading", reading_id((device, metric, ts)))
        key = b.node(
            "reading",
            reading_id((device, metric, ts)),
            f"{device} {metric} = {points[0].value:g} at {to_iso(ts)}",
            device=device,
            metric=metric,
            ts=ts,
            value=points[0].value,
        )
        self._sources(b, key, tenant, device, ts)
        return key

    def _sources(self, b: _Builder, key: str, tenant: str, device: str, ts: int) -> None:
        held = self._archive.holding(tenant, device, ts)
        if not held:
            node = b.node(
                "unknown",
                f"{device}@{ts}",
                "source not archived (before the archive, past its retention, or written "
                "directly to the store)",
            )
            b.edge(key, node, "derived_from")
            return
        # The store kept the first reading of a key: the oldest message holding it.
        first, *others = reversed(held)
        b.edge(key, self._message(b, tenant, first, readings=False), "derived_from")
        for other in others:
            b.edge(key, self._message(b, tenant, other, readings=False), "also_sent_in")

    def _message(self, b: _Builder, tenant: str, entry: ArchivedMessage, *, readings: bool) -> str:
        if entry.tenant != tenant:
            raise NotFoundError("archived message", entry.message_id)
        detail: dict[str, Any] = {
            "device": entry.device,
            "seq": entry.seq,
            "received_ms": entry.received_ms,
            "contract": entry.contract,
            "mapping": entry.mapping,
            "mapping_version": entry.mapping_version,
            "readings": entry.readings,
            "reprocessed_ms": entry.reprocessed_ms,
        }
        raw = None
        if readings:
            raw = self._archive.message(entry)
            detail |= {
                "topic": raw.topic,
                "source": raw.source,
                "properties": raw.properties,
                "payload": raw.payload[:_PREVIEW_BYTES].decode("utf-8", "backslashreplace"),
                "payload_bytes": len(raw.payload),
            }
        seq = f" seq {entry.seq}" if entry.seq is not None else ""
        key = b.node(
            "message",
            entry.message_id,
            f"message {entry.message_id} from {entry.device}{seq}",
            **detail,
        )
        contract = b.node("contract", entry.contract, f"contract {entry.contract}")
        b.edge(key, contract, "validated_by")
        if entry.mapping_version is not None:
            mapping = b.node("mapping", entry.mapping_version, f"mapping {entry.mapping_version}")
            b.edge(key, mapping, "decoded_by")
        if raw is not None:
            decoded = decode_telemetry(raw, self._registry.get, self._registry.models, Limits())
            if isinstance(decoded, list):
                for reading in decoded[:MAX_READINGS]:
                    target = b.node(
                        "reading",
                        reading_id(reading),
                        f"{reading.device} {reading.metric} at {to_iso(reading.ts)}",
                        device=reading.device,
                        metric=reading.metric,
                        ts=reading.ts,
                    )
                    b.edge(target, key, "derived_from")
        return key

    # -- derived data ----------------------------------------------------------------

    def _window(
        self, b: _Builder, parent: str, tenant: str, device: str, metric: str, start: int, end: int
    ) -> None:
        """Edges from ``parent`` to the readings of one series in ``[start, end)``, each
        linked to its source message (one archive query for the whole window)."""
        points = self._store.query(tenant, device, metric, start, end, limit=MAX_READINGS + 1)
        if len(points) > MAX_READINGS:
            b.truncated = True
            points = points[-MAX_READINGS:]
        held = self._archive.find(tenant, device, start, end, limit=5 * MAX_READINGS)
        for point in points:
            key = b.node(
                "reading",
                reading_id((device, metric, point.ts)),
                f"{device} {metric} = {point.value:g} at {to_iso(point.ts)}",
                device=device,
                metric=metric,
                ts=point.ts,
                value=point.value,
            )
            b.edge(parent, key, "derived_from")
            source = next((m for m in held if m.ts_min <= point.ts <= m.ts_max), None)
            if source is not None:
                b.edge(key, self._message(b, tenant, source, readings=False), "derived_from")

    def _rollup(self, b: _Builder, tenant: str, ident: str) -> str:
        device, metric, minute = _parse_reading(ident)
        start = minute - minute % ROLLUP_MS
        buckets = self._store.aggregate(tenant, device, metric, start, start + ROLLUP_MS, ROLLUP_MS)
        if not buckets:
            raise NotFoundError("rollup", ident)
        bucket = buckets[0]
        key = b.node(
            "rollup",
            reading_id((device, metric, start)),
            f"{device} {metric} minute {to_iso(start)} (avg {bucket.value:g})",
            device=device,
            metric=metric,
            start=start,
            avg=bucket.value,
        )
        self._window(b, key, tenant, device, metric, start, start + ROLLUP_MS)
        return key

    def _alert(self, b: _Builder, tenant: str, alert_id: int) -> str:
        alert = self._alerts.get(tenant, alert_id)
        key = b.node(
            "alert",
            str(alert.id),
            f"alert {alert.id} {alert.severity.value}: {alert.message}",
            device=alert.device,
            metric=alert.metric,
            rule=alert.rule,
            status=alert.status.value,
            raised_ms=alert.raised_ms,
            cleared_ms=alert.cleared_ms,
            model_version=alert.model_version,
        )
        rule, lookback = self._rule(tenant, alert.rule)
        if rule is not None:
            b.edge(key, b.node("rule", alert.rule, f"rule {alert.rule}", **rule), "raised_by")
        if alert.model_version:
            model = b.node("model", alert.model_version, f"model {alert.model_version}")
            b.edge(key, model, "scored_by")
        if alert.metric:
            start = alert.raised_ms - max(lookback, LABEL_MARGIN_MS)
            end = (alert.cleared_ms or alert.raised_ms) + 1
            self._window(b, key, tenant, alert.device, alert.metric, start, end)
        return key

    def _rule(self, tenant: str, rule_id: str) -> tuple[dict[str, Any] | None, int]:
        """The rule's version facts and how far back its condition looks, in ms."""
        with self._engine.connect() as c:
            row = c.execute(
                sa.select(rules.c.definition, rules.c.updated_ms).where(
                    rules.c.tenant == tenant, rules.c.id == rule_id
                )
            ).first()
        if row is None:
            return None, 0
        definition = row.definition
        text = json.dumps(definition, sort_keys=True, separators=(",", ":"))
        window = definition.get("window") or {}
        lookback_s = max(
            float(window.get("size_s", 0) or 0),
            float(definition.get("for_s", 0) or 0),
            float(definition.get("absence_s", 0) or 0),
        )
        facts = {
            "version": hashlib.sha256(text.encode()).hexdigest()[:12],
            "updated_ms": row.updated_ms,
            "definition": definition,
        }
        return facts, int(lookback_s * 1000)

    def _prediction(self, b: _Builder, tenant: str, batch_id: int) -> str:
        t = ml_prediction_batches.c
        with self._engine.connect() as c:
            row = c.execute(
                sa.select(t.name, t.version, t.role, t.n, t.devices, t.at_ms).where(
                    t.tenant == tenant, t.id == batch_id
                )
            ).first()
        if row is None:
            raise NotFoundError("prediction batch", batch_id)
        key = b.node(
            "prediction",
            str(batch_id),
            f"{row.n} predictions of {row.name}@{row.version} ({row.role})",
            model=row.name,
            version=row.version,
            role=row.role,
            n=row.n,
            at_ms=row.at_ms,
        )
        model_key, features = self._model_node(b, tenant, row.name, row.version)
        b.edge(key, model_key, "scored_by")
        devices = [d for d in dict.fromkeys(row.devices) if d is not None]
        if len(devices) > 20:
            b.truncated = True
        for device in devices[:20]:
            for feature in features:
                latest = self._store.query(
                    tenant, device, feature, row.at_ms - 3_600_000, row.at_ms + 1, limit=10_000
                )
                if latest:
                    point = latest[-1]
                    reading = b.node(
                        "reading",
                        reading_id((device, feature, point.ts)),
                        f"{device} {feature} = {point.value:g} at {to_iso(point.ts)}",
                        device=device,
                        metric=feature,
                        ts=point.ts,
                        value=point.value,
                    )
                    b.edge(key, reading, "input")
        return key

    def _model(self, b: _Builder, tenant: str, name: str, version: str) -> str:
        return self._model_node(b, tenant, name, version)[0]

    def _model_node(
        self, b: _Builder, tenant: str, name: str, version: str
    ) -> tuple[str, list[str]]:
        v = ml_versions.c
        with self._engine.connect() as c:
            row = c.execute(
                sa.select(v.stage, v.sha256, v.signature, v.lineage, v.registered_ms).where(
                    v.tenant == tenant, v.name == name, v.version == version
                )
            ).first()
        if row is None:
            raise NotFoundError("model version", f"{name}@{version}")
        features = [f["name"] for f in (row.signature or {}).get("features", [])]
        key = b.node(
            "model",
            f"{name}@{version}",
            f"model {name}@{version} ({row.stage})",
            sha256=row.sha256,
            stage=row.stage,
            features=features,
            registered_ms=row.registered_ms,
            run_id=(row.lineage or {}).get("run", {}).get("runId"),
        )
        for dataset in (row.lineage or {}).get("inputs", []):
            ident = f"{dataset.get('namespace', '')}/{dataset.get('name', '')}"
            node = b.node("dataset", ident, f"dataset {ident}", facets=dataset.get("facets", {}))
            b.edge(key, node, "trained_on")
        return key, features


def _parse_reading(ident: str) -> tuple[str, str, int]:
    device, sep, rest = ident.partition("/")
    metric, sep2, ts = rest.rpartition("/")
    if not (sep and sep2 and device and metric and ts.lstrip("-").isdigit()):
        raise ValueError(f"reading id {ident!r} is not device/metric/epoch-ms")
    return device, metric, int(ts)


def _int(ident: str, kind: str) -> int:
    if not ident.isdigit():
        raise ValueError(f"{kind} id {ident!r} is not a number")
    return int(ident)
