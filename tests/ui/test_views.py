"""What the pages show, computed without a server: formatting and chart seeds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import NOW_MS, TENANT
from trellis.core.config import load_settings
from trellis.core.types import Reading
from trellis.platform import Platform
from trellis.ui import views


@pytest.mark.parametrize(
    ("value", "shown"),
    [(0.0, "0"), (3.0, "3"), (2.456, "2.46"), (-0.5, "-0.50"), (12.34, "12.3"), (1234.5, "1234")],
)
def test_format_value_keeps_three_or_four_digits_without_exponent(value: float, shown: str) -> None:
    """Values read as numbers people compare at a glance, never ``1.2e+03``."""
    assert views.format_value(value) == shown


@pytest.mark.parametrize(
    ("age_ms", "shown"),
    [(500, "just now"), (5_000, "5 s ago"), (300_000, "5 min ago"), (10_800_000, "3 h ago")],
)
def test_format_age(age_ms: int, shown: str) -> None:
    """Ages are rounded down to one unit; a timestamp never seen is ``never``."""
    assert views.format_age(NOW_MS - age_ms, NOW_MS) == shown
    assert views.format_age(None, NOW_MS) == "never"
    assert views.format_age(NOW_MS + 5_000, NOW_MS) == "just now"  # device clock ahead


def test_unit_labels() -> None:
    """UCUM codes become the symbols people read; unknown units pass through."""
    assert views.unit_label("Cel") == "°C"
    assert views.unit_label("count") == ""
    assert views.unit_label(None) == ""
    assert views.unit_label("mm/s") == "mm/s"


def test_missing_assets_names_each_absent_file(tmp_path: Path) -> None:
    """The banner lists exactly the vendored files that are not there."""
    assert views.missing_assets(tmp_path) == list(views.VENDOR_FILES)
    (tmp_path / "htmx.min.js").write_text("")
    assert "htmx.min.js" not in views.missing_assets(tmp_path)


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    """A platform whose store is written directly (not running)."""
    built = Platform(load_settings(data_dir=tmp_path / "data"))
    yield built
    built.close()


def test_dense_history_is_averaged_to_the_point_cap(platform: Platform) -> None:
    """15 minutes at 10 Hz is averaged into at most CHART_MAX_POINTS buckets."""
    start = NOW_MS - views.CHART_WINDOW_MS
    platform.store.write(
        [Reading(TENANT, "pump-0001", "vibration", ts, 2.0) for ts in range(start, NOW_MS, 100)]
    )
    series = views.seed_series(platform, "pump-0001", "vibration", "mm/s", "", NOW_MS)
    assert series.bucket_ms is not None
    assert 0.9 * views.CHART_MAX_POINTS <= len(series.ts) <= views.CHART_MAX_POINTS + 1
    assert set(series.values) == {2.0}
    assert series.ts == sorted(series.ts)


def test_sparse_history_is_sent_raw(platform: Platform) -> None:
    """A series within the cap is sent point for point, older points left out."""
    old = NOW_MS - views.CHART_WINDOW_MS - 1
    stamps = [old, *range(NOW_MS - 60_000, NOW_MS, 1_000)]
    platform.store.write([Reading(TENANT, "room-0001", "co2", ts, 400.0) for ts in stamps])
    series = views.seed_series(platform, "room-0001", "co2", "ppm", "", NOW_MS)
    assert series.bucket_ms is None
    assert series.ts == stamps[1:]
