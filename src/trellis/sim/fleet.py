"""A simulated fleet: assets that publish telemetry as devices would.

The fleet produces :class:`~trellis.core.types.RawMessage` objects on the same
topics and in the same JSON a real device sends, so everything after the source
(ingest, storage, rules, alerts) runs exactly as it would for real hardware.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable

import msgspec

from trellis.core.clock import now_ms
from trellis.core.config import SimSettings
from trellis.core.types import Device, RawMessage
from trellis.ingest.decode import TelemetryPayload, telemetry_topic
from trellis.sim.assets import Pump, Room, SimAsset

__all__ = ["Fleet", "run_realtime"]

_encoder = msgspec.json.Encoder()


class Fleet:
    """Pumps and rooms built from :class:`SimSettings`, deterministic per seed."""

    def __init__(self, settings: SimSettings, tenant: str, start_ms: int | None = None) -> None:
        self.tenant = tenant
        self.start_ms = now_ms() if start_ms is None else start_ms
        self._run = secrets.token_hex(4)
        self.assets: list[SimAsset] = [
            Pump(f"pump-{i:04d}", seed=settings.seed * 10_007 + i)
            for i in range(1, settings.pumps + 1)
        ] + [
            Room(f"room-{i:04d}", seed=settings.seed * 20_011 + i)
            for i in range(1, settings.rooms + 1)
        ]
        self._seq = dict.fromkeys((asset.device_id for asset in self.assets), 0)
        if settings.fault_device is not None:
            self.inject_fault(
                settings.fault_device, self.start_ms + int(settings.fault_after_s * 1000)
            )

    def inject_fault(self, device_id: str, onset_ms: int) -> None:
        """Start the asset's fault at ``onset_ms``; an unknown device is an error."""
        for asset in self.assets:
            if asset.device_id == device_id:
                asset.fault_onset_ms = onset_ms
                return
        raise ValueError(f"no simulated device {device_id!r} in this fleet")

    def devices(self, site: str = "plant-1") -> list[Device]:
        """The registry entries for the fleet's assets."""
        return [
            Device(
                tenant=self.tenant,
                id=asset.device_id,
                model=asset.model,
                name=f"{asset.model.title()} {asset.device_id.rsplit('-', 1)[1].lstrip('0')}",
                site=site,
                attributes={"simulated": True},
            )
            for asset in self.assets
        ]

    def messages(self, ts_ms: int, received_ms: int | None = None) -> list[RawMessage]:
        """One telemetry message per asset for the instant ``ts_ms``."""
        received = ts_ms if received_ms is None else received_ms
        out: list[RawMessage] = []
        for asset in self.assets:
            seq = self._seq[asset.device_id] = self._seq[asset.device_id] + 1
            payload = TelemetryPayload(values=asset.step(ts_ms), ts=ts_ms, seq=seq)
            out.append(
                RawMessage(
                    id=f"sim-{self._run}-{asset.device_id}-{seq}",
                    source="sim",
                    topic=telemetry_topic(self.tenant, asset.device_id),
                    payload=_encoder.encode(payload),
                    received_ms=received,
                )
            )
        return out


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
