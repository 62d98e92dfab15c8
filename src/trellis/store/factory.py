"""Opening a time-series store by URL: the one place that maps a scheme to a backend.

The PostgreSQL backend is imported only when asked for, so the embedded default
needs neither psycopg nor a server.
"""

from __future__ import annotations

from pathlib import Path

from trellis.core.errors import ConfigError
from trellis.store.base import TimeSeriesStore
from trellis.store.sqlite import SQLiteTimeSeriesStore

__all__ = ["open_timeseries"]


def open_timeseries(
    url: str, *, pg_schema: str = "trellis", pool_size: int = 4, partitions_ahead: int = 3
) -> TimeSeriesStore:
    """The store ``url`` names: ``sqlite:///path`` or ``postgresql://…``."""
    if url.startswith("sqlite:///"):
        return SQLiteTimeSeriesStore(Path(url.removeprefix("sqlite:///")))
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        try:
            from trellis.store.postgres import PostgresTimeSeriesStore
        except ImportError as exc:
            raise ConfigError(str(exc)) from exc
        return PostgresTimeSeriesStore(
            url, schema=pg_schema, pool_size=pool_size, partitions_ahead=partitions_ahead
        )
    raise ConfigError(f"no time-series backend for {url!r}; use sqlite:/// or postgresql://")
