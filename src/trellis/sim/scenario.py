"""Scenarios as TOML files: sites, fleets, rates, weather, devices, faults.

A scenario says what to simulate and is deterministic from its seed::

    name = "bearing faults on a pump fleet"
    seed = 7
    start = "2025-01-06T00:00:00Z"
    duration_h = 72
    step_s = 60                 # simulated seconds per step (defaults to the fastest rate)

    [weather]                   # optional
    mean_c = 12
    swing_c = 5

    [devices]                   # optional: how badly devices behave as senders
    drop_rate = 0.01
    duplicate_rate = 0.001

    [[site]]
    name = "plant-1"
    pumps = 20                  # also zones, chillers, meters
    rate_hz = 0.0166667         # how often its devices report

    [[fault]]
    asset = "pump-0003"         # devices are numbered across sites: pump-0001, …
    kind = "bearing_wear"       # see trellis.sim.faults.FAULTS
    onset_h = 12
    growth_h = 6

Every error names the file and line of the offending entry.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from trellis.sim.engine import (
    ASSET_KINDS,
    DeviceFaults,
    FaultPlan,
    Plan,
    SitePlan,
    Weather,
    utc_ms,
)
from trellis.sim.faults import FAULTS

__all__ = ["ScenarioError", "line_of", "load_scenario", "parse_scenario"]

#: Scenario keys of a site that count assets, by asset kind.
COUNT_KEYS = {f"{kind}s": kind for kind in ASSET_KINDS}


class ScenarioError(ValueError):
    """A scenario that cannot run; the message starts with ``file:line:``."""

    def __init__(self, source: str, line: int, message: str) -> None:
        super().__init__(f"{source}:{line}: {message}")
        self.source = source
        self.line = line


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Site(_Strict):
    name: str = Field(min_length=1)
    rate_hz: float = Field(default=1 / 60, gt=0, le=1000)
    pumps: int = Field(default=0, ge=0)
    zones: int = Field(default=0, ge=0)
    chillers: int = Field(default=0, ge=0)
    meters: int = Field(default=0, ge=0)


class _Fault(_Strict):
    asset: str
    kind: str
    onset_h: float = Field(ge=0)
    growth_h: float = Field(default=24.0, gt=0)
    offset_s: float = 120.0


class _Weather(_Strict):
    mean_c: float = 12.0
    swing_c: float = Field(default=5.0, ge=0)
    peak_hour: float = Field(default=15.0, ge=0, lt=24)
    wander_c: float = Field(default=1.5, ge=0)


class _Devices(_Strict):
    drop_rate: float = Field(default=0.0, ge=0, le=1)
    duplicate_rate: float = Field(default=0.0, ge=0, le=1)


class _Scenario(_Strict):
    name: str = "scenario"
    seed: int = 0
    start: str = "2025-01-06T00:00:00Z"
    duration_h: float = Field(gt=0, le=24 * 366)
    step_s: float | None = Field(default=None, gt=0)
    weather: _Weather = _Weather()
    devices: _Devices = _Devices()
    site: list[_Site] = Field(min_length=1)
    fault: list[_Fault] = []


def line_of(text: str, loc: tuple[int | str, ...]) -> int:
    """Best line for an error at ``loc`` (e.g. ``("fault", 2, "asset")``) in TOML text.

    tomllib keeps no positions, so this finds the table (``[name]`` or the n-th
    ``[[name]]``) and then the key within it; the table's header when the key is absent.
    """
    lines = text.splitlines()
    table: str | None = None
    index: int | None = None
    key: str | None = None
    parts = list(loc)
    if parts and isinstance(parts[0], str) and len(parts) > 1:
        table = str(parts.pop(0))
        if parts and isinstance(parts[0], int):
            index = int(parts.pop(0))
    if parts and isinstance(parts[0], str):
        key = parts[0]
    key_re = re.compile(rf"^\s*{re.escape(key)}\s*=") if key else None
    header_re = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?")
    current: str | None = None
    seen: dict[str, int] = {}
    header_line = 1
    found_table = table is None
    for number, raw in enumerate(lines, start=1):
        header = header_re.match(raw)
        if header:
            current = header.group(1)
            seen[current] = seen.get(current, -1) + 1
            if found_table and table is not None:
                break  # past the table we wanted without finding the key
            if current == table and (index is None or seen[current] == index):
                found_table, header_line = True, number
            continue
        in_place = current == table if table else current is None
        if found_table and in_place and key_re is not None and key_re.match(raw):
            return number
        if table is None and current is not None:
            break
    return header_line if table else 1


def parse_scenario(text: str, source: str = "<scenario>", seed: int | None = None) -> Plan:
    """The :class:`Plan` of a scenario's TOML text; ``seed`` overrides the file's."""
    try:
        raw: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise ScenarioError(source, int(match.group(1)) if match else 1, str(exc)) from None
    sites, faults_raw = raw.get("site"), raw.get("fault")
    for position, site in enumerate(sites if isinstance(sites, list) else []):
        for key in site if isinstance(site, dict) else ():
            if key not in _Site.model_fields:
                raise ScenarioError(
                    source,
                    line_of(text, ("site", position, key)),
                    f"unknown asset type {key!r} in site (known: {', '.join(COUNT_KEYS)}; "
                    "other keys: name, rate_hz)",
                )
    for position, fault in enumerate(faults_raw if isinstance(faults_raw, list) else []):
        kind = fault.get("kind") if isinstance(fault, dict) else None
        if isinstance(kind, str) and kind not in FAULTS:
            raise ScenarioError(
                source,
                line_of(text, ("fault", position, "kind")),
                f"unknown fault kind {kind!r} (known: {', '.join(FAULTS)})",
            )
    try:
        scenario = _Scenario.model_validate(raw)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise ScenarioError(
            source, line_of(text, tuple(error["loc"])), f"{where}: {error['msg']}"
        ) from None
    try:
        start_ms = utc_ms(scenario.start)
    except ValueError as exc:
        raise ScenarioError(source, line_of(text, ("start",)), str(exc)) from None
    periods = [1 / site.rate_hz for site in scenario.site]
    step_s = scenario.step_s or min(periods)
    for position, period in enumerate(periods):
        multiple = period / step_s
        if multiple < 1 - 1e-9 or not math.isclose(multiple, round(multiple), rel_tol=1e-6):
            raise ScenarioError(
                source,
                line_of(text, ("site", position, "rate_hz")),
                f"site {scenario.site[position].name!r} reports every {period:g} s, "
                f"not a whole number of steps of {step_s:g} s",
            )
    totals = dict.fromkeys(ASSET_KINDS, 0)
    for site in scenario.site:
        for key, kind in COUNT_KEYS.items():
            totals[kind] += getattr(site, key)
    assets = {
        f"{prefix}-{i:04d}": kind
        for kind, (_, prefix) in ASSET_KINDS.items()
        for i in range(1, totals[kind] + 1)
    }
    faults: list[FaultPlan] = []
    for position, fault in enumerate(scenario.fault):
        kind = assets.get(fault.asset)
        if kind is None:
            raise ScenarioError(
                source,
                line_of(text, ("fault", position, "asset")),
                f"fault on {fault.asset!r}, which is not in the fleet "
                f"({', '.join(f'{n} {k}s' for k, n in totals.items() if n)})",
            )
        wanted = FAULTS[fault.kind].asset
        if wanted not in ("device", kind):
            raise ScenarioError(
                source,
                line_of(text, ("fault", position, "kind")),
                f"{fault.kind} is a {wanted} fault; {fault.asset} is a {kind}",
            )
        faults.append(
            FaultPlan(
                asset=fault.asset,
                kind=fault.kind,
                onset_s=fault.onset_h * 3600,
                growth_s=fault.growth_h * 3600,
                offset_s=fault.offset_s,
            )
        )
    return Plan(
        sites=[
            SitePlan(
                name=site.name,
                counts={kind: getattr(site, key) for key, kind in COUNT_KEYS.items()},
                period_s=period,
            )
            for site, period in zip(scenario.site, periods, strict=True)
        ],
        start_ms=start_ms,
        duration_s=scenario.duration_h * 3600,
        step_s=step_s,
        seed=scenario.seed if seed is None else seed,
        weather=Weather(**scenario.weather.model_dump()),
        devices=DeviceFaults(**scenario.devices.model_dump()),
        faults=faults,
    )


def load_scenario(path: Path, seed: int | None = None) -> Plan:
    """The :class:`Plan` of the scenario file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(str(path), 0, f"cannot read: {exc.strerror}") from None
    return parse_scenario(text, str(path), seed)
