"""Storage: time series (embedded SQLite, PostgreSQL) and the metadata schema."""

from trellis.store.base import (
    Aggregate,
    Bucket,
    DeviceLatest,
    Fill,
    Latest,
    Point,
    RejectedReading,
    StorageUsage,
    TenantUsage,
    TimeSeriesStore,
    WriteResult,
)
from trellis.store.memory import MemoryTimeSeriesStore
from trellis.store.sqlite import SQLiteTimeSeriesStore

__all__ = [
    "Aggregate",
    "Bucket",
    "DeviceLatest",
    "Fill",
    "Latest",
    "MemoryTimeSeriesStore",
    "Point",
    "RejectedReading",
    "SQLiteTimeSeriesStore",
    "StorageUsage",
    "TenantUsage",
    "TimeSeriesStore",
    "WriteResult",
]
