"""Alert propagation up the asset tree: the nodes above each alert's device.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25

One new table, filled for the alerts that exist from their device's site (the only level
of the hierarchy recorded on alerts until now).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_scopes",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("node", sa.String(128), nullable=False),
        sa.Column(
            "alert_id",
            sa.Integer,
            sa.ForeignKey("alerts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("tenant", "node", "alert_id", name="pk_alert_scopes"),
    )
    op.execute(
        "INSERT INTO alert_scopes (tenant, node, alert_id) "
        "SELECT tenant, site, id FROM alerts WHERE site <> ''"
    )


def downgrade() -> None:
    op.drop_table("alert_scopes")
