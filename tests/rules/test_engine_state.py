"""The engine with stream rules: restarts, fleet selectors, isolation, webhooks, storms."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import msgspec
import sqlalchemy as sa
from fastapi import FastAPI, Request

from tests.helpers import TENANT, run
from tests.rules.streams import T0, at
from tests.serving import free_port, serve
from trellis.alerts import AlertService
from trellis.bus import InProcessBus
from trellis.core.types import Device, Reading
from trellis.devices import DeviceRegistry
from trellis.rules import RuleEngine, RuleStore, StreamRule

_Step = list[Reading] | Callable[[], None]


def stream_rule(**fields: object) -> StreamRule:
    """A major temperature rule for the given fields."""
    base: dict[str, object] = {"id": "hot", "metric": "temperature", "severity": "major"}
    return msgspec.convert(base | fields, StreamRule)


def run_engine(
    metadata: sa.Engine, registry: DeviceRegistry, alerts: AlertService, steps: Sequence[_Step]
) -> RuleEngine:
    """Run an engine over ``steps``: batches, or callables run once earlier batches are judged."""

    async def scenario() -> RuleEngine:
        bus: InProcessBus[Reading] = InProcessBus(1)
        engine = RuleEngine(bus.subscribe("rules"), RuleStore(metadata), alerts, registry)
        task = asyncio.create_task(engine.run())
        published = 0
        for step in steps:
            if callable(step):
                async with asyncio.timeout(10):
                    # polling a test-only counter; the engine has no event for it
                    while engine.batches < published:  # noqa: ASYNC110
                        await asyncio.sleep(0.01)
                step()
            else:
                await bus.publish(step)
                published += 1
        bus.close()
        await task
        return engine

    return run(scenario())


def _hot(device: str, start: float, stop: float, value: float = 95.0) -> list[Reading]:
    return [at(s, value, device=device) for s in range(int(start), int(stop) + 1)]


def test_restart_neither_refires_nor_forgets(
    metadata_engine: sa.Engine, registry: DeviceRegistry
) -> None:
    """A for-duration begun before a restart completes after it; a raised alert is not re-raised."""
    RuleStore(metadata_engine).put(TENANT, stream_rule(condition="value > 80.0", for_s=10))
    alerts = AlertService(metadata_engine)
    first = run_engine(metadata_engine, registry, alerts, [_hot("pump-0001", 0, 6)])
    assert first.transitions == 0
    second = run_engine(metadata_engine, registry, alerts, [_hot("pump-0001", 7, 12)])
    assert second.transitions == 1  # raised at 10 s: the first 7 s were remembered
    [alert] = alerts.find(TENANT)
    assert alert.raised_ms == T0 + 10_000
    third = run_engine(metadata_engine, registry, alerts, [_hot("pump-0001", 13, 30)])
    assert third.transitions == 0
    [alert] = alerts.find(TENANT)
    assert alert.count == 1
    fourth = run_engine(metadata_engine, registry, alerts, [[at(31, 20.0, device="pump-0001")]])
    assert fourth.transitions == 1  # and the open alert was not forgotten: it clears
    [alert] = alerts.find(TENANT)
    assert alert.status.value == "cleared"


def test_fleet_selector_picks_up_a_newly_registered_device(
    metadata_engine: sa.Engine, registry: DeviceRegistry
) -> None:
    """A site-wide rule judges a pump registered while the engine runs, with no reload."""
    RuleStore(metadata_engine).put(
        TENANT,
        stream_rule(condition="value > 80.0", select={"models": ["pump"], "sites": ["north"]}),
    )
    alerts = AlertService(metadata_engine)

    def onboard() -> None:
        registry.register(Device(TENANT, "pump-new", "pump", site="north"))

    engine = run_engine(
        metadata_engine,
        registry,
        alerts,
        [_hot("pump-0001", 0, 1), onboard, _hot("pump-new", 2, 3)],
    )
    assert engine.transitions == 1
    assert [a.device for a in alerts.find(TENANT)] == ["pump-new"]  # pump-0001 is in no site


def test_a_failing_rule_does_not_stop_the_others(
    metadata_engine: sa.Engine, registry: DeviceRegistry
) -> None:
    """A condition that fails at run time is counted with its error; a sibling rule still fires."""
    store = RuleStore(metadata_engine)
    store.put(TENANT, stream_rule(id="broken", condition="attrs.setpoint < value"))
    store.put(TENANT, stream_rule(id="fine", condition="value > 80.0"))
    alerts = AlertService(metadata_engine)
    engine = run_engine(metadata_engine, registry, alerts, [_hot("pump-0001", 0, 2)])
    stats = {s.rule: s for s in engine.stats()}
    assert stats["broken"].errors == 3
    assert "setpoint" in stats["broken"].last_error
    assert (stats["fine"].raised, stats["fine"].errors, stats["fine"].readings) == (1, 0, 3)
    assert [a.rule for a in alerts.find(TENANT)] == ["fine"]


def test_webhook_delivered_and_a_dead_hook_dead_lettered(
    metadata_engine: sa.Engine, registry: DeviceRegistry
) -> None:
    """A working hook gets raise and clear; a down one is retried, then dead-lettered."""
    received: list[dict[str, object]] = []
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request) -> dict[str, bool]:
        received.append(await request.json())
        return {"ok": True}

    down = f"http://127.0.0.1:{free_port()}/hook"
    with serve(app) as url:
        store = RuleStore(metadata_engine)
        hooks = [{"type": "webhook", "url": f"{url}/hook"}]
        dead = [{"type": "webhook", "url": down, "attempts": 3, "backoff_s": 0.01}]
        store.put(TENANT, stream_rule(id="good", condition="value > 80.0", actions=hooks))
        store.put(TENANT, stream_rule(id="bad", condition="value > 80.0", actions=dead))
        alerts = AlertService(metadata_engine)
        readings = [at(0, 95.0, device="pump-0001"), at(1, 10.0, device="pump-0001")]
        engine = run_engine(metadata_engine, registry, alerts, [readings])
    assert [(r["rule"], r["kind"], r["device"]) for r in received] == [
        ("good", "raise", "pump-0001"),
        ("good", "clear", "pump-0001"),
    ]
    letters = engine.actions.dead_letters(TENANT)
    assert [(d.rule, d.payload["kind"], d.attempts) for d in letters] == [
        ("bad", "clear", 3),
        ("bad", "raise", 3),
    ]
    assert "ConnectError" in letters[0].error
    stats = {s.rule: s for s in engine.stats()}
    assert (stats["good"].actions_delivered, stats["bad"].actions_failed) == (2, 2)


def test_a_storm_is_rate_limited_and_reported(
    metadata_engine: sa.Engine, registry: DeviceRegistry
) -> None:
    """10,000 devices tripping in the same second write 20 alerts; the stats report the rest."""
    RuleStore(metadata_engine).put(
        TENANT, stream_rule(condition="value > 80.0", max_alerts_per_s=20)
    )
    alerts = AlertService(metadata_engine)
    storm = [at(0, 95.0, device=f"dev-{i}") for i in range(10_000)]
    engine = run_engine(metadata_engine, registry, alerts, [storm])
    [stats] = engine.stats()
    assert (stats.raised, stats.suppressed) == (20, 9_980)
    assert len(alerts.find(TENANT, limit=1000)) == 20


def test_a_heartbeat_survives_a_restart_and_fires_from_the_tick(
    metadata_engine: sa.Engine, registry: DeviceRegistry
) -> None:
    """The last reading's time is checkpointed; after a restart the tick raises at last + 60 s."""
    RuleStore(metadata_engine).put(TENANT, stream_rule(id="silent", absence_s=60))
    alerts = AlertService(metadata_engine)
    run_engine(metadata_engine, registry, alerts, [[at(5, 1.0, device="pump-0001")]])
    bus: InProcessBus[Reading] = InProcessBus(1)
    engine = RuleEngine(bus.subscribe("rules"), RuleStore(metadata_engine), alerts, registry)
    engine.reload()
    engine.restore()
    assert engine.tick(T0 + 64_999) == []
    [signal] = engine.tick(T0 + 65_000)
    assert (signal.kind, signal.device, signal.ts) == ("raise", "pump-0001", T0 + 65_000)


def test_trace_records_judgements_only_while_watched(
    metadata_engine: sa.Engine, registry: DeviceRegistry
) -> None:
    """Before anyone asks, a rule records nothing; after, each judgement with its result."""
    RuleStore(metadata_engine).put(TENANT, stream_rule(condition="value > 80.0"))
    bus: InProcessBus[Reading] = InProcessBus(1)
    alerts = AlertService(metadata_engine)
    engine = RuleEngine(bus.subscribe("rules"), RuleStore(metadata_engine), alerts, registry)
    engine.reload()
    engine.judge([at(0, 95.0, device="pump-0001")])
    assert engine.trace(TENANT, "hot") == []
    engine.judge([at(1, 70.0, device="pump-0001"), at(2, 90.0, device="pump-0002")])
    trace = engine.trace(TENANT, "hot")
    assert [(t.device, t.ts - T0, t.value, t.holds) for t in trace] == [
        ("pump-0001", 1000, 70.0, False),
        ("pump-0002", 2000, 90.0, True),
    ]
    assert engine.trace(TENANT, "nope") == []
