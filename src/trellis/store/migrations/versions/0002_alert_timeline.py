"""Alert timeline, feedback labels, assignment, snooze, escalation, dead letters.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

Existing alerts keep every value; their history before this revision is rebuilt as
the events the old columns prove (raised, acknowledged, cleared, resolved), so the
metrics see them. Nothing is dropped.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _new_alert_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("site", sa.String(128), nullable=False, server_default=""),
        sa.Column("metric", sa.String(128), nullable=True),
        sa.Column("model_version", sa.String(128), nullable=True),
        sa.Column("assignee", sa.String(128), nullable=True),
        sa.Column("snoozed_until_ms", sa.BigInteger, nullable=True),
        sa.Column("escalated_ms", sa.BigInteger, nullable=True),
        sa.Column("escalation_level", sa.Integer, nullable=False, server_default="0"),
        sa.Column("first_action_ms", sa.BigInteger, nullable=True),
        sa.Column("verdict", sa.String(32), nullable=True),
    ]


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        for column in _new_alert_columns():
            batch.add_column(column)
        batch.create_index("ix_alerts_tenant_raised", ["tenant", "raised_ms"])
    op.create_table(
        "alert_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column(
            "alert_id", sa.Integer, sa.ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_alert_events_alert", "alert_events", ["alert_id", "id"])
    op.create_table(
        "alert_labels",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column(
            "alert_id", sa.Integer, sa.ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column("root_cause", sa.String(128), nullable=False),
        sa.Column("action_taken", sa.String(128), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("site", sa.String(128), nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("window_start_ms", sa.BigInteger, nullable=False),
        sa.Column("window_end_ms", sa.BigInteger, nullable=False),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=True),
        sa.Column("labelled_by", sa.String(128), nullable=False),
        sa.Column("labelled_ms", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("alert_id", name="uq_alert_labels_alert"),
    )
    op.create_index("ix_alert_labels_tenant", "alert_labels", ["tenant", "labelled_ms"])
    op.create_table(
        "notification_dead_letters",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("alert_id", sa.Integer, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_dead_letters_tenant", "notification_dead_letters", ["tenant", "created_ms"])
    _backfill_events()


def _backfill_events() -> None:
    """The events an alert written at 0001 already proves, in the order they happened."""
    system = "'system'"
    for kind, at, actor, where in (
        ("raised", "raised_ms", system, "1 = 1"),
        (
            "acknowledged",
            "acknowledged_ms",
            "coalesce(acknowledged_by, 'unknown')",
            "acknowledged_ms IS NOT NULL",
        ),
        ("cleared", "cleared_ms", system, "cleared_ms IS NOT NULL"),
        ("resolved", "resolved_ms", "coalesce(resolved_by, 'unknown')", "resolved_ms IS NOT NULL"),
    ):
        op.execute(
            "INSERT INTO alert_events (tenant, alert_id, kind, actor, at_ms, detail) "
            f"SELECT tenant, id, '{kind}', {actor}, {at}, '{{}}' FROM alerts WHERE {where} "
            "ORDER BY id"
        )
    op.execute(
        "UPDATE alerts SET site = coalesce((SELECT d.site FROM devices d "
        "WHERE d.tenant = alerts.tenant AND d.id = alerts.device), '')"
    )


def downgrade() -> None:
    op.drop_index("ix_dead_letters_tenant", "notification_dead_letters")
    op.drop_table("notification_dead_letters")
    op.drop_index("ix_alert_labels_tenant", "alert_labels")
    op.drop_table("alert_labels")
    op.drop_index("ix_alert_events_alert", "alert_events")
    op.drop_table("alert_events")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_index("ix_alerts_tenant_raised")
        for column in reversed(_new_alert_columns()):
            batch.drop_column(column.name)
