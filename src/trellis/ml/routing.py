"""Routing between the champion and a challenger: pure functions of the policy.

* ``shadow``: the champion serves every request; the challenger runs on the same
  inputs and its output is only logged.
* ``split``: ``percent`` of devices are served by the challenger, chosen by a stable
  hash of (model, device), so a device always sees the same version (sticky).
* ``canary_sites``: when set, the challenger serves only devices at those sites
  (with ``split``, ``percent`` then applies within them).
"""

from __future__ import annotations

import enum
import hashlib

import msgspec

__all__ = ["Route", "RoutingMode", "RoutingPolicy", "route"]


class RoutingMode(enum.StrEnum):
    """How the challenger takes part."""

    OFF = "off"
    SHADOW = "shadow"
    SPLIT = "split"


class RoutingPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A model's routing policy, stored with the model."""

    mode: RoutingMode = RoutingMode.OFF
    challenger: str | None = None
    percent: float = 0.0
    canary_sites: list[str] = []

    def __post_init__(self) -> None:
        if not 0.0 <= self.percent <= 100.0:
            raise ValueError(f"percent must be within 0..100, not {self.percent}")
        if self.mode is not RoutingMode.OFF and self.challenger is None:
            raise ValueError(f"routing mode {self.mode.value!r} needs a challenger version")


class Route(msgspec.Struct, frozen=True):
    """Which version serves a request, and which (if any) runs in its shadow."""

    served: str
    shadow: str | None = None


def bucket(model: str, device: str) -> float:
    """A stable number in [0, 100) for (model, device): the sticky split."""
    digest = hashlib.blake2b(f"{model}\x00{device}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * 100


def route(policy: RoutingPolicy, model: str, champion: str, device: str, site: str) -> Route:
    """The route of one request from ``device`` at ``site``."""
    challenger = policy.challenger
    if policy.mode is RoutingMode.OFF or challenger is None or challenger == champion:
        return Route(champion)
    if policy.canary_sites and site not in policy.canary_sites:
        return Route(champion)
    if policy.mode is RoutingMode.SHADOW:
        return Route(champion, shadow=challenger)
    if bucket(model, device) < policy.percent:
        return Route(challenger)
    return Route(champion)
