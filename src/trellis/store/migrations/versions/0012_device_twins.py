"""Device twins: desired and reported state per device, each versioned.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-25

Only a new table; nothing existing changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_twins",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("device", sa.String(128), primary_key=True),
        sa.Column("desired", sa.JSON, nullable=False),
        sa.Column("desired_version", sa.Integer, nullable=False),
        sa.Column("desired_ms", sa.BigInteger, nullable=False),
        sa.Column("reported", sa.JSON, nullable=False),
        sa.Column("reported_version", sa.Integer, nullable=False),
        sa.Column("reported_ms", sa.BigInteger, nullable=False),
        sa.Column("applied_version", sa.Integer, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("device_twins")
