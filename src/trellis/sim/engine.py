"""The simulation: banks of assets, the weather, misbehaving devices, a clock.

:class:`Plan` says what to simulate (sites, asset counts, faults, seed); a
:class:`Simulation` built from it steps every bank once per tick and returns
:class:`Frame` objects, one per asset kind, holding the measured values as an array.
Everything random comes from one seed through spawned generators, so the same plan
gives the same frames, bit for bit.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator

import msgspec
import numpy as np

from trellis.sim.bank import DAY_S, Bank, Conditions, Floats, Ints, SiteLoads, daily, relax
from trellis.sim.chillers import ChillerBank
from trellis.sim.faults import FAULTS, FaultRecord
from trellis.sim.meters import MeterBank
from trellis.sim.pumps import PumpBank
from trellis.sim.zones import ZoneBank

__all__ = [
    "ASSET_KINDS",
    "DeviceFaults",
    "FaultPlan",
    "Frame",
    "Plan",
    "Simulation",
    "SitePlan",
    "Weather",
]

#: Asset kinds a plan may hold: kind -> (bank class, device id prefix).
ASSET_KINDS: dict[str, tuple[type[Bank], str]] = {
    "pump": (PumpBank, "pump"),
    "zone": (ZoneBank, "zone"),
    "chiller": (ChillerBank, "chiller"),
    "meter": (MeterBank, "meter"),
}
BURST = 3  # copies of a message in a duplicate burst (a QoS 1 client retrying)


class Weather(msgspec.Struct, frozen=True):
    """Outdoor temperature: a daily cycle plus a slow, seeded random walk."""

    mean_c: float = 12.0
    swing_c: float = 5.0
    peak_hour: float = 15.0
    wander_c: float = 1.5


class DeviceFaults(msgspec.Struct, frozen=True):
    """How badly the fleet's devices behave as senders (probabilities per message)."""

    drop_rate: float = 0.0
    duplicate_rate: float = 0.0


class SitePlan(msgspec.Struct, frozen=True):
    """One site: how many assets of each kind, and how often they report."""

    name: str
    counts: dict[str, int]
    period_s: float


class FaultPlan(msgspec.Struct, frozen=True):
    """One injected fault; ``onset_s`` is seconds after the scenario start."""

    asset: str
    kind: str
    onset_s: float
    growth_s: float = 3600.0
    offset_s: float = 120.0  # clock_skew only: how far ahead the device's clock runs


class Plan(msgspec.Struct, frozen=True):
    """Everything a simulation needs; built from a scenario file or from settings."""

    sites: list[SitePlan]
    start_ms: int
    duration_s: float
    step_s: float
    seed: int = 0
    weather: Weather = Weather()
    devices: DeviceFaults = DeviceFaults()
    faults: list[FaultPlan] = []
    thermal_tau_s: float = 1200.0
    #: Device id prefix per asset kind, for fleets that predate the scenario format.
    prefixes: dict[str, str] = {}

    @property
    def ticks(self) -> int:
        """How many steps the plan runs."""
        return max(1, math.floor(self.duration_s / self.step_s + 1e-9))


class Frame(msgspec.Struct, frozen=True):
    """The messages of one asset kind at one tick: rows of ``values`` per message.

    ``rows`` indexes the bank's assets (a duplicate burst repeats a row, a dropped
    message has none); ``ts_ms`` is each message's device timestamp (clock skew
    included) and ``seq`` its per-device sequence number.
    """

    kind: str
    model: str
    metrics: tuple[str, ...]
    ids: list[str]
    rows: Ints
    ts_ms: Ints
    seq: Ints
    values: Floats

    @property
    def readings(self) -> int:
        """Readings carried by this frame (messages × metrics)."""
        return int(self.values.size)


class Simulation:
    """Steps a :class:`Plan`; iterate it for frames, read ``truth`` for the faults."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.tick = 0
        seeds = np.random.SeedSequence(plan.seed).spawn(len(ASSET_KINDS) + 2)
        self._world_rng = np.random.default_rng(seeds[0])
        self._device_rng = np.random.default_rng(seeds[1])
        self.banks: list[Bank] = []
        self.site_names = [site.name for site in plan.sites]
        every: list[Ints] = []
        for (kind, (cls, default_prefix)), seed in zip(ASSET_KINDS.items(), seeds[2:], strict=True):
            prefix = plan.prefixes.get(kind, default_prefix)
            ids: list[str] = []
            sites: list[int] = []
            periods: list[int] = []
            for position, site in enumerate(plan.sites):
                for _ in range(site.counts.get(kind, 0)):
                    ids.append(f"{prefix}-{len(ids) + 1:04d}")
                    sites.append(position)
                    periods.append(max(1, round(site.period_s / plan.step_s)))
            if not ids:
                continue
            rng = np.random.default_rng(seed)
            site_array = np.asarray(sites, dtype=np.int64)
            bank = (
                cls(ids, site_array, rng, thermal_tau_s=plan.thermal_tau_s)
                if cls is PumpBank
                else cls(ids, site_array, rng)
            )
            self.banks.append(bank)
            every.append(np.asarray(periods, dtype=np.int64))
        self._every = every
        self._where = {asset: bank for bank in self.banks for asset in bank.ids}
        n_sites = len(plan.sites)
        self._anomaly = np.zeros(n_sites)
        self._skew_ms = [np.zeros(bank.n, dtype=np.int64) for bank in self.banks]
        self._frozen: list[Floats | None] = [None] * len(self.banks)
        self._count = [np.zeros(bank.n, dtype=np.int64) for bank in self.banks]
        self._last_t: float | None = None
        self.truth: list[FaultRecord] = []
        for fault in plan.faults:
            self._inject(fault)

    def device_ids(self) -> list[tuple[str, str, str]]:
        """(device id, device model, site) of every simulated device."""
        return [
            (asset, bank.model, self.site_names[int(site)])
            for bank in self.banks
            for asset, site in zip(bank.ids, bank.sites, strict=True)
        ]

    def has(self, asset: str) -> bool:
        """Whether ``asset`` is a device of this simulation."""
        return asset in self._where

    def _inject(self, fault: FaultPlan) -> None:
        kind = FAULTS[fault.kind]
        bank = self._where.get(fault.asset)
        if bank is None:
            raise ValueError(f"no simulated asset {fault.asset!r}")
        if kind.asset not in ("device", bank.kind):
            raise ValueError(
                f"{fault.kind} is a {kind.asset} fault; {fault.asset} is a {bank.kind}"
            )
        bank.inject(bank.index(fault.asset), kind, fault.onset_s, fault.growth_s)
        if fault.kind == "clock_skew":
            position = self.banks.index(bank)
            self._skew_ms[position][bank.index(fault.asset)] = round(fault.offset_s * 1000)
        onset_ms = self.plan.start_ms + round(fault.onset_s * 1000)
        self.truth.append(FaultRecord.of(fault.asset, kind, onset_ms, fault.growth_s))

    def inject(self, fault: FaultPlan) -> None:
        """Inject a fault after construction (the ground truth records it too)."""
        self._inject(fault)

    def _conditions(self, t_s: float, dt_s: float) -> Conditions:
        plan = self.plan
        ts = plan.start_ms / 1000 + t_s
        hour = (ts % DAY_S) / 3600
        weekday = dt.datetime.fromtimestamp(ts, dt.UTC).weekday() < 5
        weather = plan.weather
        self._anomaly = relax(self._anomaly, np.zeros_like(self._anomaly), dt_s, 6 * 3600.0)
        self._anomaly += (
            weather.wander_c
            * math.sqrt(2 * dt_s / (6 * 3600.0))
            * self._world_rng.standard_normal(self._anomaly.size)
        )
        outdoor = weather.mean_c + weather.swing_c * daily(hour, weather.peak_hour) + self._anomaly
        solar = max(0.0, math.sin(math.pi * (hour - 6) / 12)) if 6 <= hour <= 18 else 0.0
        return Conditions(
            t_s=t_s,
            dt_s=dt_s,
            hour=hour,
            occupied=weekday and 8 <= hour < 18,
            outdoor_c=outdoor,
            solar=np.full(self._anomaly.size, solar),
        )

    def step(self) -> list[Frame]:
        """Advance one tick of the plan; the frames of the devices that report at it."""
        tick = self.tick
        self.tick += 1
        return self._advance(tick * self.plan.step_s, self.plan.step_s, tick)

    def step_to(self, ts_ms: int) -> list[Frame]:
        """Advance to the instant ``ts_ms`` whatever the plan's step (a wall-clock
        driven fleet); every device reports."""
        t_s = (ts_ms - self.plan.start_ms) / 1000
        dt_s = self.plan.step_s if self._last_t is None else max(t_s - self._last_t, 1e-3)
        return self._advance(t_s, dt_s, None)

    def _advance(self, t_s: float, dt_s: float, tick: int | None) -> list[Frame]:
        plan = self.plan
        self._last_t = t_s
        now = self._conditions(t_s, dt_s)
        n_sites = len(plan.sites)
        loads = SiteLoads(cooling_kw=np.zeros(n_sites), electric_kw=np.zeros(n_sites))
        ts_ms = plan.start_ms + round(t_s * 1000)
        rng = self._device_rng
        frames: list[Frame] = []
        for position, bank in enumerate(self.banks):
            values = bank.step(now, loads)
            stuck = bank.fault("stuck_sensor", t_s) > 0
            if stuck.any():
                frozen = self._frozen[position]
                if frozen is None:
                    frozen = self._frozen[position] = values.copy()
                fresh = ~stuck
                frozen[fresh] = values[fresh]
                values = np.where(stuck[:, None], frozen, values)
            every = self._every[position]
            if tick is None:
                self._count[position] += 1
                due = np.ones(bank.n, dtype=bool)
                seq = self._count[position].copy()
            else:
                due = tick % every == 0
                seq = tick // every + 1
            sent = due & (rng.random(bank.n) >= plan.devices.drop_rate)
            copies = np.where(rng.random(bank.n) < plan.devices.duplicate_rate, BURST, 1)
            rows = np.repeat(np.flatnonzero(sent), copies[sent])
            if rows.size == 0:
                continue
            frames.append(
                Frame(
                    kind=bank.kind,
                    model=bank.model,
                    metrics=bank.metrics,
                    ids=bank.ids,
                    rows=rows,
                    ts_ms=ts_ms + self._skew_ms[position][rows],
                    seq=seq[rows],
                    values=values[rows],
                )
            )
        return frames

    def __iter__(self) -> Iterator[tuple[int, list[Frame]]]:
        """(tick instant in epoch ms, frames) for every remaining tick of the plan."""
        while self.tick < self.plan.ticks:
            ts_ms = self.plan.start_ms + round(self.tick * self.plan.step_s * 1000)
            yield ts_ms, self.step()


def utc_ms(text: str) -> int:
    """Epoch milliseconds of an RFC 3339 instant (ValueError if it has no offset)."""
    instant = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if instant.tzinfo is None:
        raise ValueError(f"{text!r} needs a UTC offset, e.g. 2025-01-06T00:00:00Z")
    return round(instant.timestamp() * 1000)
