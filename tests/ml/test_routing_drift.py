"""Routing and drift statistics as pure functions: sticky splits, canaries, PSI and KS."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trellis.ml.carbon import CarbonModel
from trellis.ml.drift import DriftMonitor, ks, psi
from trellis.ml.routing import Route, RoutingMode, RoutingPolicy, route

devices = st.text(min_size=1, max_size=40)


@given(devices, st.floats(0, 100))
def test_split_is_sticky_per_device(device: str, percent: float) -> None:
    """The same device always gets the same version under one policy."""
    policy = RoutingPolicy(RoutingMode.SPLIT, "2.0.0", percent=percent)
    assert route(policy, "m", "1.0.0", device, "") == route(policy, "m", "1.0.0", device, "")


@given(devices)
def test_zero_and_hundred_percent_are_absolute(device: str) -> None:
    """0 % never reaches the challenger; 100 % always does."""
    none = RoutingPolicy(RoutingMode.SPLIT, "2.0.0", percent=0)
    every = RoutingPolicy(RoutingMode.SPLIT, "2.0.0", percent=100)
    assert route(none, "m", "1.0.0", device, "").served == "1.0.0"
    assert route(every, "m", "1.0.0", device, "").served == "2.0.0"


def test_split_share_matches_the_percentage() -> None:
    """Over many devices the challenger's share is close to the configured percent."""
    policy = RoutingPolicy(RoutingMode.SPLIT, "2.0.0", percent=30)
    served = [route(policy, "m", "1.0.0", f"dev-{i}", "").served for i in range(10_000)]
    assert 0.27 < served.count("2.0.0") / len(served) < 0.33


def test_canary_sites_and_shadow() -> None:
    """A canary serves the challenger only at its sites; shadow never serves it."""
    canary = RoutingPolicy(RoutingMode.SPLIT, "2.0.0", percent=100, canary_sites=["plant-2"])
    assert route(canary, "m", "1.0.0", "d", "plant-2") == Route("2.0.0")
    assert route(canary, "m", "1.0.0", "d", "plant-1") == Route("1.0.0")
    shadow = RoutingPolicy(RoutingMode.SHADOW, "2.0.0")
    assert route(shadow, "m", "1.0.0", "d", "x") == Route("1.0.0", shadow="2.0.0")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": RoutingMode.SPLIT, "percent": 10}, "needs a challenger"),
        ({"mode": RoutingMode.SPLIT, "challenger": "2.0.0", "percent": 101}, "within 0..100"),
    ],
)
def test_bad_policies_are_refused(kwargs: dict, match: str) -> None:
    """A split without a challenger or with a percentage outside 0..100 is refused."""
    with pytest.raises(ValueError, match=match):
        RoutingPolicy(**kwargs)


def test_psi_and_ks_separate_same_from_shifted() -> None:
    """Samples of one distribution have PSI < 0.1; a shifted one has PSI > 0.2 and tiny p."""
    rng = random.Random(1)
    reference = [rng.gauss(0, 1) for _ in range(2000)]
    same = [rng.gauss(0, 1) for _ in range(500)]
    shifted = [rng.gauss(1.5, 1) for _ in range(500)]
    assert psi(reference, same) < 0.1
    assert psi(reference, shifted) > 0.2
    assert ks(reference, same)[1] > 0.01
    assert ks(reference, shifted)[1] < 1e-6


def test_operator_labels_drive_concept_drift() -> None:
    """An error stream from operator verdicts that jumps from rare to frequent is flagged."""
    monitor = DriftMonitor(window=100)
    rng = random.Random(2)
    errors = [int(rng.random() < 0.05) for _ in range(300)] + [
        int(rng.random() < 0.7) for _ in range(300)
    ]
    report = monitor.check("t", "m", "1.0.0", ["x"], {"x": [0.0, 1.0]}, errors)
    assert report.concept.labels_drift
    assert report.drifted
    steady = monitor.check("t", "m", "1.0.0", ["x"], {"x": [0.0]}, [0] * 300)
    assert not steady.drifted


def test_carbon_is_cpu_time_times_power_times_intensity() -> None:
    """3.6 CPU-seconds at 1000 W is 1 Wh; at 500 g/kWh that is 0.5 g."""
    footprint = CarbonModel(cpu_power_w=1000, grid_gco2e_per_kwh=500).footprint(10, 3_600_000)
    assert footprint.energy_wh == pytest.approx(1.0)
    assert footprint.gco2e == pytest.approx(0.5)
    assert footprint.gco2e_per_1k == pytest.approx(50.0)
