"""Units: one vocabulary for every model format, conversions computed once by pint.

Trellis writes units as SenML / UCUM codes (``Cel``, ``mm/s``, ``ppm``). Model files
use whatever their standard uses: WoT Thing Models often name units from the OM 2
ontology (``om:degreeCelsius``) or QUDT (``unit:DEG_C``), DTDL v3 uses its own names
(``degreeCelsius``). :func:`canonical_unit` maps all of them to the code, and refuses
a unit it cannot name rather than storing numbers of unknown meaning.

Every conversion used on the hot path is linear (``y = x * scale + offset``, the affine
temperature scales included), so :func:`conversion` asks pint once per unit pair and
the validator applies two floats per value.
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["UnknownUnitError", "canonical_unit", "conversion", "same_dimension"]


class UnknownUnitError(ValueError):
    """A unit no known vocabulary (SenML/UCUM, OM 2, QUDT, DTDL, pint) defines."""

    def __init__(self, unit: str) -> None:
        super().__init__(
            f"unknown unit {unit!r}; use a SenML/UCUM code such as 'Cel', 'mm/s', 'bar', "
            "'ppm', an OM 2 ('om:degreeCelsius'), QUDT ('unit:DEG_C') or DTDL unit name"
        )
        self.unit = unit


#: Trellis unit code → the pint expression for it.
_PINT: dict[str, str] = {
    "Cel": "degC",
    "degF": "degF",
    "K": "kelvin",
    "mm/s": "mm/s",
    "m/s": "m/s",
    "m/s2": "m/s**2",
    "bar": "bar",
    "Pa": "Pa",
    "hPa": "hPa",
    "kPa": "kPa",
    "psi": "psi",
    "ppm": "ppm",
    "%": "percent",
    "%RH": "percent",
    "count": "count",
    "1": "dimensionless",
    "W": "W",
    "kW": "kW",
    "Wh": "Wh",
    "kWh": "kWh",
    "V": "V",
    "A": "A",
    "Hz": "Hz",
    "rpm": "rpm",
    "lx": "lux",
    "m3/h": "m**3/h",
    "l/min": "l/min",
    "m": "m",
    "mm": "mm",
    "s": "s",
    "ms": "ms",
}

#: Names other vocabularies use, mapped to the Trellis code.
_ALIASES: dict[str, str] = {
    # OM 2 (http://www.ontology-of-units-of-measure.org/resource/om-2/), used by WoT TDs
    "om:degreeCelsius": "Cel",
    "om:degreeFahrenheit": "degF",
    "om:kelvin": "K",
    "om:millimetrePerSecond-Time": "mm/s",
    "om:millimetrePerSecond": "mm/s",
    "om:metrePerSecond-Time": "m/s",
    "om:bar": "bar",
    "om:pascal": "Pa",
    "om:hectopascal": "hPa",
    "om:kilopascal": "kPa",
    "om:partsPerMillion": "ppm",
    "om:percent": "%",
    "om:one": "1",
    "om:watt": "W",
    "om:kilowatt": "kW",
    "om:kilowattHour": "kWh",
    "om:volt": "V",
    "om:ampere": "A",
    "om:hertz": "Hz",
    "om:lux": "lx",
    # QUDT (http://qudt.org/vocab/unit/), used by Brick and some TDs
    "unit:DEG_C": "Cel",
    "unit:DEG_F": "degF",
    "unit:K": "K",
    "unit:MilliM-PER-SEC": "mm/s",
    "unit:BAR": "bar",
    "unit:PA": "Pa",
    "unit:KiloPA": "kPa",
    "unit:PPM": "ppm",
    "unit:PERCENT": "%",
    "unit:PERCENT_RH": "%RH",
    "unit:W": "W",
    "unit:KiloW": "kW",
    "unit:KiloW-HR": "kWh",
    "unit:V": "V",
    "unit:A": "A",
    "unit:HZ": "Hz",
    "unit:LUX": "lx",
    "unit:NUM": "count",
    # DTDL v3 semantic units (dtmi:dtdl:extension:quantitativeTypes;1)
    "degreeCelsius": "Cel",
    "degreeFahrenheit": "degF",
    "kelvin": "K",
    "millimetrePerSecond": "mm/s",
    "metrePerSecond": "m/s",
    "bar": "bar",
    "pascal": "Pa",
    "kilopascal": "kPa",
    "poundPerSquareInch": "psi",
    "partsPerMillion": "ppm",
    "percent": "%",
    "watt": "W",
    "kilowatt": "kW",
    "kilowattHour": "kWh",
    "volt": "V",
    "ampere": "A",
    "hertz": "Hz",
    "revolutionPerMinute": "rpm",
    "lux": "lx",
    "unity": "1",
    # Common plain spellings
    "celsius": "Cel",
    "°C": "Cel",
    "degC": "Cel",
    "°F": "degF",
    "fahrenheit": "degF",
    "[degF]": "degF",
    "%rh": "%RH",
}


@functools.cache
def _registry() -> Any:
    import pint  # imported on first use: ~0.3 s, and only model loading needs it

    return pint.UnitRegistry(autoconvert_offset_to_baseunit=True)


def canonical_unit(unit: str) -> str:
    """The Trellis code for ``unit`` from any known vocabulary, or :class:`UnknownUnitError`."""
    if unit in _PINT:
        return unit
    code = _ALIASES.get(unit)
    if code is not None:
        return code
    raise UnknownUnitError(unit)


@functools.cache
def conversion(source: str, target: str) -> tuple[float, float]:
    """``(scale, offset)`` such that ``value_in_target = value_in_source * scale + offset``.

    Raises :class:`ValueError` when the units measure different things.
    """
    source, target = canonical_unit(source), canonical_unit(target)
    if source == target:
        return 1.0, 0.0
    import pint

    registry = _registry()
    try:
        zero = registry.Quantity(0.0, _PINT[source]).to(_PINT[target]).magnitude
        one = registry.Quantity(1.0, _PINT[source]).to(_PINT[target]).magnitude
    except pint.DimensionalityError:
        raise ValueError(f"unit {source!r} cannot be converted to {target!r}") from None
    return float(one - zero), float(zero)


def same_dimension(a: str, b: str) -> bool:
    """Whether values in ``a`` can be expressed in ``b``."""
    try:
        conversion(a, b)
    except ValueError:
        return False
    return True
