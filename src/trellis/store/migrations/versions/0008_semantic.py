"""Semantic model: the asset tree (Brick-typed nodes, points bound to series) and relations.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25

Only new tables; nothing existing changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "semantic_nodes",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("brick_class", sa.String(128), nullable=False),
        sa.Column("name", sa.String(256), nullable=False, server_default=""),
        sa.Column("parent", sa.String(128), nullable=True),
        sa.Column("device", sa.String(128), nullable=True),
        sa.Column("metric", sa.String(128), nullable=True),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("tenant", "device", "metric", name="uq_semantic_nodes_series"),
    )
    op.create_index("ix_semantic_nodes_parent", "semantic_nodes", ["tenant", "parent"])
    op.create_table(
        "semantic_relations",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("subject", sa.String(128), primary_key=True),
        sa.Column("predicate", sa.String(32), primary_key=True),
        sa.Column("object", sa.String(128), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("semantic_relations")
    op.drop_index("ix_semantic_nodes_parent", "semantic_nodes")
    op.drop_table("semantic_nodes")
