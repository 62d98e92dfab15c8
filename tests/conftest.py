"""Fixtures shared by every test package: a data directory, the metadata database, devices."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.helpers import PUMPS, ROOMS, TENANT
from tests.services import drop_test_database
from trellis.core.types import Device
from trellis.devices.registry import DeviceRegistry
from trellis.store.metadata import open_metadata


@pytest.fixture(scope="session", autouse=True)
def _loopback_admin() -> Iterator[None]:
    """Servers in tests authenticate callers from 127.0.0.1 as the local admin.

    Authentication stays on and every call is still authorised by the Cedar policies and
    audited; tests of authentication itself (tests/auth) turn this off and use tokens.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRELLIS_AUTH__LOOPBACK_ADMIN", "true")
        yield


@pytest.fixture
def tmp_data_dir(tmp_path: Path) -> Path:
    """An empty directory laid out like ``./.trellis``."""
    path = tmp_path / ".trellis"
    path.mkdir()
    return path


@pytest.fixture
def metadata_engine(tmp_data_dir: Path) -> Iterator[sa.Engine]:
    """The metadata database, migrated to the head, in a temporary SQLite file."""
    engine = open_metadata(f"sqlite:///{tmp_data_dir / 'trellis.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def registry(metadata_engine: sa.Engine) -> DeviceRegistry:
    """A registry with two pumps and two rooms in tenant ``default``."""
    devices = DeviceRegistry(metadata_engine)
    for device_id in PUMPS:
        devices.register(Device(TENANT, device_id, "pump", name=device_id))
    for device_id in ROOMS:
        devices.register(Device(TENANT, device_id, "room", name=device_id))
    return devices


@pytest.fixture(scope="session", autouse=True)
def _drop_postgres_test_database() -> Iterator[None]:
    """The PostgreSQL database a test run created is dropped when the run ends."""
    yield
    drop_test_database()
