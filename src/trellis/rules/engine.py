"""The rule engine: a bus subscriber that turns rule transitions into alerts.

It keeps per-(rule, device) state in memory and restores the "raised" half of it
from the open alerts at start, so after a restart it clears an alert whose
condition has ended instead of forgetting it. Alert writes run in a thread, off the
event loop; while they run, the bus queue fills and backpressure reaches ingest.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from trellis.alerts.service import AlertService
from trellis.bus.base import Subscription
from trellis.core.retry import retry_until_done
from trellis.core.types import Reading
from trellis.devices.registry import DeviceRegistry
from trellis.rules.evaluate import SeriesState, Transition, evaluate
from trellis.rules.model import ThresholdRule
from trellis.rules.store import RuleStore

__all__ = ["RuleEngine"]

log = logging.getLogger(__name__)


class RuleEngine:
    """Evaluate every enabled rule on every batch of readings."""

    def __init__(
        self,
        subscription: Subscription[Reading],
        rules: RuleStore,
        alerts: AlertService,
        registry: DeviceRegistry,
    ) -> None:
        self._subscription = subscription
        self._rules = rules
        self._alerts = alerts
        self._registry = registry
        self._states: dict[tuple[str, str, str], SeriesState] = {}
        self._by_tenant: dict[str, dict[str, list[ThresholdRule]]] = {}
        self.transitions = 0

    def reload(self) -> None:
        """Re-read the rules; call after a rule was saved or deleted."""
        by_tenant: dict[str, dict[str, list[ThresholdRule]]] = {}
        for tenant, rule in self._rules.find():
            if rule.enabled:
                by_tenant.setdefault(tenant, {}).setdefault(rule.metric, []).append(rule)
        self._by_tenant = by_tenant

    def _restore(self) -> None:
        for tenant, rule, device in self._alerts.open_keys():
            self._states[(rule, tenant, device)] = SeriesState(raised=True)

    def _model_of(self, tenant: str, device: str) -> str | None:
        found = self._registry.get(tenant, device)
        return found.model if found else None

    async def run(self) -> None:
        """Consume the bus until it closes."""
        await asyncio.to_thread(self.reload)
        await asyncio.to_thread(self._restore)
        async for batch in self._subscription:
            transitions: list[Transition] = []
            by_tenant = self._by_tenant
            tenants = {reading.tenant for reading in batch}
            for tenant in tenants:
                rules = by_tenant.get(tenant)
                if not rules:
                    continue
                readings = batch if len(tenants) == 1 else [r for r in batch if r.tenant == tenant]
                transitions += evaluate(rules, self._states, readings, self._model_of)
            for transition in transitions:
                # One at a time: a retried raise must not count twice.
                await retry_until_done(
                    functools.partial(asyncio.to_thread, self._apply, transition),
                    what="alert write",
                    logger=log,
                )
                self.transitions += 1

    def _apply(self, t: Transition) -> None:
        if t.kind == "raise":
            self._alerts.raise_alert(
                tenant=t.tenant,
                device=t.device,
                rule=t.rule.id,
                type=t.rule.title,
                severity=t.rule.severity,
                message=(
                    f"{t.rule.metric} = {t.value:g} {t.rule.op} {t.rule.threshold:g}"
                    + (f" for {t.rule.for_s:g} s" if t.rule.for_s else "")
                ),
                value=t.value,
                at_ms=t.ts,
                metric=t.rule.metric,
            )
        else:
            self._alerts.clear(
                tenant=t.tenant, rule=t.rule.id, device=t.device, value=t.value, at_ms=t.ts
            )
