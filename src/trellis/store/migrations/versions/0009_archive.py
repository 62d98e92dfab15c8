"""Raw message archive: every accepted message kept compressed, with a message index.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25

Only new tables; nothing existing changes. Readings keep no lineage columns: a
reading's source message is found through ``archive_messages`` by device and time.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "archive_segments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("first_received_ms", sa.BigInteger, nullable=False),
        sa.Column("last_received_ms", sa.BigInteger, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("codec", sa.String(16), nullable=False),
        sa.Column("raw_bytes", sa.Integer, nullable=False),
        sa.Column("blob", sa.LargeBinary, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_archive_segments_received", "archive_segments", ["last_received_ms"])
    op.create_table(
        "archive_messages",
        sa.Column("segment_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=True),
        sa.Column("received_ms", sa.BigInteger, nullable=False),
        sa.Column("ts_min", sa.BigInteger, nullable=False),
        sa.Column("ts_max", sa.BigInteger, nullable=False),
        sa.Column("readings", sa.Integer, nullable=False),
        sa.Column("contract", sa.String(160), nullable=False),
        sa.Column("mapping", sa.String(128), nullable=True),
        sa.Column("reprocessed_ms", sa.BigInteger, nullable=True),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_archive_messages_id", "archive_messages", ["message_id"], unique=True)
    op.create_index(
        "ix_archive_messages_device", "archive_messages", ["tenant", "device", "ts_min"]
    )


def downgrade() -> None:
    op.drop_index("ix_archive_messages_device", "archive_messages")
    op.drop_index("ix_archive_messages_id", "archive_messages")
    op.drop_table("archive_messages")
    op.drop_index("ix_archive_segments_received", "archive_segments")
    op.drop_table("archive_segments")
