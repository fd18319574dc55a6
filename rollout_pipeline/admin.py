"""The database as the operator's commands open it: at this version's schema, or migrated to it (``init-db``).

No Dagster here. Errors are the store's own (``DatabaseUrlError``, ``SchemaNotCurrent``,
``SchemaRevisionError``, SQLAlchemy's): each surface words them for its users.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from rollout_pipeline.config import load_settings
from rollout_pipeline.store.engine import is_postgres, make_engine
from rollout_pipeline.store.migrate import MigrationResult, require_current_schema, upgrade
from rollout_pipeline.store.partitions import ensure_partitions_around
from rollout_pipeline.store.roles import grant_roles


class RolesRefused(ValueError):
    """Roles asked of a database that has none (the embedded SQLite file)."""


def open_engine(check_schema: bool = True) -> sa.Engine:
    """The engine of ROLLOUT_DATABASE_URL; unless ``check_schema`` is False (init-db), ``SchemaNotCurrent`` when
    the database is not at this version's schema (never migrated: "run `rollout-pipeline init-db`")."""
    engine = make_engine(load_settings().database_url)
    if check_schema:
        try:
            with engine.connect() as connection:
                require_current_schema(connection)
        except Exception:
            engine.dispose()
            raise
    return engine


@dataclass(frozen=True)
class Initialized:
    """What ``init-db`` did: the migration, the day partitions created (PostgreSQL), whether roles were granted."""

    migration: MigrationResult
    partitions: list
    granted: bool


def init_database(engine: sa.Engine, *, partition_days_ahead: int, roles: bool) -> Initialized:
    """Migrate to the newest schema, create PostgreSQL's day partitions around today and, with ``roles``, grant
    the least-privilege roles (docs/roles.sql); ``RolesRefused`` on SQLite, before anything is done."""
    if roles and not is_postgres(engine):
        raise RolesRefused("--grant-roles: roles exist in PostgreSQL only (the embedded SQLite file has none)")
    result = upgrade(engine)
    created = (ensure_partitions_around(engine, dt.datetime.now(dt.UTC).date(), days_ahead=partition_days_ahead)
               if is_postgres(engine) else [])
    if roles:
        grant_roles(engine)
    return Initialized(result, created, roles)
