"""A scenario in-process: ``[sim] scenario`` makes the platform's fleet that scenario."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import NOW_MS, TENANT, run
from tests.sim.test_cli_sim import SCENARIO
from trellis.core.config import load_settings
from trellis.core.errors import ConfigError
from trellis.platform import Platform
from trellis.sim.fleet import Fleet


def test_a_scenario_fleet_feeds_the_platform_in_process(tmp_path: Path) -> None:
    """Pumps, a zone, a chiller and a meter from a scenario: every reading stored."""
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO)
    settings = load_settings(data_dir=tmp_path / "data", sim={"scenario": scenario})

    async def feed() -> tuple[int, int, int]:
        platform = Platform(settings)
        try:
            async with platform.running(simulate=False):
                fleet = Fleet(settings.sim, TENANT, start_ms=NOW_MS)
                for device in fleet.devices():
                    platform.registry.register(device)
                readings = quarantined = 0
                for second in range(5):
                    for message in fleet.messages(NOW_MS + second * 1000, NOW_MS + 5000):
                        result = await platform.pipeline.submit_and_wait(message)
                        readings += result.readings
                        quarantined += result.quarantined
                return platform.store.count(TENANT), quarantined, readings
        finally:
            platform.close()

    stored, quarantined, readings = run(feed())
    assert quarantined == 0
    assert stored == readings == 5 * (2 * 8 + 3 + 4 + 2)


def test_a_bad_scenario_in_the_settings_is_a_config_error_naming_the_line(tmp_path: Path) -> None:
    """``trellis serve`` with a broken scenario stops before starting, with file:line."""
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO.replace('kind = "bearing_wear"', 'kind = "rust"'))
    with pytest.raises(ConfigError, match=r"s\.toml:16: unknown fault kind 'rust'"):
        load_settings(data_dir=tmp_path, sim={"scenario": scenario})
