"""The rule engine: a bus subscriber that runs compiled rules and writes their alerts.

Every rule, threshold or stream, is compiled once (:func:`compile_rule`) and keeps
one :class:`SeriesState` per device. A rule that raises while judging a reading is
counted and skipped; the other rules go on. Alert writes run in a thread, off the
event loop, retried until done; webhook actions go to per-rule queues
(:class:`ActionDispatcher`). State is checkpointed every ``checkpoint_s`` and at
stop; at start the checkpoint is loaded and every open alert marks its series
raised, so a restart neither re-fires an alert nor forgets one.

Rules that read a model (``prediction``) get their predictions before a batch is
judged: the engine keeps each device's latest value of the features those models
read, and predicts, per model and per batch in one call off the event loop, for the
devices whose prediction is older than the rule's ``refresh_s`` (event time), bounded
by its ``timeout_s``. Judging then only reads the cache, so it stays pure and fast.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
from collections.abc import Mapping, Sequence

import msgspec
import sqlalchemy as sa

from trellis.alerts.service import AlertService
from trellis.bus.base import Subscription
from trellis.core.clock import now_ms
from trellis.core.retry import retry_until_done
from trellis.core.types import Reading
from trellis.devices.registry import DeviceRegistry
from trellis.rules.actions import ActionDispatcher, Effects
from trellis.rules.runtime import CompiledRule, SeriesState, Signal, compile_rule, series_key
from trellis.rules.spec import PredictAction, StreamRule
from trellis.rules.store import RuleStore
from trellis.semantic.store import SemanticModel
from trellis.store.metadata import rule_state

__all__ = ["ModelStats", "RuleEngine", "RuleStats", "TraceEntry", "resolve_series"]

log = logging.getLogger(__name__)
_StateKey = tuple[str, str, str]  # rule, tenant, device
#: A feature reading this much older than the device's newest is not "latest" any
#: more (a replayed or late message); it does not replace a fresher value.
_FEATURE_STALE_MS = 60_000


class RuleStats(msgspec.Struct):
    """What one rule did since the engine started: the numbers the page and API show."""

    rule: str
    tenant: str
    readings: int = 0
    raised: int = 0
    cleared: int = 0
    errors: int = 0
    last_error: str = ""
    suppressed: int = 0
    late: int = 0
    actions_delivered: int = 0
    actions_failed: int = 0
    busy_ns: int = 0
    model_fallbacks: int = 0

    @property
    def mean_latency_us(self) -> float:
        """Mean time spent per reading judged."""
        return self.busy_ns / self.readings / 1000 if self.readings else 0.0


class ModelStats(msgspec.Struct):
    """What one model did for the rules (and flow model nodes) that read it."""

    tenant: str
    model: str
    rules: list[str]
    device_model: str = ""
    features: list[str] = []
    calls: int = 0
    rows: int = 0
    errors: int = 0
    timeouts: int = 0
    busy_ns: int = 0
    last_error: str = ""

    @property
    def mean_latency_us(self) -> float:
        """Mean time per call, waiting included."""
        return self.busy_ns / self.calls / 1000 if self.calls else 0.0


class TraceEntry(msgspec.Struct, frozen=True, array_like=True):
    """One judgement of a watched rule: ``[device, ts, value, holds]`` on the wire."""

    device: str
    ts: int
    value: float
    holds: bool


class RuleEngine:
    """Judge every enabled rule on every batch of readings."""

    def __init__(
        self,
        subscription: Subscription[Reading],
        rules: RuleStore,
        alerts: AlertService,
        registry: DeviceRegistry,
        *,
        checkpoint_s: float = 1.0,
        tick_s: float = 1.0,
        semantic: SemanticModel | None = None,
        effects: Effects | None = None,
        model_recheck_s: float = 30.0,
    ) -> None:
        self._subscription = subscription
        self._rules = rules
        self._alerts = alerts
        self._registry = registry
        self._engine: sa.Engine = rules.engine
        self._checkpoint_s = checkpoint_s
        self._tick_s = tick_s
        self.effects = effects or Effects()
        self.actions = ActionDispatcher(
            self._engine, effects=self.effects, latest=self._latest_values
        )
        # Model use: tenant -> metrics to remember; (tenant, device) -> metric -> value;
        # (tenant, device) -> newest ts; (tenant, model, device) -> (ts, outputs or None).
        self._tracked: dict[str, frozenset[str]] = {}
        self._latest: dict[tuple[str, str], dict[str, float]] = {}
        self._latest_ts: dict[tuple[str, str], int] = {}
        self._predictions: dict[tuple[str, str, str], tuple[int, Mapping[str, float] | None]] = {}
        self._models: dict[tuple[str, str], ModelStats] = {}
        self._inline: dict[tuple[str, str], tuple[int, float]] = {}  # refresh ms, timeout s
        self._inflight: dict[tuple[str, str], asyncio.Future[list[Mapping[str, object]]]] = {}
        # A model the rules name but the registry lacks (yet) is looked up again this
        # often, so promoting one later takes effect without touching the rules.
        self._model_recheck_s = model_recheck_s
        self._models_checked = time.monotonic()
        self._upsert = _upsert_statement(self._engine)
        self._states: dict[_StateKey, SeriesState] = {}
        self._dirty: set[_StateKey] = set()
        self._by_tenant: dict[str, dict[str, list[CompiledRule]]] = {}
        self._compiled: dict[str, CompiledRule] = {}
        self._semantic = semantic
        #: Set when points or devices change; the next batch re-resolves the selectors.
        self._stale = False
        self._stats: dict[tuple[str, str], RuleStats] = {}  # (tenant, rule)
        self._timed: set[_StateKey] = set()  # series of heartbeat and session rules
        self._watched: dict[str, float] = {}  # "tenant/rule" -> when tracing stops
        self.transitions = 0
        self.batches = 0

    def reload(self) -> None:
        """Re-read and recompile the rules; call after a rule was saved or deleted."""
        compiled: dict[str, CompiledRule] = {}
        for tenant, rule in self._rules.find():
            if not rule.enabled:
                continue
            previous = self._compiled.get(f"{tenant}/{rule.id}")
            runtime = (
                previous if previous is not None and previous.definition == rule else None
            ) or compile_rule(rule)
            compiled[f"{tenant}/{rule.id}"] = runtime
            self._stats.setdefault((tenant, rule.id), RuleStats(rule.id, tenant))
        self._compiled = compiled
        self._index()
        self._reload_models()

    def invalidate(self, _tenant: str | None = None) -> None:
        """Points or devices changed: re-resolve the point selectors before the next batch.

        Cheap and thread-safe (it only sets a flag), so the semantic model and the
        registry call it on every change; a new device joins its rules at once.
        """
        self._stale = True

    def _index(self) -> None:
        """Rules by tenant and metric; a point selector is resolved to its series here."""
        self._stale = False
        by_tenant: dict[str, dict[str, list[CompiledRule]]] = {}
        # Rules with one selector share one resolved set: its metrics are listed once.
        metrics_of: dict[frozenset[tuple[str, str]], list[str]] = {}
        for key, runtime in self._compiled.items():
            tenant = key.split("/", 1)[0]
            metrics = [runtime.metric]
            if runtime.series is not None:
                series = runtime.series = self._resolve(tenant, runtime)
                metrics = metrics_of.get(series) or metrics_of.setdefault(
                    series, sorted({metric for _, metric in series})
                )
            for metric in metrics:
                by_tenant.setdefault(tenant, {}).setdefault(metric, []).append(runtime)
        self._by_tenant = by_tenant

    def _reload_models(self) -> None:
        """Find the models the rules read, and the features to remember for them."""
        uses: dict[tuple[str, str], list[str]] = {}
        inline: dict[tuple[str, str], tuple[int, float]] = {}
        for key, runtime in self._compiled.items():
            tenant = key.split("/", 1)[0]
            definition = runtime.definition
            if runtime.model is not None:
                name = runtime.model.name
                uses.setdefault((tenant, name), []).append(runtime.id)
                refresh = round(runtime.model.refresh_s * 1000)
                before = inline.get((tenant, name))
                inline[(tenant, name)] = (
                    (min(before[0], refresh), max(before[1], runtime.model.timeout_s))
                    if before
                    else (refresh, runtime.model.timeout_s)
                )
                runtime.predictions = functools.partial(self._prediction, name)
            if isinstance(definition, StreamRule):
                for action in definition.actions:
                    if isinstance(action, PredictAction):
                        uses.setdefault((tenant, action.model), []).append(runtime.id)
        tracked: dict[str, set[str]] = {}
        models: dict[tuple[str, str], ModelStats] = {}
        for (tenant, name), rule_ids in uses.items():
            stats = self._models.get((tenant, name)) or ModelStats(tenant, name, [])
            stats.rules = sorted(set(rule_ids))
            known = self.effects.features(tenant, name) if self.effects.features else None
            if known is None:
                stats.last_error = f"unknown model {name!r} (or none in production)"
                stats.device_model, stats.features = "", []
            else:
                stats.device_model, stats.features = known[0], list(known[1])
                tracked.setdefault(tenant, set()).update(known[1])
            models[(tenant, name)] = stats
        self._models = models
        self._inline = inline
        self._tracked = {tenant: frozenset(names) for tenant, names in tracked.items()}

    def _prediction(self, model: str, tenant: str, device: str) -> Mapping[str, float] | None:
        cached = self._predictions.get((tenant, model, device))
        return cached[1] if cached is not None else None

    def _latest_values(self, tenant: str, device: str) -> Mapping[str, float]:
        return self._latest.get((tenant, device), {})

    def model_stats(self, tenant: str | None = None) -> list[ModelStats]:
        """Per model the rules read: calls, rows, errors, timeouts, latency."""
        return [s for key, s in sorted(self._models.items()) if tenant in (None, key[0])]

    def _resolve(self, tenant: str, runtime: CompiledRule) -> frozenset[tuple[str, str]]:
        if self._semantic is None:
            return frozenset()
        return resolve_series(self._semantic, self._registry, tenant, runtime)

    def stats(self, tenant: str | None = None) -> list[RuleStats]:
        """Per-rule counters (of one tenant, or all), ordered by tenant and rule id."""
        for key, runtime in self._compiled.items():
            stats = self._stats[(key.split("/", 1)[0], runtime.id)]
            stats.suppressed = runtime.suppressed
            stats.late = runtime.late
            stats.actions_delivered = self.actions.delivered.get(runtime.id, 0)
            stats.actions_failed = self.actions.failed.get(runtime.id, 0)
            stats.model_fallbacks = runtime.fallbacks
        # Counters of deleted or disabled rules stay (a batch in flight may still count
        # on them) but are not shown.
        live = {(key.split("/", 1)[0], runtime.id) for key, runtime in self._compiled.items()}
        return [self._stats[key] for key in sorted(live) if tenant in (None, key[0])]

    def trace(self, tenant: str, rule_id: str, watch_s: float = 30.0) -> list[TraceEntry]:
        """The rule's last judgements, oldest first; recording them starts with the first
        call and stops ``watch_s`` after the last one, so unwatched rules cost nothing."""
        runtime = self._compiled.get(f"{tenant}/{rule_id}")
        if runtime is None:
            return []
        if runtime.trace is None:
            runtime.trace = collections.deque(maxlen=50)
        self._watched[f"{tenant}/{rule_id}"] = time.monotonic() + watch_s
        return [TraceEntry(*entry) for entry in runtime.trace]

    def _is_timed(self, tenant: str, rule: str) -> bool:
        runtime = self._compiled.get(f"{tenant}/{rule}")
        return runtime is not None and runtime.timed

    # -- checkpoints ----------------------------------------------------------------

    def restore(self) -> None:
        """Load the checkpoint and mark the series of open alerts raised (at start)."""
        with self._engine.connect() as connection:
            for row in connection.execute(sa.select(rule_state)):
                self._states[(row.rule, row.tenant, row.device)] = msgspec.json.decode(
                    row.state, type=SeriesState
                )
        for tenant, rule, device in self._alerts.open_keys():
            state = self._states.setdefault((rule, tenant, device), SeriesState())
            state.raised = True
            state.suppressed = False
        self._timed = {key for key in self._states if self._is_timed(key[1], key[0])}

    def checkpoint(self) -> int:
        """Write the states changed since the last checkpoint; returns how many."""
        return self._write_checkpoint(self._snapshot())

    def _snapshot(self) -> list[dict[str, object]]:
        """The changed states, encoded now (on the loop, so no judge runs meanwhile)."""
        dirty, self._dirty = self._dirty, set()
        now = now_ms()
        states = self._states
        return [
            {
                "tenant": tenant,
                "rule": rule,
                "device": device,
                "state": msgspec.json.encode(states[(rule, tenant, device)]),
                "updated_ms": now,
            }
            for rule, tenant, device in dirty
            if (rule, tenant, device) in states
        ]

    def _write_checkpoint(self, rows: list[dict[str, object]]) -> int:
        """Write encoded states; on a database error they are marked dirty again."""
        if not rows:
            return 0
        try:
            with self._engine.begin() as connection:
                connection.execute(self._upsert, rows)
        except sa.exc.SQLAlchemyError as exc:
            log.warning(
                "rule checkpoint of %d states failed, retried next round: %s", len(rows), exc
            )
            self._dirty.update((r["rule"], r["tenant"], r["device"]) for r in rows)  # type: ignore[misc]
            return 0
        return len(rows)

    # -- running --------------------------------------------------------------------

    def judge(self, batch: Sequence[Reading]) -> list[Signal]:
        """Advance the states over one batch; what must be written comes back."""
        signals: list[Signal] = []
        if self._stale:
            self._index()
        by_tenant = self._by_tenant
        registry_get = self._registry.get
        states = self._states
        dirty = self._dirty
        for reading in batch:
            rules = by_tenant.get(reading.tenant)
            if not rules:
                continue
            runtimes = rules.get(reading.metric)
            if not runtimes:
                continue
            device = registry_get(reading.tenant, reading.device)
            for runtime in runtimes:
                if not runtime.matches(device):
                    continue
                series = runtime.series
                if series is None:
                    key = (runtime.id, reading.tenant, reading.device)
                elif (reading.device, reading.metric) in series:
                    # One state per series: a device can have several points of a class.
                    key = (runtime.id, reading.tenant, series_key(reading.device, reading.metric))
                else:
                    continue
                state = states.get(key)
                if state is None:
                    state = states[key] = SeriesState()
                    if runtime.timed:
                        self._timed.add(key)
                dirty.add(key)
                stats = self._stats[(reading.tenant, runtime.id)]
                started = time.perf_counter_ns()
                try:
                    runtime.feed(
                        state,
                        reading.tenant,
                        key[2],
                        device,
                        reading.ts,
                        reading.value,
                        signals,
                    )
                except Exception as exc:
                    if not stats.errors:
                        log.warning("rule %s failed on %s: %s", runtime.id, reading.device, exc)
                    stats.errors += 1
                    stats.last_error = f"{type(exc).__name__}: {exc}"
                stats.readings += 1
                stats.busy_ns += time.perf_counter_ns() - started
        return signals

    def observe(self, batch: Sequence[Reading]) -> set[tuple[str, str]]:
        """Remember the latest values of the features models read; which devices moved."""
        tracked = self._tracked
        touched: set[tuple[str, str]] = set()
        if not tracked:
            return touched
        latest, latest_ts = self._latest, self._latest_ts
        for reading in batch:
            metrics = tracked.get(reading.tenant)
            if metrics is None or reading.metric not in metrics:
                continue
            key = (reading.tenant, reading.device)
            if reading.ts < latest_ts.get(key, -1) - _FEATURE_STALE_MS:
                continue
            latest.setdefault(key, {})[reading.metric] = reading.value
            latest_ts[key] = max(latest_ts.get(key, -1), reading.ts)
            touched.add(key)
        return touched

    async def predict(self, touched: set[tuple[str, str]]) -> None:
        """Refresh the predictions the batch's devices need, one call per model."""
        if not touched or not self._inline or self.effects.predict is None:
            return
        for (tenant, name), (refresh_ms, timeout_s) in self._inline.items():
            stats = self._models[(tenant, name)]
            if not stats.features:
                continue  # unknown model: the rules read their fallback
            running = self._inflight.get((tenant, name))
            if running is not None and not running.done():
                continue  # the previous call is late; do not pile threads up
            rows: list[tuple[str, Mapping[str, float]]] = []
            stamps: list[int] = []
            for key in touched:
                if key[0] != tenant:
                    continue
                device = self._registry.get(tenant, key[1])
                values = self._latest[key]
                if device is None or device.model != stats.device_model:
                    continue
                if any(f not in values for f in stats.features):
                    continue
                ts = self._latest_ts[key]
                cached = self._predictions.get((tenant, name, key[1]))
                if cached is not None and ts - cached[0] < refresh_ms:
                    continue
                rows.append((key[1], {f: values[f] for f in stats.features}))
                stamps.append(ts)
            if rows:
                await self._predict_rows(tenant, name, rows, stamps, timeout_s)

    async def _predict_rows(
        self,
        tenant: str,
        name: str,
        rows: list[tuple[str, Mapping[str, float]]],
        stamps: list[int],
        timeout_s: float,
    ) -> None:
        predict = self.effects.predict
        assert predict is not None
        stats = self._models[(tenant, name)]
        started = time.perf_counter_ns()
        future = asyncio.ensure_future(asyncio.to_thread(predict, tenant, name, rows))
        self._inflight[(tenant, name)] = future
        stats.calls += 1
        stats.rows += len(rows)

        def store(done: asyncio.Future[list[Mapping[str, object]]]) -> None:
            if done.cancelled():
                return
            error = done.exception()
            if error is not None:
                stats.errors += 1
                stats.last_error = f"{type(error).__name__}: {error}"
                answers: list[Mapping[str, object]] = [{}] * len(rows)
            else:
                answers = done.result()
            for (device, _), ts, outputs in zip(rows, stamps, answers, strict=False):
                numbers = {
                    k: float(v)
                    for k, v in outputs.items()
                    if isinstance(v, int | float) and not isinstance(v, bool)
                }
                self._predictions[(tenant, name, device)] = (ts, numbers or None)

        done, _ = await asyncio.wait([future], timeout=timeout_s)
        stats.busy_ns += time.perf_counter_ns() - started
        if done:
            store(future)
            return
        stats.timeouts += 1
        stats.last_error = f"no prediction within {timeout_s:g} s; the rules read the fallback"
        for (device, _), ts in zip(rows, stamps, strict=True):
            self._predictions[(tenant, name, device)] = (ts, None)
        future.add_done_callback(store)  # a late answer still refreshes the cache

    def tick(self, now: int) -> list[Signal]:
        """Let time pass: heartbeats (absence) fire and session windows close."""
        signals: list[Signal] = []
        for key in list(self._timed):
            rule, tenant, device = key
            runtime = self._compiled.get(f"{tenant}/{rule}")
            state = self._states.get(key)
            if runtime is None or state is None:
                continue  # the rule was disabled or deleted; its state waits
            runtime.tick(state, tenant, device, now, signals)
            self._dirty.add(key)
        return signals

    async def run(self) -> None:
        """Consume the bus until it closes, then checkpoint."""
        if self._semantic is not None:
            self._semantic.listeners.append(self.invalidate)
        try:
            await self._run()
        finally:
            if self._semantic is not None:
                self._semantic.listeners.remove(self.invalidate)

    async def _run(self) -> None:
        await asyncio.to_thread(self.reload)
        await asyncio.to_thread(self.restore)
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.actions.run(stop), name="trellis.rules.actions")
            ticker = tasks.create_task(self._ticker(), name="trellis.rules.tick")
            # One checkpoint write at a time, in a thread, while judging goes on; a
            # round whose predecessor is still writing is skipped (its states stay dirty).
            writing: asyncio.Task[int] | None = None
            try:
                last_checkpoint = time.monotonic()
                async for batch in self._subscription:
                    if self._tracked:
                        await self.predict(self.observe(batch))
                    await self._write(self.judge(batch))
                    self.batches += 1
                    due = time.monotonic() - last_checkpoint >= self._checkpoint_s
                    if due and (writing is None or writing.done()):
                        if writing is not None:
                            writing.result()  # a failed write surfaces here
                        writing = tasks.create_task(
                            asyncio.to_thread(self._write_checkpoint, self._snapshot()),
                            name="trellis.rules.checkpoint",
                        )
                        last_checkpoint = time.monotonic()
            finally:
                ticker.cancel()
                stop.set()
                for late in self._inflight.values():
                    late.cancel()
                if writing is not None:
                    await asyncio.wait([writing])
                await asyncio.to_thread(self._write_checkpoint, self._snapshot())

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            now = time.monotonic()
            for key, until in list(self._watched.items()):
                if until < now:
                    del self._watched[key]
                    runtime = self._compiled.get(key)
                    if runtime is not None:
                        runtime.trace = None
            await self._write(self.tick(now_ms()))
            missing = any(not stats.features for stats in self._models.values())
            if missing and now - self._models_checked >= self._model_recheck_s:
                self._models_checked = now
                await asyncio.to_thread(self._reload_models)

    async def _write(self, signals: list[Signal]) -> None:
        for signal in signals:
            # One at a time: a retried raise must not count twice.
            await retry_until_done(
                functools.partial(asyncio.to_thread, self._apply, signal),
                what="alert write",
                logger=log,
            )
            stats = self._stats[(signal.tenant, signal.rule.id)]
            if signal.kind == "raise":
                stats.raised += 1
            else:
                stats.cleared += 1
            self.transitions += 1
            self.actions.submit(signal)

    def _apply(self, signal: Signal) -> None:
        rule = signal.rule
        if signal.kind == "raise":
            self._alerts.raise_alert(
                tenant=signal.tenant,
                device=signal.device,
                rule=rule.id,
                type=rule.title,
                severity=rule.severity,
                message=signal.message,
                value=signal.value,
                at_ms=signal.ts,
                metric=signal.metric or rule.metric,
            )
        else:
            self._alerts.clear(
                tenant=signal.tenant,
                rule=rule.id,
                device=signal.device,
                value=signal.value,
                at_ms=signal.ts,
            )


def resolve_series(
    semantic: SemanticModel, registry: DeviceRegistry, tenant: str, runtime: CompiledRule
) -> frozenset[tuple[str, str]]:
    """The ``(device, metric)`` series a point selector picks: bound points of its classes
    and places, of the rule's metric when it names one, carrying its tags (the point's,
    inherited from what contains it, or the device's)."""
    select = runtime.select
    found = semantic.resolve(tenant, select.classes, select.within)
    wanted = set(select.tags)
    if not runtime.metric and not wanted:
        return found  # shared with every rule of the same selector: no copy per rule
    return frozenset(
        (device, metric)
        for device, metric in found
        if (not runtime.metric or metric == runtime.metric)
        and (
            not wanted
            or wanted
            <= semantic.series_tags(tenant, device, metric)
            | set(_device_tags(registry, tenant, device))
        )
    )


def _device_tags(registry: DeviceRegistry, tenant: str, device_id: str) -> list[str]:
    device = registry.get(tenant, device_id)
    found = device.attributes.get("tags") if device is not None else None
    return [str(tag) for tag in found] if isinstance(found, list) else []


def _upsert_statement(engine: sa.Engine) -> sa.Insert:
    """``INSERT … ON CONFLICT DO UPDATE`` for checkpoints, in the database's dialect.

    SQLite and PostgreSQL spell it the same; one executemany of it is ~50× faster
    than deleting and re-inserting the rows.
    """
    dialect = engine.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    else:
        raise ValueError(f"rule checkpoints need SQLite or PostgreSQL, not {dialect}")
    statement = insert(rule_state)
    return statement.on_conflict_do_update(
        index_elements=[rule_state.c.tenant, rule_state.c.rule, rule_state.c.device],
        set_={"state": statement.excluded.state, "updated_ms": statement.excluded.updated_ms},
    )
