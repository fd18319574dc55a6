"""Shared fixtures: an isolated database per test, on PostgreSQL and on SQLite.

PostgreSQL is real (see ``postgres.py`` for how it is found or started). When
none can be had, PostgreSQL tests are skipped with the reason — except under
``CI=true``, where that is a failure.
"""

from __future__ import annotations


import pytest
import sqlalchemy as sa

from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.migrate import upgrade
from rollout_pipeline_tests import postgres
from rollout_pipeline_tests.extras import IN_CI



@pytest.fixture(scope="session", autouse=True)
def _local_state(tmp_path_factory):
    """Local state a test leaves (reports, spill files) goes to a temporary folder, never to ./.state;
    tests that need their own set ROLLOUT_STATE_DIR themselves."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROLLOUT_STATE_DIR", str(tmp_path_factory.mktemp("state")))
        yield


@pytest.fixture(scope="session")
def pg_server():
    """URL of a PostgreSQL server's maintenance database for the whole session."""
    try:
        with postgres.postgres_server() as url:
            yield url
    except postgres.NoPostgres as exc:
        if IN_CI:
            pytest.fail(f"CI=true and no PostgreSQL: {exc}", pytrace=False)
        pytest.skip(f"no PostgreSQL: {exc}")


@pytest.fixture(scope="session")
def pg_template(pg_server):
    """Name of a database migrated to head, used as the template of each test's database."""
    url = postgres.create_database(pg_server, prefix="rp_template")
    engine = make_engine(url, poolclass=sa.pool.NullPool)
    upgrade(engine)
    engine.dispose()
    name = sa.engine.make_url(url).database
    yield name
    postgres.drop_database(pg_server, url)


@pytest.fixture
def pg_url(pg_server, pg_template):
    """URL of a fresh PostgreSQL database at the newest schema, dropped after the test."""
    url = postgres.create_database(pg_server, template=pg_template)
    yield url
    postgres.drop_database(pg_server, url)


@pytest.fixture
def empty_pg_url(pg_server):
    """URL of a fresh, empty PostgreSQL database (no schema), dropped after the test."""
    url = postgres.create_database(pg_server)
    yield url
    postgres.drop_database(pg_server, url)


@pytest.fixture
def sqlite_url(tmp_path):
    """URL of a fresh SQLite file at the newest schema."""
    url = f"sqlite:///{tmp_path / 'rollout.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request):
    """A fresh database at the newest schema, once per backend."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
def engine(db_url):
    """An Engine on ``db_url``, disposed after the test."""
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def spark():
    """One local Spark session (driver bound to 127.0.0.1, no UI) for the whole test session (under
    ``make test``'s two xdist workers, one per worker whose tests use it).

    ``make test`` installs pyspark (the ``spark`` extra) and Java (scripts/ensure-java); without
    them the Spark tests skip, saying why -- except under ``CI=true``, where that is a failure.
    Never stopped here: a Dagster run in the same process gets this session back (getOrCreate).
    """
    from rollout_pipeline.store.spark import SparkUnavailable, spark_session

    try:
        session = spark_session("local[2]")
    except SparkUnavailable as exc:
        if IN_CI:
            pytest.fail(f"CI=true and no Spark: {exc}", pytrace=False)
        pytest.skip(f"no Spark: {exc}")
    yield session

