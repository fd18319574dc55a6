"""Day evidence: what a day's analysis found (summary, validation results, evaluation), kept in the database.

One row per analysis run of a model's day; a newer analysis of the same day
supersedes the older row (``superseded_by``), so at most one row per model and
day is live and a run still finishing reads its own row, never a half-written one.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "day_evidence",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.Text, nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("rollout_id", sa.Integer, sa.ForeignKey("rollouts.id"), nullable=False),
        sa.Column("stage", sa.Text, nullable=False),
        sa.Column("run_id", sa.Text, nullable=True),
        sa.Column("summary", sa.JSON, nullable=False),
        sa.Column("validations", sa.JSON, nullable=False),
        sa.Column("evaluation", sa.JSON, nullable=True),
        sa.Column("superseded_by", sa.Integer, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    # One live analysis per model and day: a new one supersedes the old, it never doubles.
    op.create_index(
        "ux_day_evidence_live_day",
        "day_evidence",
        ["model_name", "day"],
        unique=True,
        postgresql_where=sa.text("superseded_by IS NULL"),
        sqlite_where=sa.text("superseded_by IS NULL"),
    )
    op.create_index("ix_day_evidence_run", "day_evidence", ["run_id"])


def downgrade() -> None:
    op.drop_table("day_evidence")
