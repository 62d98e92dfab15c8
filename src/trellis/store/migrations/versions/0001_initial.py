"""Initial schema: devices, rules, alerts, quarantine.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("name", sa.String(256), nullable=False, server_default=""),
        sa.Column("site", sa.String(128), nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False, server_default="active"),
        sa.Column("attributes", sa.JSON, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "rules",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("definition", sa.JSON, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("dedup_key", sa.String(512), nullable=False),
        sa.Column("open_key", sa.String(512), nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("count", sa.Integer, nullable=False, server_default="1"),
        sa.Column("raised_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
        sa.Column("acknowledged", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("acknowledged_ms", sa.BigInteger, nullable=True),
        sa.Column("acknowledged_by", sa.String(128), nullable=True),
        sa.Column("cleared_ms", sa.BigInteger, nullable=True),
        sa.Column("resolved_ms", sa.BigInteger, nullable=True),
        sa.Column("resolved_by", sa.String(128), nullable=True),
        sa.UniqueConstraint("tenant", "open_key", name="uq_alerts_open_key"),
    )
    op.create_index("ix_alerts_tenant_status", "alerts", ["tenant", "status", "raised_ms"])
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=True),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(512), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("properties", sa.JSON, nullable=False),
        sa.Column("received_ms", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("quarantined_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_quarantine_received", "quarantine", ["received_ms"])


def downgrade() -> None:
    op.drop_index("ix_quarantine_received", "quarantine")
    op.drop_table("quarantine")
    op.drop_index("ix_alerts_tenant_status", "alerts")
    op.drop_table("alerts")
    op.drop_table("rules")
    op.drop_table("devices")
