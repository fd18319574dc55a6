"""Alembic environment: always run programmatically with a connection handed in.

``rollout_pipeline.store.migrate`` builds the Alembic config and passes the
connection through ``config.attributes["connection"]``; there is no alembic.ini.
"""

from alembic import context

from rollout_pipeline.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
