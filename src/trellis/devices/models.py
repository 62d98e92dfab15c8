"""Device models: what a kind of device measures, in which unit, within which range.

The one device model form of Trellis (W3C WoT Thing Models, DTDL v3 interfaces and the
plain YAML form are imported into it by :mod:`trellis.contracts.importers`). A model is
versioned; many devices share one. Vendor payload mappings belong to the model, so
application logic only ever sees the model's metric names and units.

The ingest pipeline validates every reading against the data contract compiled from
its device's model (:mod:`trellis.contracts.compiled`): a metric the model does not
know, or a value outside its range, is quarantined instead of stored.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "BUILTIN_MODELS",
    "ActionSpec",
    "ContractRule",
    "DeviceModel",
    "EventSpec",
    "FieldMap",
    "MetricSpec",
    "VendorMapping",
]


class MetricSpec(msgspec.Struct, frozen=True):
    """One property of a device model; the range is what is physically possible
    (``None``: unbounded on that side).

    ``expected_rate_hz`` is how often a healthy device reports it (freshness checks).
    ``brick_class`` types the property's point in the semantic model (e.g.
    ``Supply_Air_Temperature_Sensor``), so rules written against the class cover it.
    """

    unit: str
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""
    type: str = "number"
    expected_rate_hz: float | None = None
    brick_class: str | None = None


class EventSpec(msgspec.Struct, frozen=True):
    """Something a device emits on its own (a fault, a door opening)."""

    description: str = ""
    data: dict[str, str] = {}


class ActionSpec(msgspec.Struct, frozen=True):
    """A command a device accepts, with its input and output fields by type."""

    description: str = ""
    input: dict[str, str] = {}
    output: dict[str, str] = {}


class FieldMap(msgspec.Struct, frozen=True):
    """Where a vendor payload carries one metric: ``path`` (dotted), scale, offset, unit.

    The value becomes ``raw * scale + offset`` in ``unit`` (the metric's unit when
    ``None``), and is then normalised to the contract's unit.
    """

    path: str
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None


class VendorMapping(msgspec.Struct, frozen=True):
    """How one vendor's JSON payload maps onto the model's metrics."""

    fields: dict[str, FieldMap]
    ts: str | None = None
    seq: str | None = None
    description: str = ""


class ContractRule(msgspec.Struct, frozen=True):
    """The data contract's tightening of one metric: unit to normalise to, stricter range."""

    unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    max_age_s: float | None = None


class DeviceModel(msgspec.Struct, frozen=True):
    """A named, versioned description of a kind of device.

    ``contract`` refines the model for storage (normalised unit, stricter ranges);
    a rule that contradicts the model is refused when the model is loaded.
    ``brick_class`` is the equipment class of such a device (e.g. ``AHU``) in the
    semantic model.
    """

    name: str
    version: str
    description: str
    metrics: dict[str, MetricSpec]
    events: dict[str, EventSpec] = {}
    actions: dict[str, ActionSpec] = {}
    mappings: dict[str, VendorMapping] = {}
    contract: dict[str, ContractRule] = {}
    source: str = "builtin"
    brick_class: str | None = None

    @property
    def key(self) -> str:
        """``name@version``: the model version a reading's lineage names."""
        return f"{self.name}@{self.version}"


BUILTIN_MODELS: dict[str, DeviceModel] = {
    model.name: model
    for model in (
        DeviceModel(
            name="pump",
            version="1.0.0",
            description="Centrifugal pump with motor temperature, bearing vibration, pressure",
            metrics={
                "vibration": MetricSpec(
                    "mm/s", 0.0, 100.0, "bearing vibration velocity, RMS", expected_rate_hz=1.0
                ),
                "temperature": MetricSpec(
                    "Cel", -40.0, 250.0, "motor winding temperature", expected_rate_hz=1.0
                ),
                "pressure": MetricSpec(
                    "bar", 0.0, 100.0, "discharge pressure", expected_rate_hz=1.0
                ),
                # Reported by the simulator's physics model (trellis.sim.pumps).
                "flow": MetricSpec("m3/h", 0.0, 10_000.0, "delivered flow"),
                "power": MetricSpec("kW", 0.0, 10_000.0, "electrical power"),
                "vib_1x": MetricSpec("mm/s", 0.0, 100.0, "vibration at running speed, RMS"),
                "vib_bearing": MetricSpec("mm/s", 0.0, 100.0, "bearing defect band, RMS"),
                "vib_hf": MetricSpec("mm/s", 0.0, 100.0, "high-frequency band, RMS"),
            },
            actions={"stop": ActionSpec("stop the motor"), "start": ActionSpec("start the motor")},
            events={"overheat": EventSpec("winding temperature above the trip point")},
        ),
        DeviceModel(
            name="room",
            version="1.0.0",
            description="Occupied room with air temperature, CO2 and an occupancy count",
            metrics={
                "temperature": MetricSpec(
                    "Cel", -40.0, 80.0, "air temperature", expected_rate_hz=1.0
                ),
                "co2": MetricSpec("ppm", 0.0, 40_000.0, "CO2 concentration", expected_rate_hz=1.0),
                "occupancy": MetricSpec(
                    "count", 0.0, 10_000.0, "people present", expected_rate_hz=1.0
                ),
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
