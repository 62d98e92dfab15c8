"""A simulated fleet that publishes telemetry as devices would, on the wall clock.

The fleet produces :class:`~trellis.core.types.RawMessage` objects on the same
topics and in the same JSON a real device sends, so everything after the source
(ingest, storage, rules, alerts) runs exactly as it would for real hardware. It is
the :class:`~trellis.sim.engine.Simulation` configured from :class:`SimSettings`:
pumps and rooms (HVAC zones) reporting the metrics of the built-in device models.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable

import msgspec

from trellis.core.clock import now_ms
from trellis.core.config import SimSettings
from trellis.core.types import Device, RawMessage
from trellis.sim.engine import FaultPlan, Plan, Simulation, SitePlan
from trellis.sim.outputs import MessageEncoder
from trellis.sim.scenario import load_scenario

__all__ = ["Fleet", "run_realtime"]

#: What the demo fleet reports per asset kind: the metrics its device models know.
DEMO_METRICS = {"pump": ("temperature", "vibration", "pressure")}
#: Faults of the demo grow in seconds, not days, so a demo shows them.
DEMO_FAULTS = {"pump": ("bearing_wear", 5.0), "zone": ("schedule_override", 1.0)}


class Fleet:
    """Pumps and rooms built from :class:`SimSettings`, deterministic per seed; or,
    when ``settings.scenario`` names a file, that scenario's fleet starting now."""

    def __init__(self, settings: SimSettings, tenant: str, start_ms: int | None = None) -> None:
        self.tenant = tenant
        self.start_ms = now_ms() if start_ms is None else start_ms
        self.from_scenario = settings.scenario is not None
        if settings.scenario is not None:
            plan = load_scenario(settings.scenario)
            plan = msgspec.structs.replace(plan, start_ms=self.start_ms, prefixes={})
            self.simulation = Simulation(plan)
            self.encoder = MessageEncoder(tenant, f"sim-{secrets.token_hex(4)}")
            return
        plan = Plan(
            sites=[
                SitePlan(
                    name="plant-1",
                    counts={"pump": settings.pumps, "zone": settings.rooms},
                    period_s=1 / settings.rate_hz,
                )
            ],
            start_ms=self.start_ms,
            duration_s=1.0,
            step_s=1 / settings.rate_hz,
            seed=settings.seed,
            thermal_tau_s=30.0,  # compressed so a demo shows the motor heat up
            prefixes={"zone": "room"},
        )
        self.simulation = Simulation(plan)
        self.encoder = MessageEncoder(tenant, f"sim-{secrets.token_hex(4)}", DEMO_METRICS)
        if settings.fault_device is not None:
            self.inject_fault(
                settings.fault_device, self.start_ms + int(settings.fault_after_s * 1000)
            )

    def inject_fault(self, device_id: str, onset_ms: int) -> None:
        """Start the asset's fault at ``onset_ms``; an unknown device is an error."""
        if not self.simulation.has(device_id):
            raise ValueError(f"no simulated device {device_id!r} in this fleet")
        kind = "pump" if device_id.startswith("pump-") else "zone"
        fault, growth_s = DEMO_FAULTS[kind]  # a scenario names its own faults in its file
        onset_s = (onset_ms - self.start_ms) / 1000
        self.simulation.inject(FaultPlan(device_id, fault, onset_s, growth_s))

    def devices(self, site: str = "plant-1") -> list[Device]:
        """The registry entries for the fleet's assets."""
        return [
            Device(
                tenant=self.tenant,
                id=device_id,
                model=model,
                name=f"{model.title()} {device_id.rsplit('-', 1)[1].lstrip('0')}",
                site=own_site if self.from_scenario else site,
                attributes={"simulated": True},
            )
            for device_id, model, own_site in self.simulation.device_ids()
        ]

    def messages(self, ts_ms: int, received_ms: int | None = None) -> list[RawMessage]:
        """One telemetry message per asset for the instant ``ts_ms``."""
        received = ts_ms if received_ms is None else received_ms
        return self.encoder.messages(self.simulation.step_to(ts_ms), received)


async def run_realtime(
    fleet: Fleet,
    publish: Callable[[RawMessage], Awaitable[object]],
    rate_hz: float,
    ticks: int | None = None,
) -> None:
    """Publish the fleet's telemetry at ``rate_hz`` on the wall clock until cancelled
    (or for ``ticks`` ticks). A slow consumer delays ticks; it never piles them up."""
    period = 1.0 / rate_hz
    loop = asyncio.get_running_loop()
    next_tick = loop.time()
    done = 0
    while ticks is None or done < ticks:
        for message in fleet.messages(now_ms()):
            await publish(message)
        done += 1
        next_tick = max(next_tick + period, loop.time())
        await asyncio.sleep(next_tick - loop.time())
