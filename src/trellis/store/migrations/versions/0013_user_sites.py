"""Site-scoped users: a user may be limited to one site of its tenant (a contractor).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-25

One nullable column; existing users keep NULL (the whole tenant).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("site", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("site")
