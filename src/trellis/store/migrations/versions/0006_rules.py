"""Rule engine: checkpointed state, dead-lettered rule actions, versioned flows.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

Only new tables; nothing existing changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rule_state",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("rule", sa.String(128), primary_key=True),
        sa.Column("device", sa.String(128), primary_key=True),
        sa.Column("state", sa.LargeBinary, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "rule_dead_letters",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("action", sa.String(512), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_rule_dead_letters_tenant", "rule_dead_letters", ["tenant", "created_ms"])
    op.create_table(
        "flow_versions",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("definition", sa.JSON, nullable=False),
        sa.Column("deployed", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("flow_versions")
    op.drop_index("ix_rule_dead_letters_tenant", table_name="rule_dead_letters")
    op.drop_table("rule_dead_letters")
    op.drop_table("rule_state")
