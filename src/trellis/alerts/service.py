"""Alerts: raised and cleared by rules, acknowledged and resolved by people.

The lifecycle, as ThingsBoard users know it::

    raise ──► ACTIVE ──(condition ends)──► CLEARED ──(operator)──► RESOLVED
                 ▲          │                                 ▲
                 └─(trips again: count+1)                     │
    acknowledge: a flag, allowed in ACTIVE and CLEARED ───────┘ resolve: any open state

An alert is *open* until resolved. The dedup key (rule and device) is unique among
open alerts, enforced by the database (``open_key``), so a condition that trips
again while its alert is open increments ``count`` instead of opening a second one,
even across restarts. Methods are synchronous (SQLAlchemy Core); the event loop
calls them in a thread. Every change is broadcast to live viewers.
"""

from __future__ import annotations

import threading

import msgspec
import sqlalchemy as sa

from trellis.core.broadcast import Broadcaster
from trellis.core.clock import now_ms
from trellis.core.errors import NotFoundError
from trellis.core.types import Alert, AlertSeverity, AlertStatus
from trellis.store.metadata import alerts, row_dict

__all__ = ["AlertService", "dedup_key"]


def dedup_key(rule: str, device: str) -> str:
    """The key under which a rule keeps at most one open alert per device."""
    return f"{rule}:{device}"


class AlertService:
    """Alert lifecycle on the metadata database."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self.events: Broadcaster[Alert] = Broadcaster()

    def raise_alert(
        self,
        *,
        tenant: str,
        device: str,
        rule: str,
        type: str,
        severity: AlertSeverity,
        message: str,
        value: float | None,
        at_ms: int,
    ) -> Alert:
        """Open an alert, or count a repeat on the open one with the same key."""
        key = dedup_key(rule, device)
        now = now_ms()
        with self._lock, self._engine.begin() as connection:
            row = connection.execute(
                sa.select(alerts.c.id).where(alerts.c.tenant == tenant, alerts.c.open_key == key)
            ).first()
            if row is None:
                inserted = connection.execute(
                    alerts.insert().values(
                        tenant=tenant,
                        device=device,
                        rule=rule,
                        type=type,
                        severity=severity.value,
                        status=AlertStatus.ACTIVE.value,
                        dedup_key=key,
                        open_key=key,
                        message=message,
                        value=value,
                        count=1,
                        raised_ms=at_ms,
                        updated_ms=now,
                    )
                ).inserted_primary_key
                assert inserted is not None
                alert_id = int(inserted[0])
            else:
                alert_id = int(row.id)
                connection.execute(
                    alerts.update()
                    .where(alerts.c.id == alert_id)
                    .values(
                        count=alerts.c.count + 1,
                        status=AlertStatus.ACTIVE.value,
                        severity=severity.value,
                        message=message,
                        value=value,
                        cleared_ms=None,
                        updated_ms=now,
                    )
                )
            alert = self._get(connection, tenant, alert_id)
        self.events.publish_threadsafe(alert)
        return alert

    def clear(
        self, *, tenant: str, rule: str, device: str, value: float | None, at_ms: int
    ) -> Alert | None:
        """Mark the open alert of (rule, device) cleared; ``None`` when none is active."""
        key = dedup_key(rule, device)
        with self._lock, self._engine.begin() as connection:
            row = connection.execute(
                sa.select(alerts.c.id).where(
                    alerts.c.tenant == tenant,
                    alerts.c.open_key == key,
                    alerts.c.status == AlertStatus.ACTIVE.value,
                )
            ).first()
            if row is None:
                return None
            connection.execute(
                alerts.update()
                .where(alerts.c.id == row.id)
                .values(
                    status=AlertStatus.CLEARED.value,
                    cleared_ms=at_ms,
                    value=value,
                    updated_ms=now_ms(),
                )
            )
            alert = self._get(connection, tenant, row.id)
        self.events.publish_threadsafe(alert)
        return alert

    def acknowledge(self, tenant: str, alert_id: int, by: str) -> Alert:
        """Record that ``by`` has seen the alert; repeating it changes nothing (a
        resolved alert is always acknowledged, see :meth:`resolve`)."""
        with self._lock, self._engine.begin() as connection:
            alert = self._get(connection, tenant, alert_id)
            if alert.acknowledged:
                return alert
            now = now_ms()
            connection.execute(
                alerts.update()
                .where(alerts.c.id == alert_id)
                .values(acknowledged=True, acknowledged_ms=now, acknowledged_by=by, updated_ms=now)
            )
            alert = self._get(connection, tenant, alert_id)
        self.events.publish_threadsafe(alert)
        return alert

    def resolve(self, tenant: str, alert_id: int, by: str) -> Alert:
        """Close the alert; a later trip of the same rule opens a new one."""
        with self._lock, self._engine.begin() as connection:
            alert = self._get(connection, tenant, alert_id)
            if alert.status is AlertStatus.RESOLVED:
                return alert
            now = now_ms()
            values: dict[str, object] = {
                "status": AlertStatus.RESOLVED.value,
                "open_key": None,
                "resolved_ms": now,
                "resolved_by": by,
                "updated_ms": now,
            }
            if not alert.acknowledged:
                # Resolving implies having seen it; MTTA stays measured to this moment.
                values |= {"acknowledged": True, "acknowledged_ms": now, "acknowledged_by": by}
            connection.execute(alerts.update().where(alerts.c.id == alert_id).values(**values))
            alert = self._get(connection, tenant, alert_id)
        self.events.publish_threadsafe(alert)
        return alert

    def get(self, tenant: str, alert_id: int) -> Alert:
        """One alert of the tenant, or :class:`NotFoundError`."""
        with self._engine.connect() as connection:
            return self._get(connection, tenant, alert_id)

    def find(
        self,
        tenant: str,
        *,
        statuses: set[AlertStatus] | None = None,
        device: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Alert]:
        """Newest first, optionally only some statuses or one device."""
        query = (
            sa.select(alerts)
            .where(alerts.c.tenant == tenant)
            .order_by(alerts.c.raised_ms.desc(), alerts.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        if statuses:
            query = query.where(alerts.c.status.in_([status.value for status in statuses]))
        if device is not None:
            query = query.where(alerts.c.device == device)
        with self._engine.connect() as connection:
            return [_alert(row) for row in connection.execute(query).mappings()]

    def open_counts(self, tenant: str) -> list[tuple[str, AlertSeverity, int]]:
        """``(device, severity, count)`` of the tenant's open alerts, counted in SQL so a
        dashboard summary stays one small query however many alerts are open."""
        query = (
            sa.select(alerts.c.device, alerts.c.severity, sa.func.count())
            .where(alerts.c.tenant == tenant, alerts.c.open_key.is_not(None))
            .group_by(alerts.c.device, alerts.c.severity)
        )
        with self._engine.connect() as connection:
            return [
                (device, AlertSeverity(severity), int(count))
                for device, severity, count in connection.execute(query)
            ]

    def open_keys(self, tenant: str | None = None) -> list[tuple[str, str, str]]:
        """``(tenant, rule, device)`` of every active alert, for a rule engine restarting."""
        query = sa.select(alerts.c.tenant, alerts.c.rule, alerts.c.device).where(
            alerts.c.status == AlertStatus.ACTIVE.value
        )
        if tenant is not None:
            query = query.where(alerts.c.tenant == tenant)
        with self._engine.connect() as connection:
            return [(row.tenant, row.rule, row.device) for row in connection.execute(query)]

    @staticmethod
    def _get(connection: sa.Connection, tenant: str, alert_id: int) -> Alert:
        row = (
            connection.execute(
                sa.select(alerts).where(alerts.c.tenant == tenant, alerts.c.id == alert_id)
            )
            .mappings()
            .first()
        )
        if row is None:
            raise NotFoundError("alert", alert_id)
        return _alert(row)


def _alert(row: sa.RowMapping) -> Alert:
    return msgspec.convert(row_dict(row), Alert)
