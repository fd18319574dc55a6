"""The day's evidence counts the actual outcomes it saw, so "no outcome ever arrived for this rollout" is one query.

A model whose service sends no outcomes is not short of data: its accuracy is listed as
"no outcomes for this model" and the other gates decide. Whether any outcome ever
arrived for a rollout is answered from its evidence rows, whichever log source (the
database or the lake) they were read from. Rows written before this column are NULL
(unknown): they count as no outcome.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("day_evidence", sa.Column("outcomes", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("day_evidence") as batch:
        batch.drop_column("outcomes")
