"""Trellis: an open-source AIoT platform that carries a fleet from pilot to production.

The names below are the public surface; everything else is reached through its
package (``trellis.store``, ``trellis.rules`` …) and may change between releases.
``tests/test_public_api.py`` fails when this list and ``__all__`` drift apart.
"""

from trellis._version import __version__
from trellis.core.config import Settings, load_settings
from trellis.core.errors import (
    ClosedError,
    ConfigError,
    ConflictError,
    NotFoundError,
    SchemaError,
    StoreError,
    TrellisError,
)
from trellis.core.types import (
    Alert,
    AlertSeverity,
    AlertStatus,
    Device,
    DeviceStatus,
    Quality,
    RawMessage,
    Reading,
)
from trellis.platform import Platform

__all__ = [
    "Alert",
    "AlertSeverity",
    "AlertStatus",
    "ClosedError",
    "ConfigError",
    "ConflictError",
    "Device",
    "DeviceStatus",
    "NotFoundError",
    "Platform",
    "Quality",
    "RawMessage",
    "Reading",
    "SchemaError",
    "Settings",
    "StoreError",
    "TrellisError",
    "__version__",
    "load_settings",
]
