"""Model registry: models, versions, stage history, prediction log (by batch).

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-25

Only new tables; nothing existing changes, so the downgrade drops exactly them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ml_models",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("routing", sa.JSON, nullable=False),
        sa.Column("promoting_ms", sa.BigInteger, nullable=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "ml_versions",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("signature", sa.JSON, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("card", sa.JSON, nullable=False),
        sa.Column("lineage", sa.JSON, nullable=False),
        sa.Column("reference", sa.JSON, nullable=False),
        sa.Column("reviews", sa.JSON, nullable=False),
        sa.Column("registered_by", sa.String(128), nullable=False),
        sa.Column("registered_ms", sa.BigInteger, nullable=False),
        sa.Column("stage_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "ml_stage_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("from_stage", sa.String(16), nullable=True),
        sa.Column("to_stage", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_ml_stage_events_model", "ml_stage_events", ["tenant", "name", "id"])
    op.create_table(
        "ml_prediction_batches",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("devices", sa.JSON, nullable=False),
        sa.Column("digests", sa.LargeBinary, nullable=False),
        sa.Column("scores", sa.LargeBinary, nullable=True),
        sa.Column("score_sum", sa.Float, nullable=True),
        sa.Column("latency_us", sa.Integer, nullable=False),
        sa.Column("cpu_us", sa.Integer, nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ix_ml_prediction_batches_model", "ml_prediction_batches", ["tenant", "name", "at_ms"]
    )


def downgrade() -> None:
    op.drop_index("ix_ml_prediction_batches_model", "ml_prediction_batches")
    op.drop_table("ml_prediction_batches")
    op.drop_index("ix_ml_stage_events_model", "ml_stage_events")
    op.drop_table("ml_stage_events")
    op.drop_table("ml_versions")
    op.drop_table("ml_models")
