"""Real services the tests use, and the one rule for when one is missing.

A test that needs a server skips on a laptop without it, but FAILS when
``TRELLIS_REQUIRE_SERVICES=1`` (CI sets it), so a missing service never passes
silently as a skip.
"""

from __future__ import annotations

import functools
import os
import uuid

import pytest

__all__ = ["POSTGRES_ADMIN_URL", "drop_test_database", "postgres_url", "require"]

#: The machine's PostgreSQL (trust auth); tests create and drop their own database in it.
POSTGRES_ADMIN_URL = os.environ.get("TRELLIS_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")


def require(name: str, available: bool, why: str) -> None:
    """Skip (or, with TRELLIS_REQUIRE_SERVICES=1, fail) unless ``available``."""
    if available:
        return
    message = f"{name} is not available: {why}"
    if os.environ.get("TRELLIS_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " (TRELLIS_REQUIRE_SERVICES=1 requires it)", pytrace=False)
    pytest.skip(message)


@functools.cache
def _created_database() -> tuple[str | None, str]:
    """Create this test run's database once; (its URL, or None and the reason)."""
    try:
        import psycopg
    except ImportError:
        return None, "psycopg is not installed (pip install -e '.[dev,postgres]')"
    name = f"trellis_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        return None, f"cannot create a database through {POSTGRES_ADMIN_URL}: {exc}"
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}", ""


def postgres_url() -> str:
    """URL of a fresh database for this test run (created on first use)."""
    url, why = _created_database()
    require("PostgreSQL", url is not None, why)
    assert url is not None
    return url


def drop_test_database() -> None:
    """Drop the run's database if one was created (called once at session end)."""
    if _created_database.cache_info().currsize == 0:
        return
    url, _ = _created_database()
    if url is None:
        return
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
