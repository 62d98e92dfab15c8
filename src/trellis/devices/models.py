"""Device models: what a kind of device measures, in which unit, within which range.

A first cut of the device models of DESIGN.md (W3C WoT Thing Models arrive with the
data-fabric issue). The ingest pipeline validates every reading against the model of
its device, so a metric the model does not know, or a value outside the physically
possible range, is quarantined instead of stored.
"""

from __future__ import annotations

import msgspec

__all__ = ["BUILTIN_MODELS", "DeviceModel", "MetricSpec"]


class MetricSpec(msgspec.Struct, frozen=True):
    """One property of a device model; the range is what is physically possible."""

    unit: str
    minimum: float
    maximum: float
    description: str = ""


class DeviceModel(msgspec.Struct, frozen=True):
    """A named, versioned description of a kind of device."""

    name: str
    version: str
    description: str
    metrics: dict[str, MetricSpec]


BUILTIN_MODELS: dict[str, DeviceModel] = {
    model.name: model
    for model in (
        DeviceModel(
            name="pump",
            version="1.0.0",
            description="Centrifugal pump with motor temperature, bearing vibration, pressure",
            metrics={
                "vibration": MetricSpec("mm/s", 0.0, 100.0, "bearing vibration velocity, RMS"),
                "temperature": MetricSpec("Cel", -40.0, 250.0, "motor winding temperature"),
                "pressure": MetricSpec("bar", 0.0, 100.0, "discharge pressure"),
                # Reported by the simulator's physics model (trellis.sim.pumps).
                "flow": MetricSpec("m3/h", 0.0, 10_000.0, "delivered flow"),
                "power": MetricSpec("kW", 0.0, 10_000.0, "electrical power"),
                "vib_1x": MetricSpec("mm/s", 0.0, 100.0, "vibration at running speed, RMS"),
                "vib_bearing": MetricSpec("mm/s", 0.0, 100.0, "bearing defect band, RMS"),
                "vib_hf": MetricSpec("mm/s", 0.0, 100.0, "high-frequency band, RMS"),
            },
        ),
        DeviceModel(
            name="room",
            version="1.0.0",
            description="Occupied room with air temperature, CO2 and an occupancy count",
            metrics={
                "temperature": MetricSpec("Cel", -40.0, 80.0, "air temperature"),
                "co2": MetricSpec("ppm", 0.0, 40_000.0, "CO2 concentration"),
                "occupancy": MetricSpec("count", 0.0, 10_000.0, "people present"),
            },
        ),
        DeviceModel(
            name="chiller",
            version="1.0.0",
            description="Chiller with cooling load, electrical power, COP, supply temperature",
            metrics={
                "load": MetricSpec("kW", 0.0, 100_000.0, "cooling delivered"),
                "power": MetricSpec("kW", 0.0, 100_000.0, "electrical power"),
                "cop": MetricSpec("1", 0.0, 20.0, "coefficient of performance"),
                "chw_temp": MetricSpec("Cel", -10.0, 40.0, "chilled-water supply temperature"),
            },
        ),
        DeviceModel(
            name="meter",
            version="1.0.0",
            description="Site electricity meter: active power and the energy register",
            metrics={
                "power": MetricSpec("kW", 0.0, 1e7, "active power"),
                "energy": MetricSpec("kWh", 0.0, 1e12, "energy register"),
            },
        ),
    )
}
