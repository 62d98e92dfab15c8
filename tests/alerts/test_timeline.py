"""The alert timeline: every change is an event, the state is what the events add up to,
concurrent operators, feedback refusal and labels, on the real SQLite database."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import NOW_MS, TENANT
from tests.services import postgres_url
from trellis.alerts import AlertService
from trellis.alerts.export import labels_csv, labels_jsonl
from trellis.alerts.feedback import Feedback, Label, Verdict
from trellis.alerts.service import LABEL_MARGIN_MS
from trellis.alerts.timeline import EventKind, TimelineState, replay
from trellis.core.errors import ConflictError, NotFoundError
from trellis.core.types import Alert, AlertSeverity, AlertStatus, Device
from trellis.devices.registry import DeviceRegistry
from trellis.store.metadata import open_metadata


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: int = NOW_MS) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now


def _raise(service: AlertService, device: str = "pump-0001", at: int = NOW_MS) -> Alert:
    return service.raise_alert(
        tenant=TENANT,
        device=device,
        rule="hot",
        type="Hot",
        severity=AlertSeverity.MAJOR,
        message="temperature high",
        value=90.0,
        at_ms=at,
        metric="temperature",
        model_version="iforest-3",
    )


def _clear(service: AlertService, device: str = "pump-0001", at: int = NOW_MS) -> Alert | None:
    return service.clear(tenant=TENANT, rule="hot", device=device, value=20.0, at_ms=at)


def _summary(alert: Alert) -> TimelineState:
    fields = {name: getattr(alert, name) for name in TimelineState.__struct_fields__}
    fields["status"] = alert.status.value
    return TimelineState(**fields)


def test_every_change_is_an_event_with_actor_and_time(metadata_engine: sa.Engine) -> None:
    """Raise, repeat, clear, ack, assign, comment, snooze, action, resolve each write one
    event with who and when, and the alert row equals the replay of its timeline."""
    clock = Clock()
    service = AlertService(metadata_engine, clock=clock)
    alert = _raise(service)
    _raise(service, at=NOW_MS + 1_000)
    clock.now += 5_000
    service.acknowledge(TENANT, alert.id, "ana")
    service.assign(TENANT, alert.id, "ana", "team-pumps")
    service.comment(TENANT, alert.id, "bob", "bearing noise, checking")
    service.snooze(TENANT, alert.id, "bob", clock.now + 60_000)
    service.record_action(TENANT, alert.id, "bob", "work order", "WO-17")
    _clear(service, at=NOW_MS + 9_000)
    clock.now += 10_000
    feedback = Feedback(Verdict.TRUE_POSITIVE, "equipment fault", "replaced part", "bearing")
    done = service.resolve(TENANT, alert.id, "bob", feedback).alert

    events = service.timeline(TENANT, alert.id)
    assert [(e.kind, e.actor) for e in events] == [
        (EventKind.RAISED, "system"),
        (EventKind.REPEATED, "system"),
        (EventKind.ACKNOWLEDGED, "ana"),
        (EventKind.ASSIGNED, "ana"),
        (EventKind.COMMENTED, "bob"),
        (EventKind.SNOOZED, "bob"),
        (EventKind.ACTION, "bob"),
        (EventKind.CLEARED, "system"),
        (EventKind.ACTION, "bob"),
        (EventKind.RESOLVED, "bob"),
    ]
    assert [e.at_ms for e in events][:3] == [NOW_MS, NOW_MS + 1_000, NOW_MS + 5_000]
    assert events[-1].detail["verdict"] == "true_positive"
    assert events[4].detail == {"text": "bearing noise, checking"}
    assert _summary(done) == replay(events)
    assert (done.count, done.assignee, done.first_action_ms) == (2, "team-pumps", NOW_MS + 5_000)


_OPS = st.lists(
    st.sampled_from(["raise", "clear", "ack", "resolve", "judge", "assign", "action", "tick"]),
    max_size=25,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_OPS)
def test_state_always_equals_the_replay_of_the_timeline(tmp_path: Path, ops: list[str]) -> None:
    """Whatever operators and rules do, in any order, each alert's row is its timeline."""
    engine = open_metadata(f"sqlite:///{tmp_path / f'p{abs(hash(tuple(ops)))}.db'}")
    clock = Clock()
    service = AlertService(engine, clock=clock)
    try:
        current: Alert | None = None
        for op in ops:
            clock.now += 1_000
            if op == "raise":
                current = _raise(service, at=clock.now)
            elif op == "clear":
                _clear(service, at=clock.now)
            elif current is None:
                continue
            elif op == "ack":
                service.acknowledge(TENANT, current.id, "ana")
            elif op == "resolve":
                service.resolve(TENANT, current.id, "ana")
            elif op == "judge":
                try:
                    service.resolve(TENANT, current.id, "ana", Feedback(Verdict.FALSE_POSITIVE))
                except ConflictError:
                    assert service.get(TENANT, current.id).status is AlertStatus.ACTIVE
            elif op == "assign":
                try:
                    service.assign(TENANT, current.id, "ana", f"t{clock.now}")
                except ConflictError:
                    assert service.get(TENANT, current.id).status is AlertStatus.RESOLVED
            elif op == "action":
                try:
                    service.record_action(TENANT, current.id, "ana", "adjustment")
                except ConflictError:
                    assert service.get(TENANT, current.id).status is AlertStatus.RESOLVED
        for alert in service.find(TENANT, limit=1000):
            assert _summary(alert) == replay(service.timeline(TENANT, alert.id))
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def two_processes(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[AlertService, AlertService]]:
    """Two services on one database, each with its own engine (as two workers): one
    SQLite file, or the run's PostgreSQL database (where row locks, not a file lock,
    decide who wins)."""
    url = f"sqlite:///{tmp_path / 'trellis.db'}" if request.param == "sqlite" else postgres_url()
    engines = [open_metadata(url), open_metadata(url)]
    yield AlertService(engines[0]), AlertService(engines[1])
    for engine in engines:
        engine.dispose()


def test_concurrent_acknowledgements_one_wins_both_see_it(
    two_processes: tuple[AlertService, AlertService],
) -> None:
    """Two operators acknowledging 30 alerts at the same moment from two workers: each
    alert has exactly one winner and one acknowledged event, and both answers name it."""
    first, second = two_processes
    ids = [_raise(first, device=f"pump-{n:04d}").id for n in range(30)]
    barrier = threading.Barrier(2)
    answers: dict[str, list[tuple[int, bool, str | None, str]]] = {"ana": [], "bob": []}

    def operator(service: AlertService, name: str) -> None:
        barrier.wait()
        for alert_id in ids:
            outcome = service.acknowledge(TENANT, alert_id, name)
            answers[name].append(
                (alert_id, outcome.changed, outcome.alert.acknowledged_by, outcome.detail)
            )

    threads = [
        threading.Thread(target=operator, args=(first, "ana")),
        threading.Thread(target=operator, args=(second, "bob")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for a, b in zip(answers["ana"], answers["bob"], strict=True):
        assert a[0] == b[0]
        assert a[1] != b[1], f"alert {a[0]}: exactly one acknowledgement changes it"
        assert a[2] == b[2], "both operators see the same winner"
        loser = b if a[1] else a
        assert loser[3].startswith(f"already acknowledged by {a[2]}")
        events = first.timeline(TENANT, a[0])
        assert [e.actor for e in events if e.kind is EventKind.ACKNOWLEDGED] == [a[2]]


def test_feedback_is_refused_while_the_alert_is_active(metadata_engine: sa.Engine) -> None:
    """Resolving with a verdict while the condition holds is a ConflictError and writes
    nothing; once cleared the same request resolves it."""
    service = AlertService(metadata_engine)
    alert = _raise(service)
    before = service.timeline(TENANT, alert.id)
    with pytest.raises(ConflictError, match="still active"):
        service.resolve(TENANT, alert.id, "ana", Feedback(Verdict.FALSE_POSITIVE))
    assert service.get(TENANT, alert.id).status is AlertStatus.ACTIVE
    assert service.timeline(TENANT, alert.id) == before
    assert service.labels(TENANT) == []
    _clear(service, at=NOW_MS + 60_000)
    outcome = service.resolve(TENANT, alert.id, "ana", Feedback(Verdict.FALSE_POSITIVE))
    assert (outcome.changed, outcome.alert.verdict) == (True, "false_positive")
    assert outcome.detail == "resolved by ana as false positive"


def test_bad_feedback_names_the_field_and_the_allowed_values(metadata_engine: sa.Engine) -> None:
    """An unknown root cause or action is a ValueError listing the choices; nothing is written."""
    service = AlertService(metadata_engine, root_causes={"Hot": ["fan failure", "unknown"]})
    alert = _raise(service)
    _clear(service)
    with pytest.raises(ValueError, match=r"root_cause 'equipment fault' is not one of \['fan"):
        service.resolve(TENANT, alert.id, "ana", Feedback(Verdict.TRUE_POSITIVE, "equipment fault"))
    with pytest.raises(ValueError, match="action_taken 'prayed'"):
        service.resolve(
            TENANT, alert.id, "ana", Feedback(Verdict.TRUE_POSITIVE, "unknown", "prayed")
        )
    assert service.get(TENANT, alert.id).status is AlertStatus.CLEARED
    ok = service.resolve(TENANT, alert.id, "ana", Feedback(Verdict.TRUE_POSITIVE, "fan failure"))
    assert ok.changed


def test_feedback_becomes_a_label_on_the_readings_window(
    metadata_engine: sa.Engine, tmp_path: Path
) -> None:
    """The label carries device, site, metric, the raise-to-clear window with margins,
    the rule and model version; JSON lines and CSV exports round-trip it."""
    DeviceRegistry(metadata_engine).register(Device(TENANT, "pump-0001", "pump", site="plant-a"))
    service = AlertService(metadata_engine)
    alert = _raise(service, at=NOW_MS)
    _clear(service, at=NOW_MS + 120_000)
    service.resolve(
        TENANT, alert.id, "ana", Feedback(Verdict.FALSE_POSITIVE, "sensor fault", "none", 'a, "b"')
    )
    (label,) = service.labels(TENANT)
    assert (label.alert_id, label.device, label.site, label.metrics) == (
        alert.id,
        "pump-0001",
        "plant-a",
        ["temperature"],
    )
    assert (label.window_start_ms, label.window_end_ms) == (
        NOW_MS - LABEL_MARGIN_MS,
        NOW_MS + 120_000 + LABEL_MARGIN_MS,
    )
    assert (label.rule, label.model_version, label.labelled_by) == ("hot", "iforest-3", "ana")
    lines = labels_jsonl([label]).splitlines()
    assert [msgspec.json.decode(line, type=Label) for line in lines] == [label]
    rows = labels_csv([label]).splitlines()
    assert rows[0].startswith("id,tenant,alert_id,verdict")
    assert '"a, ""b"""' in rows[1]
    assert len(rows) == 2


def test_changes_to_a_resolved_alert_are_refused(metadata_engine: sa.Engine) -> None:
    """Assign, snooze, action on a resolved alert: ConflictError saying who resolved it;
    comments stay allowed; unknown ids are NotFoundError."""
    clock = Clock()
    service = AlertService(metadata_engine, clock=clock)
    alert = _raise(service)
    service.resolve(TENANT, alert.id, "ana")
    with pytest.raises(ConflictError, match="already resolved by ana"):
        service.assign(TENANT, alert.id, "bob", "team")
    with pytest.raises(ConflictError, match="already resolved"):
        service.snooze(TENANT, alert.id, "bob", clock.now + 1_000)
    with pytest.raises(ConflictError, match="already resolved"):
        service.record_action(TENANT, alert.id, "bob", "command")
    assert service.comment(TENANT, alert.id, "bob", "post-mortem done").changed
    with pytest.raises(NotFoundError):
        service.assign(TENANT, 9999, "bob", "team")
    with pytest.raises(NotFoundError):
        service.timeline(TENANT, 9999)
    with pytest.raises(ValueError, match="1 to 2000"):
        service.comment(TENANT, alert.id, "bob", "   ")


def test_repeat_assignment_and_past_snooze(metadata_engine: sa.Engine) -> None:
    """Assigning to the current assignee changes nothing; a snooze in the past is refused."""
    clock = Clock()
    service = AlertService(metadata_engine, clock=clock)
    alert = _raise(service)
    assert service.assign(TENANT, alert.id, "ana", "team").changed
    again = service.assign(TENANT, alert.id, "bob", "team")
    assert (again.changed, again.detail) == (False, "already assigned to team")
    with pytest.raises(ValueError, match="not in the future"):
        service.snooze(TENANT, alert.id, "ana", clock.now - 1)
    kinds = [e.kind for e in service.timeline(TENANT, alert.id)]
    assert kinds == [EventKind.RAISED, EventKind.ASSIGNED]


def test_escalation_of_alerts_not_acknowledged_in_time(metadata_engine: sa.Engine) -> None:
    """Only active, unacknowledged, unsnoozed alerts older than the limit escalate, once."""
    clock = Clock(NOW_MS + 600_000)
    service = AlertService(metadata_engine, clock=clock)
    late = _raise(service, device="pump-0001", at=NOW_MS)
    acked = _raise(service, device="pump-0002", at=NOW_MS)
    snoozed = _raise(service, device="pump-0003", at=NOW_MS)
    fresh = _raise(service, device="pump-0004", at=clock.now - 1_000)
    service.acknowledge(TENANT, acked.id, "ana")
    service.snooze(TENANT, snoozed.id, "ana", clock.now + 60_000)
    escalated = service.escalate_overdue(TENANT, clock.now - 300_000)
    assert [a.id for a in escalated] == [late.id]
    assert escalated[0].escalation_level == 1
    assert service.escalate_overdue(TENANT, clock.now - 300_000) == []
    assert fresh.escalation_level == 0
    (event,) = [e for e in service.timeline(TENANT, late.id) if e.kind is EventKind.ESCALATED]
    assert (event.actor, event.at_ms) == ("system", clock.now)


def test_site_filter_and_severity_order(metadata_engine: sa.Engine) -> None:
    """A site sees its devices' alerts; the inbox can list most severe first."""
    registry = DeviceRegistry(metadata_engine)
    registry.register(Device(TENANT, "pump-0001", "pump", site="plant-a"))
    registry.register(Device(TENANT, "pump-0002", "pump", site="plant-b"))
    service = AlertService(metadata_engine)
    minor = service.raise_alert(
        tenant=TENANT,
        device="pump-0001",
        rule="r1",
        type="T",
        severity=AlertSeverity.MINOR,
        message="m",
        value=1.0,
        at_ms=NOW_MS + 5,
    )
    critical = service.raise_alert(
        tenant=TENANT,
        device="pump-0001",
        rule="r2",
        type="T",
        severity=AlertSeverity.CRITICAL,
        message="m",
        value=1.0,
        at_ms=NOW_MS,
    )
    other = _raise(service, device="pump-0002")
    assert {a.id for a in service.find(TENANT, site="plant-a")} == {minor.id, critical.id}
    assert [a.id for a in service.find(TENANT, site="plant-b")] == [other.id]
    ordered = service.find(TENANT, site="plant-a", by_severity=True)
    assert [a.id for a in ordered] == [critical.id, minor.id]
    assert [a.id for a in service.find(TENANT, site="plant-a")] == [minor.id, critical.id]
