"""The metadata schema (devices, rules, alerts, their timelines and labels, models) and
migrations.

SQLAlchemy Core on SQLite in embedded mode and PostgreSQL at scale: one schema, one
set of Alembic migrations. :func:`open_metadata` upgrades the database at start,
idempotently, after a pre-flight check that refuses a schema this code does not know
(a database written by a newer Trellis) instead of guessing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from trellis.core.errors import SchemaError

__all__ = [
    "alert_events",
    "alert_labels",
    "alert_scopes",
    "alerts",
    "api_tokens",
    "archive_messages",
    "archive_segments",
    "device_models",
    "device_twins",
    "devices",
    "flow_versions",
    "metadata",
    "migrate",
    "ml_models",
    "ml_prediction_batches",
    "ml_stage_events",
    "ml_versions",
    "notification_dead_letters",
    "open_metadata",
    "quarantine",
    "row_dict",
    "rule_dead_letters",
    "rule_state",
    "rules",
    "semantic_nodes",
    "semantic_relations",
    "sessions",
    "users",
]

metadata = sa.MetaData()

#: Device twins: desired state (set by people and rules) and reported state (what the
#: device last said), each with a version that grows by one per change.
device_twins = sa.Table(
    "device_twins",
    metadata,
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

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("tenant", sa.String(64), primary_key=True),
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("name", sa.String(256), nullable=False, server_default=""),
    sa.Column("site", sa.String(128), nullable=False, server_default=""),
    sa.Column("status", sa.String(16), nullable=False, server_default="active"),
    sa.Column("attributes", sa.JSON, nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
)

rules = sa.Table(
    "rules",
    metadata,
    sa.Column("tenant", sa.String(64), primary_key=True),
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("definition", sa.JSON, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
)

alerts = sa.Table(
    "alerts",
    metadata,
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
    sa.Column("site", sa.String(128), nullable=False, server_default=""),
    sa.Column("metric", sa.String(128), nullable=True),
    sa.Column("model_version", sa.String(128), nullable=True),
    sa.Column("assignee", sa.String(128), nullable=True),
    sa.Column("snoozed_until_ms", sa.BigInteger, nullable=True),
    sa.Column("escalated_ms", sa.BigInteger, nullable=True),
    sa.Column("escalation_level", sa.Integer, nullable=False, server_default="0"),
    sa.Column("first_action_ms", sa.BigInteger, nullable=True),
    sa.Column("verdict", sa.String(32), nullable=True),
    # open_key is the dedup key while the alert is open and NULL once resolved, so the
    # database itself guarantees one open alert per key (NULLs never collide).
    sa.UniqueConstraint("tenant", "open_key", name="uq_alerts_open_key"),
    sa.Index("ix_alerts_tenant_status", "tenant", "status", "raised_ms"),
    sa.Index("ix_alerts_tenant_raised", "tenant", "raised_ms"),
)

#: Every change of an alert, in order: the timeline its state is derived from.
alert_events = sa.Table(
    "alert_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column(
        "alert_id", sa.Integer, sa.ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Index("ix_alert_events_alert", "alert_id", "id"),
)

#: Propagation up the asset tree: one row per (alert, node above its device), so an
#: asset or a site sees the alerts of everything under it with one indexed lookup.
alert_scopes = sa.Table(
    "alert_scopes",
    metadata,
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("node", sa.String(128), nullable=False),
    sa.Column(
        "alert_id", sa.Integer, sa.ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False
    ),
    sa.PrimaryKeyConstraint("tenant", "node", "alert_id", name="pk_alert_scopes"),
)

#: Operator feedback as training labels: verdict, cause, the readings window, lineage.
alert_labels = sa.Table(
    "alert_labels",
    metadata,
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
    sa.Index("ix_alert_labels_tenant", "tenant", "labelled_ms"),
)

#: Notifications no channel accepted after every retry, kept for an operator to see.
notification_dead_letters = sa.Table(
    "notification_dead_letters",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("channel", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("alert_id", sa.Integer, nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Index("ix_dead_letters_tenant", "tenant", "created_ms"),
)

#: Registered models: the routing policy between versions and the promotion lock.
ml_models = sa.Table(
    "ml_models",
    metadata,
    sa.Column("tenant", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("routing", sa.JSON, nullable=False),
    # Set while a promotion runs (its start time), so a second one is refused.
    sa.Column("promoting_ms", sa.BigInteger, nullable=True),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
)

#: Model versions: the artifact by sha256, signature, metrics, card, lineage, stage.
ml_versions = sa.Table(
    "ml_versions",
    metadata,
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

#: Every stage change of a version, in order: what rollback reads.
ml_stage_events = sa.Table(
    "ml_stage_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("from_stage", sa.String(16), nullable=True),
    sa.Column("to_stage", sa.String(16), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Index("ix_ml_stage_events_model", "tenant", "name", "id"),
)

#: The prediction log, one row per version per served batch: every prediction's inputs
#: digest (16 bytes each) and score (float32 each) packed in order, so two versions can
#: be compared on the same traffic, at a write cost per batch rather than per row.
ml_prediction_batches = sa.Table(
    "ml_prediction_batches",
    metadata,
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
    sa.Index("ix_ml_prediction_batches_model", "tenant", "name", "at_ms"),
)

#: Every saved version of every flow; ``deployed`` marks the one whose rules run.
flow_versions = sa.Table(
    "flow_versions",
    metadata,
    sa.Column("tenant", sa.String(64), primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("definition", sa.JSON, nullable=False),
    sa.Column("deployed", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
)

#: Rule engine checkpoints: one msgspec-JSON :class:`SeriesState` per (rule, device).
rule_state = sa.Table(
    "rule_state",
    metadata,
    sa.Column("tenant", sa.String(64), primary_key=True),
    sa.Column("rule", sa.String(128), primary_key=True),
    sa.Column("device", sa.String(128), primary_key=True),
    sa.Column("state", sa.LargeBinary, nullable=False),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
)

#: Rule actions (webhooks) that failed every retry, kept for an operator to see.
rule_dead_letters = sa.Table(
    "rule_dead_letters",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("rule", sa.String(128), nullable=False),
    sa.Column("action", sa.String(512), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Index("ix_rule_dead_letters_tenant", "tenant", "created_ms"),
)

quarantine = sa.Table(
    "quarantine",
    metadata,
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
    sa.Column("contract", sa.String(160), nullable=True),
    sa.Column("replayed_ms", sa.BigInteger, nullable=True),
    sa.Index("ix_quarantine_received", "received_ms"),
)

#: Device model versions imported from model files (the built-ins are not stored).
device_models = sa.Table(
    "device_models",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("version", sa.String(64), primary_key=True),
    sa.Column("format", sa.String(16), nullable=False),
    sa.Column("definition", sa.JSON, nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("password_hash", sa.String(256), nullable=False),
    sa.Column("must_change", sa.Boolean, nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    # Set for a user limited to one site of its tenant (a contractor); NULL: the whole tenant.
    sa.Column("site", sa.String(128), nullable=True),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("user", sa.String(64), sa.ForeignKey("users.name"), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("expires_ms", sa.BigInteger, nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
)

#: The semantic model: the asset tree of each tenant, every node typed by a Brick class,
#: points bound to a (device, metric) series.
semantic_nodes = sa.Table(
    "semantic_nodes",
    metadata,
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
    sa.Index("ix_semantic_nodes_parent", "tenant", "parent"),
)

#: Brick relations beside the tree (feeds, a second hasLocation).
semantic_relations = sa.Table(
    "semantic_relations",
    metadata,
    sa.Column("tenant", sa.String(64), primary_key=True),
    sa.Column("subject", sa.String(128), primary_key=True),
    sa.Column("predicate", sa.String(32), primary_key=True),
    sa.Column("object", sa.String(128), primary_key=True),
)

#: The raw message archive: each ingest batch's accepted messages, compressed together.
archive_segments = sa.Table(
    "archive_segments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("first_received_ms", sa.BigInteger, nullable=False),
    sa.Column("last_received_ms", sa.BigInteger, nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("codec", sa.String(16), nullable=False),
    sa.Column("raw_bytes", sa.Integer, nullable=False),
    sa.Column("blob", sa.LargeBinary, nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Index("ix_archive_segments_received", "last_received_ms"),
)

#: One row per archived message: where it is, whose it is, what it became (lineage).
#: Clustered on (segment, position) so retention deletes a contiguous range.
archive_messages = sa.Table(
    "archive_messages",
    metadata,
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
    sa.Index("ix_archive_messages_id", "message_id", unique=True),
    sa.Index("ix_archive_messages_device", "tenant", "device", "ts_min"),
    sqlite_with_rowid=False,
)

#: Dashboard sessions, stored by the digest of the cookie, with their CSRF token.
sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("user", sa.String(64), sa.ForeignKey("users.name"), nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("expires_ms", sa.BigInteger, nullable=False),
    sa.Column("last_seen_ms", sa.BigInteger, nullable=False),
    sa.Column("client", sa.String(64), nullable=False, server_default=""),
    sa.Index("ix_sessions_user", "user"),
)

log = logging.getLogger(__name__)
_MIGRATIONS = Path(__file__).with_name("migrations")


def row_dict(row: sa.RowMapping) -> dict[str, Any]:
    """A row as a plain dict; SQLAlchemy's keys are ``str`` subclasses that msgspec
    (rightly) refuses as object keys."""
    return {str(key): value for key, value in row.items()}


def _alembic_config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def migrate(engine: sa.Engine) -> str:
    """Bring the schema to the newest revision and return it.

    Safe to run at every start: a database already at the head is left alone.
    """
    with engine.begin() as connection:
        config = _alembic_config(connection)
        before = MigrationContext.configure(connection).get_current_revision()
        command.upgrade(config, "head")
        head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    if before != head:
        log.info("metadata schema upgraded from %s to %s", before or "empty", head)
    return head


def _check_known(engine: sa.Engine) -> None:
    with engine.connect() as connection:
        config = _alembic_config(connection)
        scripts = ScriptDirectory.from_config(config)
        known = {rev.revision for rev in scripts.walk_revisions()}
        for revision in MigrationContext.configure(connection).get_current_heads():
            if revision not in known:
                raise SchemaError(
                    f"the database is at schema revision {revision!r}, which this version "
                    "of Trellis does not know (written by a newer release?); upgrade "
                    "Trellis or restore a backup, nothing was changed"
                )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def open_metadata(url: str) -> sa.Engine:
    """An engine on ``url`` whose schema is checked and migrated to the head."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres"):
        url = "postgresql+psycopg://" + rest  # psycopg 3 (the postgres extra), not psycopg2
    # SQLite connections are cheap to keep but not to open (four pragmas, WAL): a pool
    # as large as the API's thread pool (40) stops the churn of overflow connections
    # that were opened and closed on every request under load.
    pooled = url.startswith("sqlite:///") and ":memory:" not in url
    engine = sa.create_engine(url, **({"pool_size": 40, "max_overflow": 20} if pooled else {}))
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    _check_known(engine)
    migrate(engine)
    return engine
