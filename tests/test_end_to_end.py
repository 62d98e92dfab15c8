"""The walking skeleton end to end: simulated fleet → ingest → store → rules → alerts."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.helpers import NOW_MS, TENANT, run, telemetry
from trellis.core.config import Settings, load_settings
from trellis.core.types import Alert, AlertStatus
from trellis.platform import Platform
from trellis.sim.fleet import Fleet


def _settings(tmp_path: Path) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data",
        sim={"pumps": 3, "rooms": 2, "fault_device": "pump-0002", "fault_after_s": 5},
    )


def test_a_faulty_pump_raises_one_critical_alert_and_everything_is_stored(tmp_path: Path) -> None:
    """A bearing fault on one pump trips the vibration rule once; every reading is stored."""
    settings = _settings(tmp_path)

    async def scenario() -> tuple[list[Alert], int, int]:
        platform = Platform(settings)
        async with platform.running():
            fleet = Fleet(settings.sim, TENANT, start_ms=NOW_MS)
            platform.seed_demo()
            for device in fleet.devices():
                platform.registry.register(device)
            with platform.alerts.events.listen() as events:
                messages = 0
                for second in range(60):
                    for message in fleet.messages(
                        NOW_MS + second * 1000, received_ms=NOW_MS + 60_000
                    ):
                        await platform.pipeline.submit(message)
                        messages += 1
                first = await asyncio.wait_for(events.get(), timeout=30)
            stored = platform.store.count(TENANT)
        alerts = platform.alerts.find(TENANT)
        platform.close()
        assert first.device == "pump-0002"
        return alerts, stored, messages

    alerts, stored, messages = run(scenario())
    assert stored == messages * 3
    vibration = [a for a in alerts if a.rule == "pump-vibration-high"]
    assert [(a.device, a.severity.value, a.count) for a in vibration] == [
        ("pump-0002", "critical", 1)
    ]
    assert {a.device for a in alerts} == {"pump-0002"}


def test_restart_neither_duplicates_nor_forgets_an_open_alert(tmp_path: Path) -> None:
    """After a restart, the engine clears the alert raised before it, and a new trip
    reactivates that same alert instead of opening a second one."""
    settings = _settings(tmp_path)
    hot = {"temperature": 95.0, "vibration": 2.0, "pressure": 5.0}
    cool = {"temperature": 60.0, "vibration": 2.0, "pressure": 5.0}

    async def phase(values: dict[str, float], start_s: int, seconds: int) -> Alert:
        platform = Platform(settings)
        try:
            async with platform.running(simulate=False):
                platform.seed_demo()
                with platform.alerts.events.listen() as events:
                    for second in range(start_s, start_s + seconds):
                        await platform.pipeline.submit(
                            telemetry(
                                "pump-0001",
                                values,
                                ts=NOW_MS + second * 1000,
                                seq=second,
                                received_ms=NOW_MS + second * 1000,
                            )
                        )
                    return await asyncio.wait_for(events.get(), timeout=30)
        finally:
            platform.close()

    raised = run(phase(hot, 0, 15))
    assert (raised.rule, raised.status) == ("pump-motor-overheat", AlertStatus.ACTIVE)
    cleared = run(phase(cool, 20, 2))
    assert (cleared.id, cleared.status) == (raised.id, AlertStatus.CLEARED)
    again = run(phase(hot, 30, 15))
    assert (again.id, again.status, again.count) == (raised.id, AlertStatus.ACTIVE, 2)
