"""The migrations build exactly the schema ``store.metadata`` declares (0003 included)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from trellis.store.metadata import metadata


def test_migrated_database_matches_the_declared_tables(metadata_engine: sa.Engine) -> None:
    """Autogenerate finds no difference between the migrated database and the code."""
    with metadata_engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), metadata) == []
    tables = set(sa.inspect(metadata_engine).get_table_names())
    assert {"rule_state", "rule_dead_letters", "flow_versions"} <= tables
