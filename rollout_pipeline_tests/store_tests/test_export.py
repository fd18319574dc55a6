"""export_days round trip, on PostgreSQL and SQLite: a day of both log tables read back from the lake equals the
database's rows of that day; re-exporting replaces instead of doubling and leaves other days alone; a per-model
export keeps the other models' rows; a failed export changes nothing; memory follows the batch, not the day."""

from __future__ import annotations

import collections
import datetime as dt
import math
import os
import tracemalloc

import pytest

from rollout_pipeline_tests.extras import need

need("pyarrow")
import pyarrow.dataset as ds  # noqa: E402

from rollout_pipeline.domain.records import FeedbackRow  # noqa: E402
from rollout_pipeline.store.engine import make_engine  # noqa: E402
from rollout_pipeline.store.export import NoLogTables, export_days  # noqa: E402
from rollout_pipeline.store.lake import COLUMNS, arrow_schema  # noqa: E402
from rollout_pipeline.store.logs import write_feedback, write_predictions  # noqa: E402
from rollout_pipeline.store.serving_queries import read_rows  # noqa: E402
from rollout_pipeline_tests.factories import log_day  # noqa: E402

UTC = dt.UTC
DAY = dt.date(2026, 3, 14)


def _value(v):
    if isinstance(v, dt.datetime):
        return (v.replace(tzinfo=UTC) if v.tzinfo is None else v).astimezone(UTC)
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    return v


def lake_rows(root, table, day=None):
    """The lake's visible rows of ``table`` (of one day folder, or all) as a multiset of contract tuples."""
    path = os.path.join(root, table) if day is None else os.path.join(root, table, f"day={day}")
    if not os.path.isdir(path):
        return collections.Counter()
    rows = ds.dataset(path, format="parquet", schema=arrow_schema(table)).to_table().to_pylist()
    return collections.Counter(tuple(_value(r[c]) for c in COLUMNS[table]) for r in rows)


def db_rows(engine, table, day, models=("m", "n")):
    lo = dt.datetime.combine(day, dt.time(), UTC)
    with engine.connect() as conn:
        return collections.Counter(tuple(_value(v) for v in row) for model in models
                                   for row in read_rows(conn, table, model, start=lo, end=lo + dt.timedelta(days=1)))


def feedback_for(predictions, every=3):
    """Feedback on some requests, arriving from minutes to ~40 hours later (so under the next day too)."""
    out = []
    for k, row in enumerate(predictions[::every]):
        delay = dt.timedelta(minutes=7 + (k * 997) % (40 * 60))
        out.append(FeedbackRow(row.correlation_id, row.ts + delay, row.model_name,
                               "actual" if k % 2 else "complaint", float(k % 5), "x" if k % 4 == 0 else None))
    return out


def fill(engine, days, requests=300):
    for offset, day in enumerate(days):
        for model in ("m", "n"):
            rows = log_day(model, day, "s", "c", requests=requests, seed=offset)
            write_predictions(engine, rows)
            write_feedback(engine, feedback_for(rows))


@pytest.fixture
def filled(engine):
    fill(engine, [DAY - dt.timedelta(days=1), DAY, DAY + dt.timedelta(days=1)])
    return engine


def test_a_days_rows_of_both_tables_round_trip(filled, tmp_path):
    result = export_days(filled, f"parquet://{tmp_path}", DAY)
    for table in ("prediction_log", "feedback"):
        expected = db_rows(filled, table, DAY)
        assert expected and lake_rows(tmp_path, table) == expected
        assert result.rows[table] == sum(expected.values())
    assert sorted(os.listdir(tmp_path / "prediction_log")) == [f"day={DAY}"]
    assert result.days == (DAY,) and len(result.files) == 2 and all(os.path.exists(f) for f in result.files)


def test_re_exporting_replaces_the_day_and_leaves_other_days_alone(filled, tmp_path):
    url = f"parquet://{tmp_path}"
    after = DAY + dt.timedelta(days=1)
    export_days(filled, url, DAY, after)
    other_files = sorted(os.listdir(tmp_path / "prediction_log" / f"day={after}"))
    other_rows = lake_rows(tmp_path, "prediction_log", after)

    extra = log_day("m", DAY, "s", "c", requests=5, seed=99)
    write_predictions(filled, [row._replace(correlation_id=f"late-{row.correlation_id}") for row in extra])
    export_days(filled, url, DAY)
    export_days(filled, url, DAY)
    assert lake_rows(tmp_path, "prediction_log", DAY) == db_rows(filled, "prediction_log", DAY)
    assert lake_rows(tmp_path, "feedback", DAY) == db_rows(filled, "feedback", DAY)
    assert sorted(os.listdir(tmp_path / "prediction_log" / f"day={after}")) == other_files
    assert lake_rows(tmp_path, "prediction_log", after) == other_rows


def test_a_day_spanning_export_holds_the_feedback_filed_under_each_day(filled, tmp_path):
    last = DAY + dt.timedelta(days=2)
    result = export_days(filled, f"parquet://{tmp_path}", DAY, last)
    assert result.days == (DAY, DAY + dt.timedelta(days=1), last)
    for k in range(3):
        day = DAY + dt.timedelta(days=k)
        assert lake_rows(tmp_path, "feedback", day) == db_rows(filled, "feedback", day)
    assert lake_rows(tmp_path, "feedback", DAY + dt.timedelta(days=1))  # feedback arriving the day after


def test_exporting_some_models_keeps_the_other_models_rows_in_the_lake(filled, tmp_path):
    url = f"parquet://{tmp_path}"
    export_days(filled, url, DAY)
    before = lake_rows(tmp_path, "prediction_log")
    extra = log_day("m", DAY, "s", "c", requests=4, seed=42)
    write_predictions(filled, [row._replace(correlation_id=f"more-{row.correlation_id}") for row in extra])
    result = export_days(filled, url, DAY, models=["m"])
    after = lake_rows(tmp_path, "prediction_log")
    assert after == db_rows(filled, "prediction_log", DAY)
    assert after - before == collections.Counter(tuple(_value(v) for v in row) for row in
                                                 [r._replace(correlation_id=f"more-{r.correlation_id}") for r in extra])
    assert result.kept["prediction_log"] == sum(1 for r in before if r[2] == "n")
    assert result.rows["prediction_log"] == sum(n for r, n in after.items() if r[2] == "m")


def test_a_failed_export_leaves_the_lake_as_it_was(filled, tmp_path):
    url = f"parquet://{tmp_path}"
    export_days(filled, url, DAY)
    before = {t: lake_rows(tmp_path, t) for t in ("prediction_log", "feedback")}

    def interrupted(table, day, rows):
        if table == "feedback":
            raise RuntimeError("connection lost")

    with pytest.raises(RuntimeError, match="connection lost"):
        export_days(filled, url, DAY, batch_rows=50, progress=interrupted)
    assert {t: lake_rows(tmp_path, t) for t in before} == before
    assert not [f for _, _, names in os.walk(tmp_path) for f in names if f.startswith(".")]


def test_progress_counts_rows_so_far_a_batch_at_a_time(filled, tmp_path):
    seen = []
    export_days(filled, f"parquet://{tmp_path}", DAY, batch_rows=100,
                progress=lambda table, day, rows: seen.append((table, day, rows)))
    total = sum(db_rows(filled, "prediction_log", DAY).values())
    counts = [rows for table, _, rows in seen if table == "prediction_log"]
    assert counts == sorted(counts) and counts[-1] == total and len(counts) >= total // 100


def test_memory_follows_the_batch_not_the_day(engine, tmp_path):
    fill(engine, [DAY], requests=6_000)

    def peak(batch_rows):
        tracemalloc.start()
        try:
            export_days(engine, f"parquet://{tmp_path / str(batch_rows)}", DAY, batch_rows=batch_rows)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    whole_day, batched = peak(50_000), peak(500)
    assert batched * 4 < whole_day, (batched, whole_day)


def test_a_database_without_log_tables_and_a_backwards_range_are_refused(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        with pytest.raises(NoLogTables, match="init-db"):
            export_days(engine, f"parquet://{tmp_path / 'lake'}", DAY)
        with pytest.raises(ValueError, match="before"):
            export_days(engine, f"parquet://{tmp_path / 'lake'}", DAY, DAY - dt.timedelta(days=1))
    finally:
        engine.dispose()
    assert not (tmp_path / "lake").exists()
