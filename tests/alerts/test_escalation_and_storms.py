"""Escalation by the platform's own task, and alert storms grouped with a visible count."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa

from tests.helpers import NOW_MS, TENANT, run
from trellis.alerts import AlertService
from trellis.alerts.service import STORM_DEVICE
from trellis.alerts.snooze import PRESETS
from trellis.alerts.timeline import EventKind
from trellis.core.clock import now_ms
from trellis.core.config import load_settings
from trellis.core.types import Alert, AlertSeverity
from trellis.platform import Platform
from trellis.ui.routes import templates


def _trip(service: AlertService, device: str, at: int = NOW_MS) -> int:
    return service.raise_alert(
        tenant=TENANT,
        device=device,
        rule="hot",
        type="Hot",
        severity=AlertSeverity.MAJOR,
        message="hot",
        value=90.0,
        at_ms=at,
    ).id


def test_the_platform_escalates_an_unacknowledged_alert(tmp_path: Path) -> None:
    """With escalate_after_s=0.2 the running platform's named task escalates an alert
    nobody acknowledged, exactly once, and leaves an acknowledged one alone."""
    settings = load_settings(
        data_dir=tmp_path / "d", alerts={"escalate_after_s": 0.2, "escalation_check_s": 0.05}
    )
    platform = Platform(settings)

    async def scenario() -> tuple[int, int, list[str]]:
        async with platform.running():
            names = [t.get_name() for t in asyncio.all_tasks()]
            late = _trip(platform.alerts, "pump-0001", now_ms())
            seen = _trip(platform.alerts, "pump-0002", now_ms())
            platform.alerts.acknowledge(TENANT, seen, "ana")
            for _ in range(200):
                if platform.alerts.get(TENANT, late).escalation_level:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)  # several more checks: still escalated only once
            return late, seen, names

    try:
        late, seen, names = run(scenario())
        assert "trellis.alerts.escalation" in names
        events = platform.alerts.timeline(TENANT, late)
        assert [e.kind for e in events].count(EventKind.ESCALATED) == 1
        assert platform.alerts.get(TENANT, seen).escalation_level == 0
    finally:
        platform.close()


def test_a_storm_is_grouped_into_one_alert_whose_count_grows(metadata_engine: sa.Engine) -> None:
    """Beyond storm_limit new alerts of one rule within the window, further devices are
    counted on one storm alert (device '*'); repeats of open alerts stay repeats."""
    service = AlertService(metadata_engine, storm_limit=3, storm_window_ms=60_000)
    notified: list[tuple[str, EventKind]] = []
    service.on_notify = lambda alert, kind: notified.append((alert.device, kind))
    first = [_trip(service, f"pump-{n}") for n in range(3)]
    storm = {_trip(service, f"pump-{n}", NOW_MS + n) for n in range(3, 10)}
    assert len(storm) == 1
    (storm_id,) = storm
    alert = service.get(TENANT, storm_id)
    card = _card_text(alert)
    assert "Alert storm" in card
    assert "7 trips across devices" in card
    assert ">7×<" in card
    assert (alert.device, alert.count) == (STORM_DEVICE, 7)
    assert "alert storm" in alert.message
    devices = [e.detail.get("device") for e in service.timeline(TENANT, storm_id)]
    assert devices[1:] == [f"pump-{n}" for n in range(4, 10)]
    # Rate limited: the storm pages once, not once per device.
    assert [device for device, _ in notified] == ["pump-0", "pump-1", "pump-2", STORM_DEVICE]
    assert _trip(service, "pump-0") == first[0]  # an open alert's repeat is not a storm
    assert service.get(TENANT, first[0]).count == 2
    assert len(service.find(TENANT)) == 4
    later = _trip(service, "pump-99", NOW_MS + 10 * 60_000)  # the window has passed
    assert service.get(TENANT, later).device == "pump-99"


def _card_text(alert: Alert) -> str:
    """The inbox card of ``alert`` as the dashboard renders it."""
    card = templates.env.get_template("_alert_card.html")
    return card.render(
        alert=alert,
        names={},
        now=now_ms(),
        root_causes_for=lambda _type: ["unknown"],
        actions=["none"],
        verdicts=[],
        snooze_presets=PRESETS,
        csrf="token",
    )
