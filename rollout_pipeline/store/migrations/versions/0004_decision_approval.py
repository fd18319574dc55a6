"""Approval gates: a decision's approval state (NULL: none needed; pending, approved, rejected, expired).

A nightly promotion into a step of the policy's ``require_approval_for`` is stored
``pending`` and not applied; the routing sensor skips it until a person approves.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (no table rebuild on SQLite, which would have to re-create the partial unique index).
    op.add_column("decisions", sa.Column("approval", sa.Text, nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.create_check_constraint(
            "ck_decisions_approval", "decisions",
            "approval IS NULL OR approval IN ('pending', 'approved', 'rejected', 'expired')")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("ck_decisions_approval", "decisions", type_="check")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("approval")
