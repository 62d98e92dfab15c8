"""Scenario files: what they build, and bad input reported with its line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trellis.sim.engine import Simulation
from trellis.sim.scenario import ScenarioError, load_scenario, parse_scenario

EXAMPLES = Path(__file__).parents[2] / "examples" / "scenarios"

GOOD = """\
name = "t"
seed = 3
start = "2025-01-06T00:00:00Z"
duration_h = 2

[[site]]
name = "a"
pumps = 2
rate_hz = 0.1

[[site]]
name = "b"
pumps = 1
zones = 2
rate_hz = 0.05

[[fault]]
asset = "pump-0003"
kind = "bearing_wear"
onset_h = 1
growth_h = 2
"""


def test_a_scenario_builds_its_fleet_rates_and_faults() -> None:
    """Counts per site, the step from the fastest rate, faults in seconds."""
    plan = parse_scenario(GOOD)
    assert plan.step_s == 10.0
    assert [(s.name, s.counts["pump"], s.period_s) for s in plan.sites] == [
        ("a", 2, 10.0),
        ("b", 1, 20.0),
    ]
    assert (plan.faults[0].onset_s, plan.faults[0].growth_s) == (3600.0, 7200.0)
    assert plan.ticks == 720
    sim = Simulation(plan)
    assert [device for device, _, site in sim.device_ids() if site == "b"] == [
        "pump-0003",
        "zone-0001",
        "zone-0002",
    ]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_the_example_scenarios_load(path: Path) -> None:
    """Every shipped example is a valid scenario with ground truth."""
    sim = Simulation(load_scenario(path))
    assert sim.truth


@pytest.mark.parametrize(
    ("change", "line", "message"),
    [
        (("pumps = 1\n", "turbines = 1\n"), 13, "unknown asset type 'turbines'"),
        (('asset = "pump-0003"', 'asset = "pump-0009"'), 18, "fault on 'pump-0009', which is not"),
        (
            ("rate_hz = 0.05", "rate_hz = -0.05"),
            15,
            "site.1.rate_hz: Input should be greater than 0",
        ),
        (('kind = "bearing_wear"', 'kind = "gremlins"'), 19, "unknown fault kind 'gremlins'"),
        (('kind = "bearing_wear"', 'kind = "stuck_damper"'), 19, "stuck_damper is a zone fault"),
        (("rate_hz = 0.05", "rate_hz = 0.03"), 15, "reports every 33.3333 s, not a whole number"),
        (("onset_h = 1", "onset_h = -1"), 20, "fault.0.onset_h: Input should be greater than"),
        (("duration_h = 2", "duration_h = 0"), 4, "duration_h: Input should be greater than 0"),
        (('start = "2025-01-06T00:00:00Z"', 'start = "2025-01-06T00:00:00"'), 3, "needs a UTC"),
        (("seed = 3", "seed = "), 2, "Invalid value"),
    ],
)
def test_bad_scenarios_name_the_line(change: tuple[str, str], line: int, message: str) -> None:
    """Unknown asset type, fault on a missing asset, negative rate, …: file:line: why."""
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(ScenarioError, match=message) as caught:
        parse_scenario(text, "plant.toml")
    assert str(caught.value).startswith(f"plant.toml:{line}: ")


def test_a_site_that_is_not_a_table_names_its_line() -> None:
    """``site = 3`` is refused on its own line, not with a TypeError."""
    with pytest.raises(ScenarioError, match=r"^s\.toml:2: site: Input should be a valid list"):
        parse_scenario("duration_h = 1\nsite = 3\n", "s.toml")


def test_an_unreadable_file_is_a_scenario_error(tmp_path: Path) -> None:
    """A missing file is reported with its path, not a traceback."""
    with pytest.raises(ScenarioError, match=r"missing\.toml:0: cannot read"):
        load_scenario(tmp_path / "missing.toml")


@given(st.text(max_size=200))
def test_arbitrary_text_is_a_scenario_or_a_scenario_error(text: str) -> None:
    """Whatever the text, parsing returns a plan or raises ScenarioError, nothing else."""
    line = 1
    try:
        parse_scenario(text)
    except ScenarioError as exc:
        line = exc.line
    assert line >= 1
