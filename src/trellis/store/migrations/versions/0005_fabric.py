"""Data fabric: the device model registry, contract versions and replay state in quarantine.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

Existing quarantine entries keep every value; their contract is unknown (NULL) and
they are not yet replayed. Nothing is dropped.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_models",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("definition", sa.JSON, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    with op.batch_alter_table("quarantine") as batch:
        batch.add_column(sa.Column("contract", sa.String(160), nullable=True))
        batch.add_column(sa.Column("replayed_ms", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_column("replayed_ms")
        batch.drop_column("contract")
    op.drop_table("device_models")
