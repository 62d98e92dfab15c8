"""The exceptions Trellis raises.

::

    TrellisError
     ├── ConfigError          a setting is missing or has a bad value
     ├── StoreError           a storage backend failed
     │    ├── SchemaError     the database schema is newer or foreign
     │    └── WriteRefusedError  the database refused the rows themselves (retrying fails)
     ├── NotFoundError        an id names nothing (maps to HTTP 404)
     ├── ConflictError        the action does not fit the current state (HTTP 409)
     ├── LimitError           a request exceeds a documented limit (HTTP 422)
     └── ClosedError          a bus or queue was used after it was closed

Errors from libraries underneath (sqlite3, SQLAlchemy, pydantic) are translated at
the boundary and chained with ``raise … from exc``.
"""

from __future__ import annotations

__all__ = [
    "ClosedError",
    "ConfigError",
    "ConflictError",
    "LimitError",
    "NotFoundError",
    "SchemaError",
    "StoreError",
    "TrellisError",
    "WriteRefusedError",
]


class TrellisError(Exception):
    """The root of every error Trellis raises on purpose."""


class ConfigError(TrellisError):
    """A setting is missing or invalid; the message names the setting and the value."""


class StoreError(TrellisError):
    """A storage backend failed to read or write."""


class SchemaError(StoreError):
    """The database schema cannot be used by this version of Trellis."""


class WriteRefusedError(StoreError):
    """The database refused some of the rows written (a constraint, a trigger, a value
    out of its range): the same rows fail the same way however often they are retried,
    unlike a lost connection or a locked file."""


class NotFoundError(TrellisError):
    """An id names nothing that exists (for this tenant)."""

    def __init__(self, kind: str, key: object) -> None:
        super().__init__(f"{kind} {key!r} not found")
        self.kind = kind
        self.key = key


class ConflictError(TrellisError):
    """The requested change does not fit the current state of the resource."""


class LimitError(TrellisError, ValueError):
    """A request is larger than a documented limit allows; the message names the limit."""


class ClosedError(TrellisError):
    """A bus, queue or service was used after it was closed."""
