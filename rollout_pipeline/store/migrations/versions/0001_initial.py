"""Log contract tables (day-partitioned on PostgreSQL) and the pipeline's own tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_F = sa.Float(precision=53)


def _log_columns():
    return [
        sa.Column("correlation_id", sa.Text, nullable=True),
        sa.Column("ts", _TS, nullable=False),
        sa.Column("model_name", sa.Text, nullable=False),
        sa.Column("variant", sa.Text, nullable=False),
        sa.Column("served", sa.Boolean, nullable=False),
        sa.Column("entity_id", sa.Text, nullable=True),
        sa.Column("latency_ms", _F, nullable=True),
        sa.Column("status", sa.Text, nullable=True),
        sa.Column("prediction", _F, nullable=True),
        sa.Column("label", sa.Text, nullable=True),
    ]


def _feedback_columns():
    return [
        sa.Column("correlation_id", sa.Text, nullable=True),
        sa.Column("ts", _TS, nullable=False),
        sa.Column("model_name", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("value", _F, nullable=True),
        sa.Column("label", sa.Text, nullable=True),
    ]


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, columns in (("prediction_log", _log_columns()), ("feedback", _feedback_columns())):
        if postgres:
            # Range-partitioned by day; day partitions are created ahead of time by
            # store.partitions, and the default partition keeps any out-of-range row.
            op.create_table(name, *columns, postgresql_partition_by="RANGE (ts)")
            op.execute(f"CREATE TABLE {name}_default PARTITION OF {name} DEFAULT")
        else:
            op.create_table(name, *columns)
        op.create_index(f"ix_{name}_model_ts", name, ["model_name", "ts"])
    # Feedback is joined to predictions by correlation id; on SQLite the prediction
    # log needs one too, or its planner picks an O(n^2) plan for shadow pairing.
    op.create_index("ix_feedback_correlation_id", "feedback", ["correlation_id"])
    if not postgres:
        op.create_index("ix_prediction_log_correlation_id", "prediction_log", ["correlation_id"])

    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.Text, nullable=False),
        sa.Column("stable_variant", sa.Text, nullable=False),
        sa.Column("candidate_variant", sa.Text, nullable=False),
        sa.Column("stage", sa.Text, nullable=False),
        sa.Column("canary_percent", sa.Integer, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("policy", sa.JSON, nullable=False),
        sa.Column("policy_version", sa.Text, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.CheckConstraint("stage IN ('shadow', 'canary', 'production', 'rolled_back')", name="ck_rollouts_stage"),
        sa.CheckConstraint("canary_percent BETWEEN 0 AND 100", name="ck_rollouts_percent"),
    )
    # At most one active rollout per model.
    op.create_index(
        "ux_rollouts_active_model",
        "rollouts",
        ["model_name"],
        unique=True,
        postgresql_where=sa.text("active"),
        sqlite_where=sa.text("active"),
    )
    op.create_table(
        "routing_config",
        sa.Column("model_name", sa.Text, primary_key=True),
        sa.Column("variant", sa.Text, primary_key=True),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("traffic_percent", _F, nullable=False),
        sa.Column("shadow", sa.Boolean, nullable=False),
        sa.Column("inactive_since", sa.Date, nullable=True),
        sa.CheckConstraint("role IN ('stable', 'candidate', 'inactive', 'retired')", name="ck_routing_role"),
        sa.CheckConstraint("traffic_percent >= 0 AND traffic_percent <= 100", name="ck_routing_percent"),
    )
    op.create_table(
        "routing_version",
        sa.Column("model_name", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rollout_id", sa.Integer, sa.ForeignKey("rollouts.id"), nullable=False),
        sa.Column("model_name", sa.Text, nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("forced", sa.Boolean, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("stage_before", sa.Text, nullable=False),
        sa.Column("percent_before", sa.Integer, nullable=False),
        sa.Column("stage_after", sa.Text, nullable=False),
        sa.Column("percent_after", sa.Integer, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("policy_version", sa.Text, nullable=False),
        sa.Column("run_id", sa.Text, nullable=True),
        sa.Column("superseded_by", sa.Integer, nullable=True),
        sa.Column("applied_at", _TS, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.CheckConstraint("action IN ('promote', 'hold', 'rollback')", name="ck_decisions_action"),
    )
    # One live decision per model and day: a re-run supersedes, it never doubles.
    op.create_index(
        "ux_decisions_live_day",
        "decisions",
        ["model_name", "day"],
        unique=True,
        postgresql_where=sa.text("superseded_by IS NULL"),
        sqlite_where=sa.text("superseded_by IS NULL"),
    )
    op.create_table(
        "routing_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("decision_id", sa.Integer, sa.ForeignKey("decisions.id"), nullable=True),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.UniqueConstraint("model_name", "version", name="uq_routing_history_version"),
    )


def downgrade() -> None:
    for name in ("routing_history", "decisions", "routing_version", "routing_config", "rollouts"):
        op.drop_table(name)
    # Dropping a partitioned parent drops its partitions with it.
    op.drop_table("feedback")
    op.drop_table("prediction_log")
