"""Day partitions on PostgreSQL: created ahead, idempotent, and rows caught by the default move in."""

import datetime as dt

import sqlalchemy as sa

from rollout_pipeline.domain.records import PredictionRow
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.logs import write_predictions
from rollout_pipeline.store.partitions import ensure_day_partitions, ensure_partitions_around, existing_partitions

UTC = dt.UTC


def _rows_in(conn, relation: str) -> int:
    return conn.execute(sa.text(f"SELECT count(*) FROM ONLY {relation}")).scalar_one()


def test_partitions_are_created_ahead_and_only_once(pg_url):
    engine = make_engine(pg_url)
    created = ensure_partitions_around(engine, dt.date(2031, 5, 10), days_back=1, days_ahead=2)
    assert sorted(created) == sorted(
        f"{t}_p203105{d:02d}" for t in ("prediction_log", "feedback") for d in (9, 10, 11, 12)
    )
    assert ensure_partitions_around(engine, dt.date(2031, 5, 10), days_back=1, days_ahead=2) == []
    engine.dispose()


def test_writer_creates_the_partition_of_the_days_it_writes(pg_url):
    engine = make_engine(pg_url)
    row = PredictionRow("c1", dt.datetime(2032, 2, 29, 23, 59, 59, tzinfo=UTC), "m", "v1", True, latency_ms=1.0)
    write_predictions(engine, [row])
    with engine.connect() as conn:
        assert "prediction_log_p20320229" in existing_partitions(conn, "prediction_log")
        assert _rows_in(conn, "prediction_log_p20320229") == 1
        assert _rows_in(conn, "prediction_log_default") == 0
    engine.dispose()


def test_rows_in_the_default_partition_move_into_a_new_day_partition(pg_url):
    engine = make_engine(pg_url)
    ts = dt.datetime(2033, 7, 1, 12, tzinfo=UTC)
    # Bypass the writer (as a serving role without DDL rights would): the default catches the row.
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO prediction_log (correlation_id, ts, model_name, variant, served) "
                    "VALUES ('x', :ts, 'm', 'v', true)"),
            {"ts": ts},
        )
        assert _rows_in(conn, "prediction_log_default") == 1
    assert ensure_day_partitions(engine, [ts.date()], ["prediction_log"]) == ["prediction_log_p20330701"]
    with engine.connect() as conn:
        assert _rows_in(conn, "prediction_log_default") == 0
        assert _rows_in(conn, "prediction_log_p20330701") == 1
        assert conn.execute(sa.text("SELECT correlation_id FROM prediction_log")).scalar_one() == "x"
    engine.dispose()


def test_later_days_of_a_long_batch_end_in_their_own_partitions(pg_url):
    engine = make_engine(pg_url)
    start = dt.datetime(2034, 1, 1, tzinfo=UTC)
    rows = [PredictionRow(f"c{i}", start + dt.timedelta(hours=i), "m", "v", True, latency_ms=1.0) for i in range(72)]
    write_predictions(engine, rows, chunk_rows=10)  # days 2 and 3 appear after the first chunk
    with engine.connect() as conn:
        assert _rows_in(conn, "prediction_log_default") == 0
        for day in ("20340101", "20340102", "20340103"):
            assert _rows_in(conn, f"prediction_log_p{day}") == 24
    engine.dispose()
