"""``trellis query`` and ``trellis db usage|retention`` on a data directory; the budget alert."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import run
from trellis.cli import app
from trellis.core.clock import now_ms
from trellis.core.config import load_settings
from trellis.core.types import Device, Reading
from trellis.platform import Platform

runner = CliRunner()
DAY = 86_400_000


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data directory with two devices and readings in the last hour and 40 days ago."""
    monkeypatch.setenv("TRELLIS_DATA_DIR", str(tmp_path))
    platform = Platform(load_settings())
    try:
        platform.registry.register(Device("default", "pump-1", "pump"))
        platform.registry.register(Device("default", "room-'1'", "room"))
        now = now_ms()
        recent = [now - 60_000 * i for i in range(1, 31)]
        platform.store.write(
            [Reading("default", "pump-1", "pressure", ts, float(i)) for i, ts in enumerate(recent)]
            + [Reading("default", "room-'1'", "co2", ts, 400.0 + i) for i, ts in enumerate(recent)]
            + [Reading("default", "pump-1", "pressure", now - 40 * DAY, 9.0)]
        )
    finally:
        platform.close()
    return tmp_path


def test_query_prints_a_table(data_dir: Path) -> None:
    """The default format is a table of device, metric, UTC time and value."""
    result = runner.invoke(app, ["query", "pump-1", "-m", "pressure"])
    assert result.exit_code == 0, result.output
    assert "pump-1" in result.stdout
    assert "pressure" in result.stdout


def test_query_exports_csv_with_buckets(data_dir: Path) -> None:
    """CSV goes to stdout, one row per bucket and series, including names with quotes."""
    result = runner.invoke(
        app, ["query", "pump-1", "room-'1'", "--bucket-ms", "600000", "--fn", "count", "-f", "csv"]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {r["device"] for r in rows} == {"pump-1", "room-'1'"}
    assert sum(float(r["value"]) for r in rows if r["device"] == "pump-1") == 30


def test_query_exports_parquet(data_dir: Path, tmp_path: Path) -> None:
    """Parquet export writes typed columns (UTC timestamps) to the file given."""
    import pyarrow.parquet as pq

    out = tmp_path / "export.parquet"
    result = runner.invoke(app, ["query", "pump-1", "room-'1'", "-f", "parquet", "-o", str(out)])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.num_rows == 60
    assert str(table.schema.field("ts").type) == "timestamp[ms, tz=UTC]"
    assert "wrote 60 rows of 2 series" in result.output


def test_query_refuses_a_huge_bucket_count(data_dir: Path) -> None:
    """Ten years at one-second buckets is refused with the limit, exit code 1."""
    result = runner.invoke(
        app,
        [
            *("query", "pump-1", "-m", "pressure", "--bucket-ms", "1000"),
            *("--start", str(now_ms() - 10 * 365 * DAY)),
        ],
    )
    assert result.exit_code == 1
    assert "at most 100000" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "yesterday"], "not RFC 3339"),
        (["--start", "2025-01-02T00:00:00Z", "--end", "2025-01-01T00:00:00Z"], "before end"),
        (["-f", "parquet"], "Parquet needs --out"),
    ],
)
def test_query_bad_arguments(data_dir: Path, args: list[str], message: str) -> None:
    """Bad times and a Parquet export without a file are usage errors (exit code 2)."""
    result = runner.invoke(app, ["query", "pump-1", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_db_usage_and_retention(data_dir: Path) -> None:
    """usage shows the tenant; retention deletes the 40-day-old reading (raw 30 days)."""
    usage = runner.invoke(app, ["db", "usage"])
    assert usage.exit_code == 0, usage.output
    assert "default" in usage.stdout
    assert "days until full" in usage.output
    first = runner.invoke(app, ["db", "retention"])
    assert first.exit_code == 0, first.output
    assert "deleted 1 readings and 0 rollup minutes" in first.output
    again = runner.invoke(app, ["db", "retention"])
    assert "deleted 0 readings" in again.output


def test_running_platform_alerts_before_the_disk_is_full(tmp_path: Path) -> None:
    """With a budget nearly used up, the running platform raises a storage alert."""
    settings = load_settings(
        data_dir=tmp_path, storage={"capacity_bytes": 1, "retention_interval_s": 0.05}
    )
    platform = Platform(settings)
    platform.store.write([Reading("default", "d", "m", now_ms() - 1_000, 1.0)])

    async def scenario() -> str:
        with platform.alerts.events.listen() as raised:
            async with platform.running():
                alert = await asyncio.wait_for(raised.get(), timeout=10)
        return f"{alert.rule} {alert.device} {alert.message}"

    try:
        assert run(scenario()).startswith("storage-budget storage storage is predicted full in")
    finally:
        platform.close()
