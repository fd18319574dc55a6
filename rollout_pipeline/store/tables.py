"""SQLAlchemy Core tables: the log contract and the pipeline's own tables.

The DDL lives in the Alembic migrations (PostgreSQL partitions the two log
tables by day, which Core metadata cannot express); a test checks that these
definitions and the migrated schema agree column by column.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# --- the log contract: serving systems write these -------------------------------------

prediction_log = sa.Table(
    "prediction_log",
    metadata,
    sa.Column("correlation_id", sa.Text, nullable=True),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("variant", sa.Text, nullable=False),
    sa.Column("served", sa.Boolean, nullable=False),
    sa.Column("entity_id", sa.Text, nullable=True),
    sa.Column("latency_ms", sa.Float(precision=53), nullable=True),
    sa.Column("status", sa.Text, nullable=True),
    sa.Column("prediction", sa.Float(precision=53), nullable=True),
    sa.Column("label", sa.Text, nullable=True),
    # Not part of the contract: the hash sample's bucket of the correlation id (0..9999, store.buckets), written by
    # store.logs; NULL in rows written before migration 0008 or by other writers, which are hashed when read.
    sa.Column("sample_bucket", sa.SmallInteger, nullable=True),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("correlation_id", sa.Text, nullable=True),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("value", sa.Float(precision=53), nullable=True),
    sa.Column("label", sa.Text, nullable=True),
)

# --- ours: created and owned by the pipeline ---------------------------------------------

rollouts = sa.Table(
    "rollouts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("stable_variant", sa.Text, nullable=False),
    sa.Column("candidate_variant", sa.Text, nullable=False),
    sa.Column("stage", sa.Text, nullable=False),
    sa.Column("canary_percent", sa.Integer, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("policy", sa.JSON, nullable=False),
    sa.Column("policy_version", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

routing_config = sa.Table(
    "routing_config",
    metadata,
    sa.Column("model_name", sa.Text, primary_key=True),
    sa.Column("variant", sa.Text, primary_key=True),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("traffic_percent", sa.Float(precision=53), nullable=False),
    sa.Column("shadow", sa.Boolean, nullable=False),
    sa.Column("inactive_since", sa.Date, nullable=True),
)

routing_version = sa.Table(
    "routing_version",
    metadata,
    sa.Column("model_name", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

routing_history = sa.Table(
    "routing_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("decision_id", sa.Integer, sa.ForeignKey("decisions.id"), nullable=True),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

decisions = sa.Table(
    "decisions",
    metadata,
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
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("approval", sa.Text, nullable=True),  # NULL: none needed; pending | approved | rejected | expired
)

teardowns = sa.Table(
    "teardowns",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("variant", sa.Text, nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("inactive_since", sa.Date, nullable=True),
    sa.Column("status", sa.Text, nullable=False),  # done | failed
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("run_id", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

day_evidence = sa.Table(
    "day_evidence",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("rollout_id", sa.Integer, sa.ForeignKey("rollouts.id"), nullable=False),
    sa.Column("stage", sa.Text, nullable=False),
    sa.Column("run_id", sa.Text, nullable=True),
    sa.Column("summary", sa.JSON, nullable=False),  # domain.summary.DaySummary, via domain.codec
    sa.Column("validations", sa.JSON, nullable=False),  # {suite name: validation.suites.SuiteResult}
    sa.Column("evaluation", sa.JSON, nullable=True),  # domain.evaluate.Evaluation, once judged
    sa.Column("outcomes", sa.Integer, nullable=True),  # actual outcomes the summary saw (NULL: written before 0005)
    sa.Column("superseded_by", sa.Integer, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # The rollout's state when the day was collected (with ``stage``); NULL in rows of earlier versions.
    sa.Column("canary_percent", sa.Integer, nullable=True),
    sa.Column("routing_version", sa.Integer, nullable=True),
)

LOG_TABLES = ("prediction_log", "feedback")
# Columns that identify one logged answer (a request's correlation id is random, and a router
# logs one row per variant and request) or one feedback event. The log writer's exactly-once
# check compares them (store.serving_queries), and the serving role may read only them (store.roles).
IDENTITY_COLUMNS = {
    "prediction_log": ("model_name", "ts", "correlation_id", "variant", "served"),
    "feedback": ("model_name", "ts", "correlation_id", "kind"),
}


def insert_superseding(connection: sa.Connection, table: sa.Table, previous: int | None, values: dict) -> int:
    """Insert the new live row of a (model, day) of ``decisions`` or ``day_evidence``; its id.

    The live row is the one with ``superseded_by`` NULL, unique per (model, day). The previous live row
    (``previous``) first frees that slot (``superseded_by = -1``), then points at the new row.
    """
    if previous is not None:
        connection.execute(table.update().where(table.c.id == previous).values(superseded_by=-1))
    new_id = connection.execute(table.insert().values(**values).returning(table.c.id)).scalar_one()
    if previous is not None:
        connection.execute(table.update().where(table.c.id == previous).values(superseded_by=new_id))
    return new_id
