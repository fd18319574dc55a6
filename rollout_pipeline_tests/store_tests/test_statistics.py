"""A day just loaded gets statistics (an explicit step before collect), so its queries are planned for its real size."""

import datetime as dt
import logging

import sqlalchemy as sa

from rollout_pipeline.domain.records import PredictionRow
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.logs import write_predictions
from rollout_pipeline.store.partitions import analyze_stale_day
from rollout_pipeline.store.summary import collect_day
from rollout_pipeline_tests.store_tests.conftest import READER

DAY = dt.date(2030, 1, 15)
PARTITION = "prediction_log_p20300115"


def _write(engine, start: int, n: int) -> None:
    t0 = dt.datetime(2030, 1, 15, tzinfo=dt.UTC)
    write_predictions(engine, [
        PredictionRow(f"c{i:07d}", t0 + dt.timedelta(seconds=i % 86_000), "m", "v1" if i % 2 else "v2", bool(i % 2),
                      f"u{i % 97}", 1.0 + i % 50, "ok", float(i % 1000), None)
        for i in range(start, start + n)])


def _statistics(engine) -> tuple[float, int]:
    """What the planner knows of the day: reltuples (-1: never analyzed) and pg_stats columns."""
    with engine.connect() as conn:
        reltuples = conn.execute(sa.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:n)"),
                                 {"n": PARTITION}).scalar_one()
        columns = conn.execute(sa.text("SELECT count(*) FROM pg_stats WHERE tablename = :n"),
                               {"n": PARTITION}).scalar_one()
    return reltuples, columns


def test_a_day_just_loaded_is_analyzed_once_and_again_when_it_has_grown(pg_url, caplog):
    engine = make_engine(pg_url)
    _write(engine, 0, 4_000)
    with engine.begin() as conn:  # autovacuum must not do it for us meanwhile (it may be on elsewhere)
        conn.execute(sa.text(f"ALTER TABLE {PARTITION} SET (autovacuum_enabled = false)"))
    assert _statistics(engine) == (-1, 0)

    with caplog.at_level(logging.INFO, logger="rollout_pipeline.store.partitions"):
        outcome = analyze_stale_day(engine, "prediction_log", DAY)
    assert outcome.startswith(f"analyzed {PARTITION} (no statistics yet) in ")
    assert outcome in caplog.text
    reltuples, columns = _statistics(engine)
    assert reltuples == 4_000 and columns > 5

    assert analyze_stale_day(engine, "prediction_log", DAY) is None  # fresh: not again
    _write(engine, 4_000, 4_000)
    assert analyze_stale_day(engine, "prediction_log", DAY) is None  # grown 2x: not yet stale
    _write(engine, 8_000, 8_000)
    outcome = analyze_stale_day(engine, "prediction_log", DAY)
    assert outcome and "statistics taken at" in outcome
    assert _statistics(engine)[0] == 16_000

    assert analyze_stale_day(engine, "prediction_log", DAY + dt.timedelta(days=400)) is None  # no such partition
    engine.dispose()


def test_collect_only_reads_and_the_explicit_step_gives_the_day_statistics(pg_url):
    """The analysis runs ``analyze_stale_day`` as a step of its own before collect; collect has no side effect."""
    engine = make_engine(pg_url)
    _write(engine, 0, 2_000)
    with engine.begin() as conn:
        conn.execute(sa.text(f"ALTER TABLE {PARTITION} SET (autovacuum_enabled = false)"))
    with engine.connect() as conn:
        unanalyzed = collect_day(conn, "m", DAY, "v1", "v2")
    assert _statistics(engine) == (-1, 0)  # collect read the day and left it as it was
    assert analyze_stale_day(engine, "prediction_log", DAY).startswith(f"analyzed {PARTITION} (no statistics yet)")
    assert _statistics(engine)[0] == 2_000
    with engine.connect() as conn:
        analyzed = collect_day(conn, "m", DAY, "v1", "v2")
    assert analyzed.total_rows == unanalyzed.total_rows == 2_000
    assert (analyzed.variants, analyzed.sample) == (unanalyzed.variants, unanalyzed.sample)  # plans differ, results not
    engine.dispose()


def test_a_role_that_does_not_own_the_day_says_so_and_reads_it_anyway(pg_url, reader_engine, caplog):
    engine = make_engine(pg_url)
    _write(engine, 0, 1_000)
    with caplog.at_level(logging.WARNING, logger="rollout_pipeline.store.partitions"):
        outcome = analyze_stale_day(reader_engine, "prediction_log", DAY)
        with reader_engine.connect() as conn:
            assert conn.execute(sa.text("SELECT current_user")).scalar_one() == READER
            summary = collect_day(conn, "m", DAY, "v1", "v2")
    assert outcome == (f"{PARTITION} has no statistics yet and this role does not own it: "
                       "the day is read without fresh statistics")
    assert outcome in caplog.text
    assert summary.total_rows == 1_000
    assert _statistics(engine)[0] == -1
    engine.dispose()
