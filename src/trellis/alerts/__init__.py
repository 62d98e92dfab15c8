"""Alerts: the lifecycle operators work with (raise, clear, acknowledge, resolve)."""

from trellis.alerts.service import AlertService, dedup_key

__all__ = ["AlertService", "dedup_key"]
