"""Rule actions beyond the alert: webhooks, each rule on its own queue.

A failing webhook of one rule must not delay another rule's actions, nor the rule
engine: every rule gets a bounded queue and one worker task
(``trellis.rules.actions[RULE]``) owned by :meth:`ActionDispatcher.run`. A delivery is
retried with capped, jittered backoff; after the last attempt, or when the queue is
full, or when shutdown leaves it behind, it becomes a row in ``rule_dead_letters``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import msgspec
import sqlalchemy as sa

from trellis.core.clock import now_ms
from trellis.core.retry import backoff_delay
from trellis.rules.runtime import Signal
from trellis.rules.spec import StreamRule, WebhookAction
from trellis.store.metadata import row_dict, rule_dead_letters

__all__ = ["ActionDispatcher", "RuleDeadLetter"]

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
    """Per-rule queues of webhook deliveries, retried, then dead-lettered."""

    def __init__(self, engine: sa.Engine, *, queue_size: int = 1000) -> None:
        self._engine = engine
        self._queue_size = queue_size
        self._queues: dict[str, asyncio.Queue[tuple[WebhookAction, Signal]]] = {}
        self._tasks: asyncio.TaskGroup | None = None
        self._client: httpx.AsyncClient | None = None
        self.delivered: dict[str, int] = {}
        self.failed: dict[str, int] = {}

    def submit(self, signal: Signal) -> None:
        """Queue the rule's actions for ``signal`` without waiting."""
        definition = signal.rule.definition
        if not isinstance(definition, StreamRule) or not definition.actions:
            return
        queue = self._queues.get(signal.rule.id)
        if queue is None:
            if self._tasks is None:
                for action in definition.actions:
                    self._dead_letter(signal, action, "the rule engine is not running", 0)
                return
            queue = self._queues[signal.rule.id] = asyncio.Queue(self._queue_size)
            self._tasks.create_task(
                self._work(queue), name=f"trellis.rules.actions[{signal.rule.id}]"
            )
        for action in definition.actions:
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

    async def _work(self, queue: asyncio.Queue[tuple[WebhookAction, Signal]]) -> None:
        while True:
            item = await queue.get()
            if item is _STOP:
                return
            action, signal = item
            await self._deliver(action, signal)

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
        self.failed[signal.rule.id] = self.failed.get(signal.rule.id, 0) + 1
        log.warning("rule %s: webhook %s failed: %s", signal.rule.id, action.url, error)
        await asyncio.to_thread(self._dead_letter, signal, action, error, action.attempts)

    def _dead_letter(
        self, signal: Signal, action: WebhookAction, error: str, attempts: int
    ) -> None:
        try:
            with self._engine.begin() as connection:
                connection.execute(
                    rule_dead_letters.insert().values(
                        tenant=signal.tenant,
                        rule=signal.rule.id,
                        action=action.url,
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
