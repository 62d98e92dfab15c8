"""Real services a test needs: skip on a laptop without them, fail in CI."""

from __future__ import annotations

import os

import pytest


def require(name: str, available: bool, why: str) -> None:
    """Skip the test when ``name`` is missing, or fail when TRELLIS_REQUIRE_SERVICES=1."""
    if available:
        return
    message = f"{name} is not available: {why}"
    if os.environ.get("TRELLIS_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} (TRELLIS_REQUIRE_SERVICES=1 requires it)", pytrace=False)
    pytest.skip(message)
