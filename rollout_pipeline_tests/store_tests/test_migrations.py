"""Alembic migrations up, down and up again on both backends; unknown revisions refused."""

import pytest
import sqlalchemy as sa

from rollout_pipeline.store import tables
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.migrate import SchemaRevisionError, current_revision, downgrade, head_revision, upgrade


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}" if request.param == "sqlite" else request.getfixturevalue("empty_pg_url")
    eng = make_engine(url)
    yield eng
    eng.dispose()


def _tables(engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_creates_every_table_and_is_idempotent(empty_engine):
    first = upgrade(empty_engine)
    assert (first.before, first.after, first.changed) == (None, head_revision(), True)
    assert set(tables.metadata.tables) <= _tables(empty_engine)
    second = upgrade(empty_engine)
    assert (second.before, second.after, second.changed) == (head_revision(), head_revision(), False)


def test_down_then_up_again(empty_engine):
    upgrade(empty_engine)
    down = downgrade(empty_engine)
    assert down.after is None
    assert not (set(tables.metadata.tables) & _tables(empty_engine))
    assert upgrade(empty_engine).after == head_revision()


def test_migrated_columns_match_core_tables(empty_engine):
    upgrade(empty_engine)
    inspector = sa.inspect(empty_engine)
    for name, table in tables.metadata.tables.items():
        migrated = {c["name"]: c["nullable"] for c in inspector.get_columns(name)}
        declared = {c.name: c.nullable for c in table.columns}
        assert migrated == declared, name


def test_unknown_revision_is_refused_and_nothing_changes(empty_engine):
    upgrade(empty_engine)
    with empty_engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    before = _tables(empty_engine)
    with pytest.raises(SchemaRevisionError, match="9999_from_the_future"):
        upgrade(empty_engine)
    with empty_engine.connect() as conn:
        assert current_revision(conn) == "9999_from_the_future"
    assert _tables(empty_engine) == before


def test_postgres_log_tables_are_partitioned_with_a_default(empty_pg_url):
    eng = make_engine(empty_pg_url)
    upgrade(eng)
    with eng.connect() as conn:
        strategies = dict(
            conn.execute(
                sa.text(
                    "SELECT c.relname, p.partstrat FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid"
                )
            ).all()
        )
        defaults = set(
            conn.execute(
                sa.text("SELECT c.relname FROM pg_class c WHERE c.relispartition AND c.relname LIKE '%\\_default'")
            ).scalars()
        )
    eng.dispose()
    assert strategies == {"prediction_log": "r", "feedback": "r"}
    assert defaults == {"prediction_log_default", "feedback_default"}
