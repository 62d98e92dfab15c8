"""Fixtures shared by the ingest tests."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from trellis.ingest import Quarantine


@pytest.fixture
def quarantine(metadata_engine: sa.Engine) -> Quarantine:
    """The quarantine table of the test's metadata database."""
    return Quarantine(metadata_engine)
