"""``storage.url`` picks the backend in the composition root; ``trellis db upgrade``."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from tests.services import postgres_url
from trellis.cli import app
from trellis.core.config import load_settings
from trellis.core.errors import ConfigError
from trellis.core.types import Reading
from trellis.platform import Platform
from trellis.store.factory import open_timeseries
from trellis.store.sqlite import SQLiteTimeSeriesStore

runner = CliRunner()
T0 = 1_764_000_000_000


def test_default_is_sqlite_under_the_data_dir(tmp_path: Path) -> None:
    """Without storage.url both databases are SQLite files in data_dir."""
    settings = load_settings(data_dir=tmp_path)
    assert settings.metadata_url == f"sqlite:///{tmp_path / 'trellis.db'}"
    assert settings.timeseries_url == f"sqlite:///{tmp_path / 'timeseries.db'}"


def test_sqlite_url_puts_time_series_beside_the_metadata(tmp_path: Path) -> None:
    """storage.url = sqlite:///x/trellis.db keeps the time series in x/timeseries.db."""
    settings = load_settings(storage={"url": f"sqlite:///{tmp_path}/elsewhere/trellis.db"})
    assert settings.timeseries_path == tmp_path / "elsewhere" / "timeseries.db"
    platform = Platform(settings)
    try:
        assert isinstance(platform.store, SQLiteTimeSeriesStore)
        assert (tmp_path / "elsewhere" / "timeseries.db").is_file()
    finally:
        platform.close()


@pytest.mark.parametrize("url", ["mysql://h/db", "timeseries.db", "sqlite://relative.db"])
def test_unknown_storage_url_is_a_config_error(url: str) -> None:
    """A URL of an unsupported database is refused by name before anything opens."""
    with pytest.raises(ConfigError, match=r"storage\.url"):
        load_settings(storage={"url": url})


def test_open_timeseries_refuses_an_unknown_scheme() -> None:
    """The factory names the schemes it knows."""
    with pytest.raises(ConfigError, match="no time-series backend"):
        open_timeseries("mysql://h/db")


def test_postgres_url_puts_both_databases_in_postgres(tmp_path: Path) -> None:
    """With a postgresql:// URL the platform keeps metadata and readings in PostgreSQL."""
    from trellis.store.postgres import PostgresTimeSeriesStore

    schema = f"p_{uuid.uuid4().hex[:10]}"
    settings = load_settings(
        data_dir=tmp_path, storage={"url": postgres_url(), "pg_schema": schema}
    )
    platform = Platform(settings)
    try:
        assert isinstance(platform.store, PostgresTimeSeriesStore)
        assert platform.engine.dialect.name == "postgresql"
        assert platform.store.write([Reading("default", "d", "m", T0, 1.0)]).inserted == 1
        assert platform.store.count("default") == 1
    finally:
        platform.close()
    assert not (tmp_path / "trellis.db").exists()


def test_db_upgrade_creates_both_schemas_in_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``trellis db upgrade`` on an empty data dir creates both databases, then is a no-op."""
    monkeypatch.setenv("TRELLIS_DATA_DIR", str(tmp_path))
    for _ in range(2):
        result = runner.invoke(app, ["db", "upgrade"])
        assert result.exit_code == 0, result.output
        assert "schemas are current (SQLite)" in result.output
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'trellis.db'}")
    try:
        assert "alembic_version" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
    assert (tmp_path / "timeseries.db").is_file()


def test_db_upgrade_on_postgres(monkeypatch: pytest.MonkeyPatch) -> None:
    """``trellis db upgrade`` with a PostgreSQL storage.url migrates it."""
    monkeypatch.setenv("TRELLIS_STORAGE__URL", postgres_url())
    monkeypatch.setenv("TRELLIS_STORAGE__PG_SCHEMA", f"u_{uuid.uuid4().hex[:10]}")
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "(PostgreSQL)" in result.output


def test_db_upgrade_reports_an_unreachable_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unreachable PostgreSQL is an error message and exit code 1, not a traceback."""
    monkeypatch.setenv("TRELLIS_STORAGE__URL", "postgresql://127.0.0.1:1/nowhere")
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 1
    assert "error:" in result.output
