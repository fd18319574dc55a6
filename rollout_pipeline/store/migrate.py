"""Schema migrations: Alembic, driven programmatically (no alembic.ini to keep in sync)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from rollout_pipeline.store.engine import redact

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class SchemaRevisionError(RuntimeError):
    """The database is at a schema revision this version of the code does not know."""


class SchemaNotCurrent(RuntimeError):
    """The database was never migrated, or to an older revision: the message says to run init-db."""


@dataclass(frozen=True)
class MigrationResult:
    """What a migration call did: the revision before and after (None = empty database)."""

    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


def _config(connection: sa.Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def head_revision() -> str:
    """The newest revision this code knows."""
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert head is not None
    return head


def current_revision(connection: sa.Connection) -> str | None:
    """The revision the database is at; None for a database never migrated."""
    return MigrationContext.configure(connection).get_current_revision()


def _check_known(revision: str | None) -> None:
    if revision is None:
        return
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    known = {rev.revision for rev in script.walk_revisions()}
    if revision not in known:
        raise SchemaRevisionError(
            f"the database is at schema revision {revision!r}, which this version of rollout-pipeline "
            f"does not know (its newest is {head_revision()!r}); it was probably migrated by a newer "
            "version. Nothing was changed: upgrade rollout-pipeline, or use a database of this version."
        )


def require_current_schema(connection: sa.Connection) -> None:
    """Refuse, before any work, a database not at this version's schema (one cheap query).

    Raises ``SchemaNotCurrent`` naming what to run for a database never migrated or migrated by an older
    version, ``SchemaRevisionError`` for one migrated by a newer version.
    """
    try:
        revision = current_revision(connection)
    except sa.exc.ProgrammingError as exc:  # a role granted before alembic_version was readable (docs/roles.sql)
        if getattr(exc.orig, "pgcode", None) != "42501":
            raise
        raise SchemaNotCurrent(f"the database {redact(connection.engine.url)} does not let {connection.engine.url.username} "
                               "read its schema revision (alembic_version): re-run docs/roles.sql "
                               "(`rollout-pipeline init-db --grant-roles` as the owner)") from None
    _check_known(revision)
    head = head_revision()
    if revision != head:
        state = "was never migrated" if revision is None else f"is at schema revision {revision!r}, not {head!r}"
        raise SchemaNotCurrent(f"the database {redact(connection.engine.url)} {state}: run `rollout-pipeline "
                               "init-db` (as the owner of its tables)")


def upgrade(engine: sa.Engine, target: str = "head") -> MigrationResult:
    """Migrate to ``target`` (default: head); a no-op when already there; refuses unknown revisions."""
    with engine.begin() as connection:
        before = current_revision(connection)
        _check_known(before)
        command.upgrade(_config(connection), target)
        after = current_revision(connection)
    return MigrationResult(before, after)


def downgrade(engine: sa.Engine, target: str = "base") -> MigrationResult:
    """Migrate down to ``target`` (default: base, i.e. drop everything this code created)."""
    with engine.begin() as connection:
        before = current_revision(connection)
        _check_known(before)
        command.downgrade(_config(connection), target)
        after = current_revision(connection)
    return MigrationResult(before, after)
