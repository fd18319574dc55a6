"""The prediction log stores each row's sample bucket, so a day's hash sample is read by index (issue #23).

``sample_bucket`` is the bucket (0..9999) the day's hash sample compares with its
per-population threshold: the hash of the correlation id the database computed when the
sample was read (``store.buckets``), now computed once by the writer (``store.logs``).
Rows written before this migration, or by a serving system that writes the log contract
itself, keep NULL and are hashed when read, as before. A nullable ADD COLUMN without a
default is a catalog change on PostgreSQL (no rewrite of the partitions) and on SQLite.

The index (model_name, sample_bucket, ts) serves "this model's rows with a bucket below t":
on PostgreSQL each day partition gets its own (a day's sample is a range of it), and on
SQLite the ts in the key keeps other days' entries out of the table lookups. It is partial,
buckets below 1,000 only (``store.summary.INDEXED_BUCKETS``): that is every sample of a day
of more than 100,000 requests per population, and a tenth of the rows, so the writer updates
it for one row in ten (a random key: the dearest index to keep up); a smaller day's sample is
a tenth of the day or more, which a scan reads as cheaply. Creating it on a PostgreSQL
database that already holds days builds it on every partition (one pass over each).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("prediction_log", sa.Column("sample_bucket", sa.SmallInteger, nullable=True))
    indexed = sa.text("sample_bucket < 1000")  # store.summary.INDEXED_BUCKETS
    op.create_index("ix_prediction_log_model_bucket", "prediction_log", ["model_name", "sample_bucket", "ts"],
                    postgresql_where=indexed, sqlite_where=indexed)


def downgrade() -> None:
    op.drop_index("ix_prediction_log_model_bucket", table_name="prediction_log")
    with op.batch_alter_table("prediction_log") as batch:
        batch.drop_column("sample_bucket")
