"""Escalation: an alert nobody acknowledged in time is escalated, once, by a timer.

The platform owns the task (``trellis.alerts.escalation``) and stops it with an
event; each check is one conditional ``UPDATE`` in a worker thread, so it never
blocks the loop and two processes checking at once escalate each alert only once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from trellis.alerts.service import AlertService
from trellis.core.clock import now_ms

__all__ = ["Escalator"]

log = logging.getLogger(__name__)


class Escalator:
    """Escalate active, unacknowledged, unsnoozed alerts older than ``after_s``."""

    def __init__(self, alerts: AlertService, *, after_s: float, every_s: float) -> None:
        self._alerts = alerts
        self._after_ms = int(after_s * 1000)
        self._every_s = every_s
        self._stop = asyncio.Event()
        self.escalated = 0

    def check(self, now_ms: int) -> int:
        """One pass (in a thread): escalate what is overdue at ``now_ms``."""
        found = self._alerts.escalate_overdue(None, now_ms - self._after_ms)
        if found:  # one line per pass, not per alert: a backlog must not flood the log
            shown = ", ".join(str(a.id) for a in found[:10])
            more = f" and {len(found) - 10} more" if len(found) > 10 else ""
            log.warning(
                "%d alerts escalated (not acknowledged in time): %s%s", len(found), shown, more
            )
        self.escalated += len(found)
        return len(found)

    async def run(self) -> None:
        """Check every ``every_s`` until :meth:`stop`, the first time one interval after
        start (a process that starts and stops at once escalates nothing); a failing
        check is logged and retried at the next tick rather than ending escalation."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self._every_s)
            if self._stop.is_set():
                return
            try:
                await asyncio.to_thread(self.check, now_ms())
            except Exception:
                log.exception("escalation check failed; retrying in %s s", self._every_s)

    def stop(self) -> None:
        """End :meth:`run` at its next wait."""
        self._stop.set()
