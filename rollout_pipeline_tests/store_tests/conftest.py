"""Store-test fixtures."""

import pytest
import sqlalchemy as sa

from rollout_pipeline.store.engine import make_engine

READER = "rp_log_reader"


@pytest.fixture
def reader_engine(pg_url):
    """An engine whose sessions run as a role that may read the log tables but owns nothing.

    Such a role may not ANALYZE a day partition, so what it reads keeps whatever
    statistics the partition has (none, for a day just written).
    """
    owner = make_engine(pg_url)
    with owner.begin() as conn:
        conn.execute(sa.text(f"DROP ROLE IF EXISTS {READER}"))
        conn.execute(sa.text(f"CREATE ROLE {READER}"))
        conn.execute(sa.text(f"GRANT SELECT ON prediction_log, feedback TO {READER}"))
    engine = make_engine(pg_url, connect_args={"options": f"-c role={READER}"})
    try:
        yield engine
    finally:
        engine.dispose()
        with owner.begin() as conn:
            conn.execute(sa.text(f"REVOKE ALL ON prediction_log, feedback FROM {READER}"))
            conn.execute(sa.text(f"DROP ROLE {READER}"))
        owner.dispose()
