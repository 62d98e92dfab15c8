"""Storage: time series (embedded SQLite; PostgreSQL later) and the metadata schema."""

from trellis.store.base import Aggregate, Bucket, Latest, Point, TimeSeriesStore
from trellis.store.memory import MemoryTimeSeriesStore
from trellis.store.sqlite import SQLiteTimeSeriesStore

__all__ = [
    "Aggregate",
    "Bucket",
    "Latest",
    "MemoryTimeSeriesStore",
    "Point",
    "SQLiteTimeSeriesStore",
    "TimeSeriesStore",
]
