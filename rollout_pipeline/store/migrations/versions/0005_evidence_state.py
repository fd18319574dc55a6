"""Day evidence carries the rollout's state it was collected under: the canary share and the routing version
(the stage was there already).

A decision is made on the state the rollout is in when it commits: evidence collected under another state
(an approval or a rollback applied while the night's analysis ran) is refused as a concurrent change
(``decisions.decide_in``). Rows of earlier versions keep NULL: only their stage is compared.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs (no table rebuild on SQLite, which would have to re-create the partial unique index).
    op.add_column("day_evidence", sa.Column("canary_percent", sa.Integer, nullable=True))
    op.add_column("day_evidence", sa.Column("routing_version", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("day_evidence") as batch:
        batch.drop_column("routing_version")
        batch.drop_column("canary_percent")
