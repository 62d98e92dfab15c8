"""Alerts: raised and cleared by rules; acknowledged, assigned, judged by people.

The lifecycle, as ThingsBoard users know it::

    raise ──► ACTIVE ──(condition ends)──► CLEARED ──(operator + feedback)──► RESOLVED
                 ▲          │                                         ▲
                 └─(trips again: count+1)                             │
    acknowledge: a flag, allowed in ACTIVE and CLEARED                │
    resolve without feedback: any open state ─────────────────────────┘

An alert is *open* until resolved. The dedup key (rule and device) is unique among
open alerts, enforced by the database (``open_key``), so a condition that trips
again while its alert is open increments ``count`` instead of opening a second one,
even across restarts.

Every change writes one event to the alert's timeline (:mod:`.timeline`) in the same
transaction as the alert row's summary columns. Each transaction *writes first*: a
conditional ``UPDATE`` decides who wins when two operators (or two processes on one
database) act at once, so the loser reads the winner's result instead of overwriting
it, and SQLite never has to upgrade a read lock (which fails instead of waiting).
Rules' writes are synchronous (SQLAlchemy Core, called from the rule engine's thread);
operators' actions are committed in groups by one writer thread
(:class:`~trellis.store.group_commit.GroupCommitter`), awaited by the API or waited for by
other callers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec
import sqlalchemy as sa

from trellis.alerts.feedback import Feedback, Label, validate_feedback
from trellis.alerts.propagation import Ancestors, registry_ancestors
from trellis.alerts.timeline import SYSTEM, AlertEvent, EventKind
from trellis.core.broadcast import Broadcaster
from trellis.core.clock import now_ms, to_iso
from trellis.core.errors import ConflictError, NotFoundError
from trellis.core.types import Alert, AlertSeverity, AlertStatus
from trellis.store.group_commit import Change, GroupCommitter
from trellis.store.metadata import (
    alert_events,
    alert_labels,
    alert_scopes,
    alerts,
    devices,
    row_dict,
)
from trellis.store.prepared import Prepared

__all__ = ["LABEL_MARGIN_MS", "STORM_DEVICE", "AlertOutcome", "AlertService", "dedup_key"]

#: Readings this long before the raise and after the clear belong to a label's window.
LABEL_MARGIN_MS = 5 * 60_000
#: The device of a storm alert, which stands for every device the storm swept up.
STORM_DEVICE = "*"
_OPEN = (AlertStatus.ACTIVE.value, AlertStatus.CLEARED.value)


# The statements of the hot path, built once: building SQLAlchemy expressions per call
# cost more than executing them (measured: about half of an acknowledgement).
_P = sa.bindparam
_GET = sa.select(alerts).where(alerts.c.tenant == _P("p_tenant"), alerts.c.id == _P("p_id"))
# The two statements of an acknowledgement (and of every other timeline change) run as
# prepared statements, on the driver's cursor (:mod:`trellis.store.prepared`).
_EVENT = Prepared(
    alert_events.insert()
    .inline()  # no implicit RETURNING of the new id: nobody reads it
    .values(
        tenant=_P("tenant"),
        alert_id=_P("alert_id"),
        kind=_P("kind"),
        actor=_P("actor"),
        at_ms=_P("at_ms"),
        detail=_P("detail", type_=alert_events.c.detail.type),
    )
)
_ACK = Prepared(
    alerts.update()
    .where(
        alerts.c.tenant == _P("p_tenant"),
        alerts.c.id == _P("p_id"),
        alerts.c.acknowledged.is_(False),
    )
    .values(
        acknowledged=True,
        acknowledged_ms=_P("p_now"),
        acknowledged_by=_P("p_by"),
        updated_ms=_P("p_now"),
    )
    .returning(*alerts.c)  # the winner needs no read-back
)


def _resolve_statement(allowed: sa.ColumnElement[bool]) -> Prepared:
    return Prepared(
        alerts.update()
        .where(
            alerts.c.tenant == _P("p_tenant"),
            alerts.c.id == _P("p_id"),
            allowed,
        )
        .values(
            status=AlertStatus.RESOLVED.value,
            open_key=None,
            resolved_ms=_P("p_now"),
            resolved_by=_P("p_by"),
            updated_ms=_P("p_now"),
            verdict=_P("p_verdict"),
        )
        .returning(*alerts.c)
    )


#: Resolving without feedback closes any open alert; with feedback only a cleared one.
_RESOLVE = _resolve_statement(alerts.c.status != AlertStatus.RESOLVED.value)
_RESOLVE_JUDGED = _resolve_statement(alerts.c.status == AlertStatus.CLEARED.value)


def dedup_key(rule: str, device: str) -> str:
    """The key under which a rule keeps at most one open alert per device."""
    return f"{rule}:{device}"


class AlertOutcome(msgspec.Struct, frozen=True):
    """The answer to an operator's action: the alert as it now is, whether this
    request changed it, and a sentence saying what happened (for a repeat: who did
    it first)."""

    alert: Alert
    changed: bool
    detail: str


class AlertService:
    """Alert lifecycle and timeline on the metadata database."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        root_causes: Mapping[str, Sequence[str]] | None = None,
        storm_limit: int | None = None,
        storm_window_ms: int = 60_000,
        clock: Callable[[], int] = now_ms,
        ancestors: Ancestors | None = None,
    ) -> None:
        self._engine = engine
        #: The nodes above a device that see its alerts (:mod:`.propagation`).
        self._ancestors = ancestors or registry_ancestors(engine)
        self._lock = threading.Lock()
        #: Operators' actions commit together (the rules' writes take the same lock).
        self._writer = GroupCommitter(engine, lock=self._lock, name="alert-actions")
        self._root_causes: Mapping[str, Sequence[str]] = root_causes or {}
        self._storm_limit = storm_limit
        self._storm_window_ms = storm_window_ms
        self._clock = clock
        self.events: Broadcaster[Alert] = Broadcaster()
        #: Called (from the writing thread, after commit) for each new or escalated
        #: alert; the notifier sets it. It must not block.
        self.on_notify: Callable[[Alert, EventKind], None] | None = None

    # -- written by rules ------------------------------------------------------------

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
        metric: str | None = None,
        model_version: str | None = None,
    ) -> Alert:
        """Open an alert, or count a repeat on the open one with the same key.

        In an alert storm (more than ``storm_limit`` new alerts of one rule within
        ``storm_window_ms``), further devices are counted on one storm alert of the
        rule instead of each opening an alert: the count shows the storm's size.
        """
        original = device
        key = dedup_key(rule, device)
        now = self._clock()
        with self._lock, self._engine.begin() as c:
            if self._storm_limit is not None and self._in_storm(c, tenant, rule, key, at_ms):
                device, key = STORM_DEVICE, dedup_key(rule, STORM_DEVICE)
                message = (
                    f"alert storm: more than {self._storm_limit} devices tripped {rule} within "
                    f"{self._storm_window_ms / 1000:g} s; further trips are counted here"
                )
            repeated = c.execute(
                alerts.update()
                .where(alerts.c.tenant == tenant, alerts.c.open_key == key)
                .values(
                    count=alerts.c.count + 1,
                    status=AlertStatus.ACTIVE.value,
                    severity=severity.value,
                    message=message,
                    value=value,
                    cleared_ms=None,
                    updated_ms=now,
                )
                .returning(alerts.c.id, alerts.c.count)
            ).first()
            if repeated is not None:
                alert_id = int(repeated.id)
                detail: dict[str, Any] = {"count": int(repeated[1]), "value": value}
                if device == STORM_DEVICE:
                    detail["device"] = original
                _event(c, tenant, alert_id, EventKind.REPEATED, SYSTEM, at_ms, detail)
            else:
                site = (
                    sa.select(devices.c.site)
                    .where(devices.c.tenant == tenant, devices.c.id == device)
                    .scalar_subquery()
                )
                inserted = c.execute(
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
                        site=sa.func.coalesce(site, ""),
                        metric=metric,
                        model_version=model_version,
                    )
                ).inserted_primary_key
                assert inserted is not None
                alert_id = int(inserted[0])
                # Only a new alert asks the hierarchy (repeats are the hot path).
                scopes = [] if device == STORM_DEVICE else self._ancestors(tenant, device)
                if scopes:
                    c.execute(
                        alert_scopes.insert(),
                        [{"tenant": tenant, "node": n, "alert_id": alert_id} for n in scopes],
                    )
                detail = {"severity": severity.value, "value": value, "message": message}
                _event(c, tenant, alert_id, EventKind.RAISED, SYSTEM, at_ms, detail)
            alert = self._get(c, tenant, alert_id)
        self.events.publish_threadsafe(alert)
        if repeated is None and self.on_notify is not None:
            self.on_notify(alert, EventKind.RAISED)
        return alert

    def _in_storm(self, c: sa.Connection, tenant: str, rule: str, key: str, at_ms: int) -> bool:
        """Whether a new alert of ``rule`` would exceed the storm limit (a trip on an
        already open alert is a repeat, never a storm)."""
        assert self._storm_limit is not None
        open_now = c.execute(
            sa.select(alerts.c.id).where(alerts.c.tenant == tenant, alerts.c.open_key == key)
        ).first()
        if open_now is not None:
            return False
        recent = c.execute(
            sa.select(sa.func.count()).where(
                alerts.c.tenant == tenant,
                alerts.c.raised_ms >= at_ms - self._storm_window_ms,
                alerts.c.rule == rule,
                alerts.c.device != STORM_DEVICE,
            )
        ).scalar_one()
        return int(recent) >= self._storm_limit

    def clear(
        self, *, tenant: str, rule: str, device: str, value: float | None, at_ms: int
    ) -> Alert | None:
        """Mark the open alert of (rule, device) cleared; ``None`` when none is active."""
        key = dedup_key(rule, device)
        with self._lock, self._engine.begin() as c:
            row = c.execute(
                alerts.update()
                .where(
                    alerts.c.tenant == tenant,
                    alerts.c.open_key == key,
                    alerts.c.status == AlertStatus.ACTIVE.value,
                )
                .values(
                    status=AlertStatus.CLEARED.value,
                    cleared_ms=at_ms,
                    value=value,
                    updated_ms=self._clock(),
                )
                .returning(alerts.c.id)
            ).first()
            if row is None:
                return None
            _event(c, tenant, row.id, EventKind.CLEARED, SYSTEM, at_ms, {"value": value})
            alert = self._get(c, tenant, row.id)
        self.events.publish_threadsafe(alert)
        return alert

    # -- operators -------------------------------------------------------------------

    # Each operator action is a change (:mod:`trellis.store.group_commit`): built here with
    # its time and checks, run in the writer thread with whatever else is waiting, and
    # answered once committed. ``x`` blocks the calling thread (CLI, pages, tests);
    # ``x_async`` awaits on the event loop (the API), with no thread-pool hop.

    def acknowledge(self, tenant: str, alert_id: int, by: str) -> AlertOutcome:
        """Record that ``by`` has seen the alert. Of two operators acknowledging at
        once, one wins; the other is told who did (nothing changes on a repeat)."""
        return self._commit(self._acknowledging(tenant, alert_id, by))

    async def acknowledge_async(self, tenant: str, alert_id: int, by: str) -> AlertOutcome:
        """:meth:`acknowledge`, awaited."""
        return await self._commit_async(self._acknowledging(tenant, alert_id, by))

    def resolve(
        self, tenant: str, alert_id: int, by: str, feedback: Feedback | None = None
    ) -> AlertOutcome:
        """Close the alert, with the operator's judgement when given.

        Feedback is refused (:class:`ConflictError`) while the alert is active, see
        :mod:`.feedback`; bad feedback raises ``ValueError``. Resolving implies
        acknowledging, so an unacknowledged alert gets that event first. A later trip
        of the same rule opens a new alert.
        """
        return self._commit(self._resolving(tenant, alert_id, by, feedback))

    async def resolve_async(
        self, tenant: str, alert_id: int, by: str, feedback: Feedback | None = None
    ) -> AlertOutcome:
        """:meth:`resolve`, awaited."""
        return await self._commit_async(self._resolving(tenant, alert_id, by, feedback))

    def assign(self, tenant: str, alert_id: int, by: str, assignee: str | None) -> AlertOutcome:
        """Give the alert to a person or team (``None`` takes it back)."""
        return self._commit(self._assigning(tenant, alert_id, by, assignee))

    async def assign_async(
        self, tenant: str, alert_id: int, by: str, assignee: str | None
    ) -> AlertOutcome:
        """:meth:`assign`, awaited."""
        return await self._commit_async(self._assigning(tenant, alert_id, by, assignee))

    def comment(self, tenant: str, alert_id: int, by: str, text: str) -> AlertOutcome:
        """Add a note to the timeline (allowed on resolved alerts too)."""
        return self._commit(self._commenting(tenant, alert_id, by, text))

    async def comment_async(self, tenant: str, alert_id: int, by: str, text: str) -> AlertOutcome:
        """:meth:`comment`, awaited."""
        return await self._commit_async(self._commenting(tenant, alert_id, by, text))

    def snooze(self, tenant: str, alert_id: int, by: str, until_ms: int) -> AlertOutcome:
        """Hide the alert from escalation until ``until_ms``."""
        return self._commit(self._snoozing(tenant, alert_id, by, until_ms))

    async def snooze_async(
        self, tenant: str, alert_id: int, by: str, until_ms: int
    ) -> AlertOutcome:
        """:meth:`snooze`, awaited."""
        return await self._commit_async(self._snoozing(tenant, alert_id, by, until_ms))

    def record_action(
        self, tenant: str, alert_id: int, by: str, action: str, note: str = ""
    ) -> AlertOutcome:
        """Record something done about the alert (command, work order, adjustment)."""
        return self._commit(self._recording(tenant, alert_id, by, action, note))

    async def record_action_async(
        self, tenant: str, alert_id: int, by: str, action: str, note: str = ""
    ) -> AlertOutcome:
        """:meth:`record_action`, awaited."""
        return await self._commit_async(self._recording(tenant, alert_id, by, action, note))

    def _commit(self, change: Change[AlertOutcome]) -> AlertOutcome:
        outcome = self._writer.call(change)
        if outcome.changed:
            self.events.publish_threadsafe(outcome.alert)
        return outcome

    async def _commit_async(self, change: Change[AlertOutcome]) -> AlertOutcome:
        outcome = await self._writer.run(change)
        if outcome.changed:
            self.events.publish_threadsafe(outcome.alert)
        return outcome

    def close(self) -> None:
        """Commit the operator actions still queued, then stop the writer thread."""
        self._writer.close()

    # The changes: each reads the clock when built, not when run (it may run twice).

    def _acknowledging(self, tenant: str, alert_id: int, by: str) -> Change[AlertOutcome]:
        now = self._clock()

        def change(c: sa.Connection) -> AlertOutcome:
            won = self._ack(c, tenant, alert_id, by, now)
            if won is not None:
                return AlertOutcome(won, True, f"acknowledged by {by}")
            alert = self._get(c, tenant, alert_id)
            if alert.status is AlertStatus.RESOLVED:
                return AlertOutcome(alert, False, _already_resolved(alert))
            return AlertOutcome(alert, False, _already_acknowledged(alert))

        return change

    def _resolving(
        self, tenant: str, alert_id: int, by: str, feedback: Feedback | None
    ) -> Change[AlertOutcome]:
        now = self._clock()

        def change(c: sa.Connection) -> AlertOutcome:
            if feedback is not None:
                current = self._get(c, tenant, alert_id)
                validate_feedback(feedback, current.type, self._root_causes)
            rows = (_RESOLVE_JUDGED if feedback is not None else _RESOLVE).run(
                c,
                {
                    "p_tenant": tenant,
                    "p_id": alert_id,
                    "p_now": now,
                    "p_by": by,
                    "p_verdict": feedback.verdict.value if feedback else None,
                },
            )
            if not rows:
                alert = self._get(c, tenant, alert_id)
                if alert.status is AlertStatus.RESOLVED:
                    return AlertOutcome(alert, False, _already_resolved(alert))
                raise ConflictError(
                    f"alert {alert_id} is still active (the condition holds): feedback is "
                    "taken once it has cleared; acknowledge it now, or resolve it without "
                    "feedback"
                )
            # The row as resolved; an acknowledgement (when nobody had acknowledged it) or an
            # action changes it again.
            alert = _returned(rows[0])
            if not alert.acknowledged:
                alert = self._ack(c, tenant, alert_id, by, now) or alert
            detail: dict[str, Any] = {}
            if feedback is not None:
                detail = msgspec.to_builtins(feedback)
                if feedback.action_taken != "none":
                    self._action(c, tenant, alert_id, by, now, feedback.action_taken, "")
                    alert = self._get(c, tenant, alert_id)
            _event(c, tenant, alert_id, EventKind.RESOLVED, by, now, detail)
            if feedback is not None:
                _insert_label(c, alert, feedback, by, now)
            verdict = f" as {feedback.verdict.value.replace('_', ' ')}" if feedback else ""
            return AlertOutcome(alert, True, f"resolved by {by}{verdict}")

        return change

    def _assigning(
        self, tenant: str, alert_id: int, by: str, assignee: str | None
    ) -> Change[AlertOutcome]:
        def change(c: sa.Connection, now: int) -> str | None:
            if self._get(c, tenant, alert_id).assignee == assignee:
                return None
            c.execute(_touch(tenant, alert_id, now).values(assignee=assignee))
            _event(c, tenant, alert_id, EventKind.ASSIGNED, by, now, {"assignee": assignee})
            return f"assigned to {assignee}" if assignee else "unassigned"

        return self._open_change(tenant, alert_id, change, f"already assigned to {assignee}")

    def _commenting(self, tenant: str, alert_id: int, by: str, text: str) -> Change[AlertOutcome]:
        text = text.strip()
        if not text or len(text) > 2000:
            raise ValueError("a comment has 1 to 2000 characters")
        now = self._clock()

        def change(c: sa.Connection) -> AlertOutcome:
            c.execute(_touch(tenant, alert_id, now))
            alert = self._get(c, tenant, alert_id)
            _event(c, tenant, alert_id, EventKind.COMMENTED, by, now, {"text": text})
            return AlertOutcome(alert, True, f"comment by {by} added")

        return change

    def _snoozing(self, tenant: str, alert_id: int, by: str, until_ms: int) -> Change[AlertOutcome]:
        def change(c: sa.Connection, now: int) -> str | None:
            if until_ms <= now:
                raise ValueError(f"snooze until {to_iso(until_ms)} is not in the future")
            c.execute(_touch(tenant, alert_id, now).values(snoozed_until_ms=until_ms))
            _event(c, tenant, alert_id, EventKind.SNOOZED, by, now, {"until_ms": until_ms})
            return f"snoozed until {to_iso(until_ms)}"

        return self._open_change(tenant, alert_id, change, "")

    def _recording(
        self, tenant: str, alert_id: int, by: str, action: str, note: str
    ) -> Change[AlertOutcome]:
        if not action.strip() or len(action) > 128 or len(note) > 2000:
            raise ValueError("an action has a name of 1 to 128 characters and a note ≤ 2000")

        def change(c: sa.Connection, now: int) -> str | None:
            self._action(c, tenant, alert_id, by, now, action, note)
            return f"{action} recorded by {by}"

        return self._open_change(tenant, alert_id, change, "")

    def escalate_overdue(self, tenant: str | None, older_than_ms: int) -> list[Alert]:
        """Escalate every active, unacknowledged, unsnoozed, not yet escalated alert
        raised before ``older_than_ms``; returns the alerts escalated."""
        now = self._clock()
        where = [
            alerts.c.status == AlertStatus.ACTIVE.value,
            alerts.c.acknowledged.is_(False),
            alerts.c.escalation_level == 0,
            alerts.c.raised_ms < older_than_ms,
            sa.or_(alerts.c.snoozed_until_ms.is_(None), alerts.c.snoozed_until_ms <= now),
        ]
        if tenant is not None:
            where.append(alerts.c.tenant == tenant)
        with self._lock, self._engine.begin() as c:
            rows = c.execute(
                alerts.update()
                .where(*where)
                .values(escalated_ms=now, escalation_level=alerts.c.escalation_level + 1)
                .returning(alerts.c.id, alerts.c.tenant)
            ).all()
            escalated = []
            for row in rows:
                detail = {"level": 1, "reason": "not acknowledged in time"}
                _event(c, row.tenant, row.id, EventKind.ESCALATED, SYSTEM, now, detail)
                escalated.append(self._get(c, row.tenant, row.id))
        for alert in escalated:
            self.events.publish_threadsafe(alert)
            if self.on_notify is not None:
                self.on_notify(alert, EventKind.ESCALATED)
        return escalated

    # -- reading ----------------------------------------------------------------------

    def get(self, tenant: str, alert_id: int) -> Alert:
        """One alert of the tenant, or :class:`NotFoundError`."""
        with self._engine.connect() as connection:
            return self._get(connection, tenant, alert_id)

    def timeline(self, tenant: str, alert_id: int) -> list[AlertEvent]:
        """Every change of one alert, oldest first."""
        query = (
            sa.select(alert_events)
            .where(alert_events.c.tenant == tenant, alert_events.c.alert_id == alert_id)
            .order_by(alert_events.c.id)
        )
        with self._engine.connect() as c:
            self._get(c, tenant, alert_id)
            return [msgspec.convert(row_dict(r), AlertEvent) for r in c.execute(query).mappings()]

    def labels(
        self, tenant: str, *, since_ms: int | None = None, until_ms: int | None = None
    ) -> list[Label]:
        """Feedback labels, oldest first, for export to training and drift detection."""
        query = (
            sa.select(alert_labels)
            .where(alert_labels.c.tenant == tenant)
            .order_by(alert_labels.c.labelled_ms, alert_labels.c.id)
        )
        if since_ms is not None:
            query = query.where(alert_labels.c.labelled_ms >= since_ms)
        if until_ms is not None:
            query = query.where(alert_labels.c.labelled_ms < until_ms)
        with self._engine.connect() as c:
            return [msgspec.convert(row_dict(r), Label) for r in c.execute(query).mappings()]

    def find(
        self,
        tenant: str,
        *,
        statuses: set[AlertStatus] | None = None,
        device: str | None = None,
        site: str | None = None,
        under: str | None = None,
        by_severity: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Alert]:
        """Newest first (or most severe first, then newest), optionally filtered by
        status, device, site (a site sees the alerts of every device at it) or any node
        of the asset tree (``under``: the alerts propagated to it, :mod:`.propagation`)."""
        order: list[Any] = []
        if by_severity:
            rank = sa.case(
                {severity.value: i for i, severity in enumerate(AlertSeverity)},
                value=alerts.c.severity,
            )
            order.append(rank)
        order += [alerts.c.raised_ms.desc(), alerts.c.id.desc()]
        query = (
            sa.select(alerts)
            .where(alerts.c.tenant == tenant)
            .order_by(*order)
            .limit(limit)
            .offset(offset)
        )
        if statuses:
            query = query.where(alerts.c.status.in_([status.value for status in statuses]))
        if device is not None:
            query = query.where(alerts.c.device == device)
        if site is not None:
            query = query.where(alerts.c.site == site)
        if under is not None:
            query = query.where(
                alerts.c.id.in_(
                    sa.select(alert_scopes.c.alert_id).where(
                        alert_scopes.c.tenant == tenant, alert_scopes.c.node == under
                    )
                )
            )
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

    # -- internals --------------------------------------------------------------------

    def _ack(self, c: sa.Connection, tenant: str, alert_id: int, by: str, now: int) -> Alert | None:
        """The conditional write that makes exactly one acknowledgement win: the alert as
        the winner left it, ``None`` when it was acknowledged already (or is unknown)."""
        params = {"p_tenant": tenant, "p_id": alert_id, "p_by": by, "p_now": now}
        rows = _ACK.run(c, params)
        if not rows:
            return None
        _event(c, tenant, alert_id, EventKind.ACKNOWLEDGED, by, now, {})
        return _returned(rows[0])

    def _action(
        self,
        c: sa.Connection,
        tenant: str,
        alert_id: int,
        by: str,
        now: int,
        action: str,
        note: str,
    ) -> None:
        c.execute(
            _touch(tenant, alert_id, now).values(
                first_action_ms=sa.func.coalesce(alerts.c.first_action_ms, now)
            )
        )
        _event(c, tenant, alert_id, EventKind.ACTION, by, now, {"action": action, "note": note})

    def _open_change(
        self,
        tenant: str,
        alert_id: int,
        change: Callable[[sa.Connection, int], str | None],
        unchanged: str,
    ) -> Change[AlertOutcome]:
        """``change`` applied to an open alert; a resolved one is refused with a reason."""
        now = self._clock()

        def on_open(c: sa.Connection) -> AlertOutcome:
            touched = c.execute(
                _touch(tenant, alert_id, now).where(alerts.c.status.in_(_OPEN))
            ).rowcount
            if not touched:
                alert = self._get(c, tenant, alert_id)
                raise ConflictError(f"alert {alert_id} is {_already_resolved(alert)}")
            said = change(c, now)
            alert = self._get(c, tenant, alert_id)
            if said is None:
                return AlertOutcome(alert, False, unchanged)
            return AlertOutcome(alert, True, said)

        return on_open

    @staticmethod
    def _get(connection: sa.Connection, tenant: str, alert_id: int) -> Alert:
        row = connection.execute(_GET, {"p_tenant": tenant, "p_id": alert_id}).mappings().first()
        if row is None:
            raise NotFoundError("alert", alert_id)
        return _alert(row)


def _touch(tenant: str, alert_id: int, now: int) -> sa.Update:
    """An update of one alert that takes the write lock first (see the module doc)."""
    return (
        alerts.update()
        .where(alerts.c.tenant == tenant, alerts.c.id == alert_id)
        .values(updated_ms=now)
    )


def _event(
    c: sa.Connection,
    tenant: str,
    alert_id: int,
    kind: EventKind,
    actor: str,
    at_ms: int,
    detail: dict[str, Any],
) -> None:
    _EVENT.run(
        c,
        {
            "tenant": tenant,
            "alert_id": alert_id,
            "kind": kind.value,
            "actor": actor,
            "at_ms": at_ms,
            "detail": detail,
        },
    )


def _insert_label(c: sa.Connection, alert: Alert, feedback: Feedback, by: str, now: int) -> None:
    end = alert.cleared_ms if alert.cleared_ms is not None else now
    c.execute(
        alert_labels.insert().values(
            tenant=alert.tenant,
            alert_id=alert.id,
            verdict=feedback.verdict.value,
            root_cause=feedback.root_cause,
            action_taken=feedback.action_taken,
            note=feedback.note,
            device=alert.device,
            site=alert.site,
            metrics=[alert.metric] if alert.metric else [],
            window_start_ms=alert.raised_ms - LABEL_MARGIN_MS,
            window_end_ms=end + LABEL_MARGIN_MS,
            rule=alert.rule,
            model_version=alert.model_version,
            labelled_by=by,
            labelled_ms=now,
        )
    )


def _already_acknowledged(alert: Alert) -> str:
    when = to_iso(alert.acknowledged_ms) if alert.acknowledged_ms is not None else "?"
    return f"already acknowledged by {alert.acknowledged_by} at {when}"


def _already_resolved(alert: Alert) -> str:
    when = to_iso(alert.resolved_ms) if alert.resolved_ms is not None else "?"
    return f"already resolved by {alert.resolved_by} at {when}"


def _alert(row: sa.RowMapping) -> Alert:
    return msgspec.convert(row_dict(row), Alert)


def _returned(values: tuple[Any, ...]) -> Alert:
    """The alert from a ``RETURNING *alerts.c`` row of a prepared statement (every column,
    in the table's order: ``_ACK``, ``_RESOLVE`` and ``_RESOLVE_JUDGED`` all return it)."""
    return msgspec.convert(dict(zip(_ALERT_COLUMNS, values, strict=True)), Alert)


_ALERT_COLUMNS = tuple(str(column.key) for column in alerts.c)  # plain str: msgspec keys
