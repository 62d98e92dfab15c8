"""A model's typed signature: the features it reads (with units and the device model
they come from) and the outputs it produces, and the checks that use it."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import msgspec

from trellis.ml.errors import SignatureError

__all__ = ["Feature", "Output", "Signature", "compatibility_problems", "feature_row", "semver"]

_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


class Feature(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One input column: a metric of the device model, in a unit."""

    name: str
    unit: str | None = None


class Output(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One output of the model; ``score`` is the one drift and comparisons watch."""

    name: str
    kind: str = "score"


class Signature(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a model reads and returns."""

    device_model: str
    features: list[Feature]
    outputs: list[Output]

    def __post_init__(self) -> None:
        names = [feature.name for feature in self.features]
        if not names:
            raise ValueError("a signature needs at least one feature")
        if len(set(names)) != len(names):
            raise ValueError(f"feature names repeat: {names}")
        if not self.outputs:
            raise ValueError("a signature needs at least one output")

    @property
    def names(self) -> list[str]:
        """Feature names in column order."""
        return [feature.name for feature in self.features]

    @property
    def score_output(self) -> str | None:
        """The output that carries the score, when one is declared."""
        return next((o.name for o in self.outputs if o.kind == "score"), None)


def semver(version: str) -> tuple[int, int, int]:
    """``MAJOR.MINOR.PATCH`` as a tuple; anything else is refused."""
    match = _SEMVER.match(version)
    if match is None:
        raise ValueError(f"version {version!r} is not semantic (MAJOR.MINOR.PATCH, e.g. 1.0.0)")
    return int(match[1]), int(match[2]), int(match[3])


def feature_row(signature: Signature, values: Mapping[str, object], where: str) -> list[float]:
    """One row of ``values`` in the signature's column order, refusing missing or extra
    names, non-numbers, NaN and infinities with the offending name."""
    names = signature.names
    missing = [name for name in names if name not in values]
    extra = sorted(set(values) - set(names))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if extra:
            parts.append(f"unexpected {extra}")
        raise SignatureError(
            f"{where}: features do not match the signature {names}: " + ", ".join(parts)
        )
    row: list[float] = []
    for name in names:
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SignatureError(f"{where}: feature {name!r} is not a number: {value!r}")
        number = float(value)
        if not math.isfinite(number):
            raise SignatureError(f"{where}: feature {name!r} is {number} (NaN/inf refused)")
        row.append(number)
    return row


def compatibility_problems(champion: Signature, candidate: Signature) -> list[str]:
    """Why ``candidate`` cannot replace ``champion`` for the same callers (empty: it can)."""
    problems: list[str] = []
    if candidate.device_model != champion.device_model:
        problems.append(
            f"device model {candidate.device_model!r} differs from {champion.device_model!r}"
        )
    if candidate.features != champion.features:
        problems.append(
            f"features {_show(candidate.features)} differ from {_show(champion.features)}"
        )
    missing = {o.name for o in champion.outputs} - {o.name for o in candidate.outputs}
    if missing:
        problems.append(f"outputs {sorted(missing)} of the champion are missing")
    return problems


def _show(features: Sequence[Feature]) -> str:
    return "[" + ", ".join(f"{f.name} ({f.unit or '-'})" for f in features) + "]"
