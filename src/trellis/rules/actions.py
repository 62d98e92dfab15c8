"""Rule actions beyond the alert, each rule on its own queue.

Webhooks, device commands (MQTT 5 request/response), desired state, derived metrics
emitted back through ingest, and model calls whose output becomes a derived metric.
A failing action of one rule must not delay another rule's actions, nor the rule
engine: every rule gets a bounded queue and one worker task
(``trellis.rules.actions[RULE]``) owned by :meth:`ActionDispatcher.run`. A webhook is
retried with capped, jittered backoff; commands are not retried (a device may not
take a command twice kindly). After the last attempt, a timeout, a refusal, or when
the queue is full or shutdown leaves it behind, the action becomes a row in
``rule_dead_letters`` with the reason. What the outside world is reached through is
:class:`Effects`, given by the composition root; what it lacks is a dead letter too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import sqlalchemy as sa

from trellis.core.clock import now_ms
from trellis.core.retry import backoff_delay
from trellis.rules.runtime import Signal
from trellis.rules.spec import (
    Action,
    CommandAction,
    DesiredStateAction,
    EmitAction,
    PredictAction,
    StreamRule,
    WebhookAction,
)
from trellis.store.metadata import row_dict, rule_dead_letters

__all__ = ["ActionDispatcher", "ActionFailed", "Effects", "RuleDeadLetter"]


_Effect = CommandAction | DesiredStateAction | EmitAction | PredictAction


class ActionFailed(Exception):
    """An action that cannot succeed; the message is the dead letter's reason."""


@dataclass
class Effects:
    """Where rule actions reach outside the engine; a missing one makes a dead letter.

    ``command(tenant, device, name, args, timeout_s)`` returns ``(ok, reason, result)``;
    ``desired(tenant, device, state)`` records and sends desired state;
    ``emit(tenant, device, metric, ts, value, origin)`` goes through ingest and returns
    the quarantine reason, or ``None`` when stored; ``predict(tenant, model, rows)``
    runs in a thread and returns the model's outputs per ``(device, features)`` row
    (an empty mapping where the model failed); ``features(tenant, model)`` names the
    device model and the features a model reads (``None``: unknown, or none in
    production).
    """

    known_device: Callable[[str, str], bool] | None = None
    command: (
        Callable[[str, str, str, dict[str, Any], float], Awaitable[tuple[bool, str, Any]]] | None
    ) = None
    desired: Callable[[str, str, dict[str, Any]], Awaitable[None]] | None = None
    emit: Callable[[str, str, str, int, float, str], Awaitable[str | None]] | None = None
    predict: (
        Callable[[str, str, Sequence[tuple[str, Mapping[str, float]]]], list[Mapping[str, Any]]]
        | None
    ) = None
    features: Callable[[str, str], tuple[str, list[str]] | None] | None = None


log = logging.getLogger(__name__)


class RuleDeadLetter(msgspec.Struct, frozen=True):
    """An action that never succeeded, with the last error."""

    id: int
    tenant: str
    rule: str
    action: str
    payload: dict[str, Any]
    error: str
    attempts: int
    created_ms: int


def describe(action: Action) -> str:
    """What a dead letter names as its action."""
    if isinstance(action, WebhookAction):
        return action.url
    if isinstance(action, CommandAction):
        return f"command:{action.name}"
    if isinstance(action, DesiredStateAction):
        return "desired:" + ",".join(sorted(action.state))
    if isinstance(action, EmitAction):
        return f"emit:{action.metric}"
    return f"predict:{action.model}->{action.emit}"


def _payload(signal: Signal) -> dict[str, Any]:
    return {
        "kind": signal.kind,
        "rule": signal.rule.id,
        "title": signal.rule.title,
        "severity": signal.rule.severity.value,
        "tenant": signal.tenant,
        "device": signal.device,
        "ts": signal.ts,
        "value": signal.value,
        "message": signal.message,
    }


class ActionDispatcher:
    """Per-rule queues of actions, retried where that is safe, then dead-lettered."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        queue_size: int = 1000,
        effects: Effects | None = None,
        latest: Callable[[str, str], Mapping[str, float]] | None = None,
    ) -> None:
        self._engine = engine
        self._queue_size = queue_size
        self.effects = effects or Effects()
        #: The device's latest value per metric (what a model action predicts from).
        self._latest = latest
        self._queues: dict[str, asyncio.Queue[tuple[Action, Signal]]] = {}
        self._tasks: asyncio.TaskGroup | None = None
        self._client: httpx.AsyncClient | None = None
        self.delivered: dict[str, int] = {}
        self.failed: dict[str, int] = {}

    def submit(self, signal: Signal) -> None:
        """Queue the rule's actions for ``signal`` without waiting."""
        definition = signal.rule.definition
        if not isinstance(definition, StreamRule) or not definition.actions:
            return
        actions = [
            action
            for action in definition.actions
            if isinstance(action, WebhookAction) or signal.kind in action.on
        ]
        queue = self._queues.get(signal.rule.id)
        if queue is None:
            if self._tasks is None:
                for action in actions:
                    self._dead_letter(signal, action, "the rule engine is not running", 0)
                return
            queue = self._queues[signal.rule.id] = asyncio.Queue(self._queue_size)
            self._tasks.create_task(
                self._work(queue), name=f"trellis.rules.actions[{signal.rule.id}]"
            )
        for action in actions:
            try:
                queue.put_nowait((action, signal))
            except asyncio.QueueFull:
                self._dead_letter(signal, action, "action queue full", 0)

    async def run(self, stop: asyncio.Event) -> None:
        """Own the workers until ``stop`` is set; what is still queued is dead-lettered."""
        async with httpx.AsyncClient() as client:
            self._client = client
            try:
                async with asyncio.TaskGroup() as tasks:
                    self._tasks = tasks
                    await stop.wait()
                    self._tasks = None
                    for queue in self._queues.values():
                        await queue.put(_STOP)
            finally:
                self._tasks = None
                for queue in self._queues.values():
                    while not queue.empty():
                        item = queue.get_nowait()
                        if item is not _STOP:
                            action, signal = item
                            self._dead_letter(signal, action, "shut down before delivery", 0)
                self._queues.clear()
                self._client = None

    async def _work(self, queue: asyncio.Queue[tuple[Action, Signal]]) -> None:
        while True:
            item = await queue.get()
            if item is _STOP:
                return
            action, signal = item
            if isinstance(action, WebhookAction):
                await self._deliver(action, signal)
                continue
            try:
                await self._act(action, signal)
            except ActionFailed as exc:
                self._failed(signal, action, str(exc))
                await asyncio.to_thread(self._dead_letter, signal, action, str(exc), 1)
            except Exception as exc:  # an effect's own bug must not end the rule's worker
                log.exception("rule %s: action %s failed", signal.rule.id, describe(action))
                reason = f"{type(exc).__name__}: {exc}"
                self._failed(signal, action, reason)
                await asyncio.to_thread(self._dead_letter, signal, action, reason, 1)
            else:
                self.delivered[signal.rule.id] = self.delivered.get(signal.rule.id, 0) + 1

    def _failed(self, signal: Signal, action: Action, reason: str) -> None:
        self.failed[signal.rule.id] = self.failed.get(signal.rule.id, 0) + 1
        log.warning("rule %s: %s failed: %s", signal.rule.id, describe(action), reason)

    async def _act(self, action: _Effect, signal: Signal) -> None:
        """Carry out one non-webhook action or raise :class:`ActionFailed` saying why."""
        effects = self.effects
        tenant = signal.tenant
        device = (
            action.device
            if isinstance(action, CommandAction | DesiredStateAction) and action.device
            else signal.device
        )
        if effects.known_device is not None and not effects.known_device(tenant, device):
            raise ActionFailed(f"unknown device {device!r} in tenant {tenant!r}")
        if isinstance(action, CommandAction):
            if effects.command is None:
                raise ActionFailed("device commands need an MQTT broker; this process has none")
            ok, reason, _ = await effects.command(
                tenant, device, action.name, dict(action.args), action.timeout_s
            )
            if not ok:
                raise ActionFailed(reason)
        elif isinstance(action, DesiredStateAction):
            if effects.desired is None:
                raise ActionFailed("desired state needs the device twins; this process has none")
            await effects.desired(tenant, device, dict(action.state))
        elif isinstance(action, EmitAction):
            value = action.value if action.value is not None else signal.value
            if value is None:
                raise ActionFailed(f"no value to emit as {action.metric} on a {signal.kind}")
            await self._emit(tenant, device, action.metric, signal, float(value))
        else:
            value = await self._predict(action, tenant, device)
            await self._emit(tenant, device, action.emit, signal, value)

    async def _emit(
        self, tenant: str, device: str, metric: str, signal: Signal, value: float
    ) -> None:
        if self.effects.emit is None:
            raise ActionFailed("emitting a metric needs the ingest pipeline; none is running")
        reason = await self.effects.emit(
            tenant, device, metric, signal.ts, value, f"rule:{signal.rule.id}"
        )
        if reason is not None:
            raise ActionFailed(f"ingest quarantined the derived {metric}: {reason}")

    async def _predict(self, action: PredictAction, tenant: str, device: str) -> float:
        effects = self.effects
        if effects.predict is None or effects.features is None:
            raise ActionFailed("calling a model needs the model service; none is running")
        known = effects.features(tenant, action.model)
        if known is None:
            raise ActionFailed(f"unknown model {action.model!r} (or none in production)")
        _, names = known
        latest = self._latest(tenant, device) if self._latest is not None else {}
        missing = [name for name in names if name not in latest]
        if missing:
            raise ActionFailed(f"device {device!r} has not reported {missing} for {action.model}")
        features = {name: latest[name] for name in names}
        try:
            async with asyncio.timeout(action.timeout_s):
                answers = await asyncio.to_thread(
                    effects.predict, tenant, action.model, [(device, features)]
                )
        except TimeoutError:
            raise ActionFailed(
                f"model {action.model!r} gave no answer within {action.timeout_s:g} s"
            ) from None
        outputs = answers[0] if answers else {}
        if not outputs:
            raise ActionFailed(f"model {action.model!r} failed to predict for {device!r}")
        if action.output not in outputs:
            raise ActionFailed(
                f"model {action.model!r} has no output {action.output!r}; it has {sorted(outputs)}"
            )
        value = outputs[action.output]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ActionFailed(f"model output {action.output!r} is not a number: {value!r}")
        return float(value)

    async def _deliver(self, action: WebhookAction, signal: Signal) -> None:
        assert self._client is not None
        error = ""
        for attempt in range(1, action.attempts + 1):
            try:
                response = await self._client.post(
                    action.url, json=_payload(signal), timeout=action.timeout_s
                )
                if response.status_code < 300:
                    self.delivered[signal.rule.id] = self.delivered.get(signal.rule.id, 0) + 1
                    return
                error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            if attempt < action.attempts:
                await asyncio.sleep(backoff_delay(attempt, action.backoff_s, 30.0))
        self._failed(signal, action, error)
        await asyncio.to_thread(self._dead_letter, signal, action, error, action.attempts)

    def _dead_letter(self, signal: Signal, action: Action, error: str, attempts: int) -> None:
        try:
            with self._engine.begin() as connection:
                connection.execute(
                    rule_dead_letters.insert().values(
                        tenant=signal.tenant,
                        rule=signal.rule.id,
                        action=describe(action)[:512],
                        payload=_payload(signal),
                        error=error,
                        attempts=attempts,
                        created_ms=now_ms(),
                    )
                )
        except sa.exc.SQLAlchemyError:
            log.exception("rule %s: could not dead-letter %s", signal.rule.id, _payload(signal))

    def dead_letters(self, tenant: str, limit: int = 100) -> list[RuleDeadLetter]:
        """The newest dead letters of a tenant."""
        query = (
            sa.select(rule_dead_letters)
            .where(rule_dead_letters.c.tenant == tenant)
            .order_by(rule_dead_letters.c.id.desc())
            .limit(limit)
        )
        with self._engine.connect() as connection:
            return [
                msgspec.convert(row_dict(row), RuleDeadLetter)
                for row in connection.execute(query).mappings()
            ]


_STOP: Any = object()
