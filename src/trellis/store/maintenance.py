"""Storage housekeeping for a running platform: retention on a timer, and the budget.

The store, the settings and the device list are handed in, so this module knows
nothing of the registry or alerts; the composition root wires the budget alert.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from trellis.core.clock import now_ms
from trellis.core.config import StorageSettings
from trellis.core.types import Device
from trellis.store.base import TimeSeriesStore
from trellis.store.retention import DAY_MS, RetentionRun, StorageBudget, apply_retention, budget

__all__ = ["StorageMaintenance"]

log = logging.getLogger(__name__)


class StorageMaintenance:
    """Applies retention and measures the storage budget, on demand or every interval."""

    def __init__(
        self,
        store: TimeSeriesStore,
        settings: StorageSettings,
        devices: Callable[[], Sequence[Device]],
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._store = store
        self._settings = settings
        self._devices = devices
        self._clock = clock
        self._last: tuple[int, StorageBudget] | None = None

    def budget(self, max_age_s: float = 0.0) -> StorageBudget:
        """Bytes used per tenant, growth over the last day, days until full.

        Measuring counts readings per tenant (a scan), so a caller that can live with
        an older figure (the dashboard) passes ``max_age_s`` and gets the last one.
        """
        now = self._clock()
        if self._last is not None and now - self._last[0] <= max_age_s * 1000:
            return self._last[1]
        measured = budget(
            self._store.usage(now - DAY_MS),
            capacity_bytes=self._settings.capacity_bytes,
            alert_days_left=self._settings.alert_days_left,
        )
        self._last = (now, measured)
        return measured

    def retain(self) -> RetentionRun:
        """Delete raw readings and rollups past each device's policy, now."""
        run = apply_retention(self._store, self._settings, self._devices(), self._clock())
        if run.readings_deleted or run.rollups_deleted:
            log.info(
                "retention deleted %d readings and %d rollup minutes",
                run.readings_deleted,
                run.rollups_deleted,
            )
        return run

    async def run(self, on_budget: Callable[[StorageBudget], None]) -> None:
        """Every ``retention_interval_s``: retention, then the budget to ``on_budget``
        (called in a worker thread: it may write, e.g. an alert).

        A failing pass is logged and retried at the next interval; the store's own
        errors must not stop the platform.
        """
        while True:
            try:
                await asyncio.to_thread(self.retain)
                await asyncio.to_thread(on_budget, await asyncio.to_thread(self.budget))
            except Exception:
                log.exception("storage maintenance failed; retrying at the next interval")
            await asyncio.sleep(self._settings.retention_interval_s)
