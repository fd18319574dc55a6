"""Issue #22, probe 1: stored rows are input too. Other systems may write the feedback table directly (the README
lets them), so a feedback value can be anything a double holds.

Was: one feedback row with value 1e308 made every `decide` of the model fail with exit 3
("NumericValueOutOfRange": PostgreSQL's avg() overflowed), and a NaN written directly was never flagged (the
integrity gate saw only the hash sample's latest outcome per request) and the day was promoted. Now the day's
feedback join counts NaN, the infinities and values beyond the contract's |x| < 1e15 as broken rows, in SQL,
before any arithmetic; they stay out of the means, and the blocking log-quality check holds the day naming the
count. The same on the Spark path."""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from rollout_pipeline.cli import cli
from rollout_pipeline.domain.records import FeedbackRow
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.logs import write_feedback, write_predictions
from rollout_pipeline.store.summary import collect_day, feedback_by_variant
from rollout_pipeline.store.tables import feedback
from rollout_pipeline_tests.factories import log_day

DAY = dt.date(2026, 11, 28)
NAN, INF = float("nan"), float("inf")
# value -> stored as such on PostgreSQL; SQLite has no NaN (a NaN is stored as NULL, which the contract allows).
BROKEN = {"1e308": 1e308, "-1e15": -1e15, "+inf": INF, "-inf": -INF, "NaN": NAN}


def _a_day_with_outcomes(engine) -> list:
    """A clean shadow day where every request's actual outcome arrived (finite), an hour after it: the truth
    is noisier than the models' difference, so both are about as accurate."""
    rows = log_day("m", DAY, "v1", "v2", requests=1_500)
    write_predictions(engine, rows)
    served = [r for r in rows if r.served]
    rng = random.Random(3)
    write_feedback(engine, [FeedbackRow(r.correlation_id, r.ts + dt.timedelta(hours=1), "m", "actual",
                                        r.prediction + rng.gauss(0, 0.3), None) for r in served])
    return served


def _insert_directly(engine, request, value: float) -> None:
    """What another system writing the table does: no bulk writer, no contract check. Its ts is earlier than the
    request's finite outcome, so the hash sample (latest outcome per request) never shows it."""
    with engine.begin() as conn:
        conn.execute(sa.insert(feedback).values(correlation_id=request.correlation_id, ts=request.ts,
                                                model_name="m", kind="actual", value=value, label=None))


@pytest.fixture
def cli_db(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", db_url)
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    assert CliRunner().invoke(cli, ["rollout", "start", "--model", "m", "--stable", "v1", "--candidate", "v2"]
                              ).exit_code == 0
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("value", [None, "1e308", "NaN", "+inf"])
def test_one_stored_feedback_value_never_stops_the_night_and_a_broken_one_holds_it(cli_db, db_url, value):
    served = _a_day_with_outcomes(cli_db)
    if value is not None:
        _insert_directly(cli_db, served[7], BROKEN[value])
    out = CliRunner().invoke(cli, ["decide", "--model", "m", "--date", DAY.isoformat(), "--json"])
    assert out.exit_code == 0, out.output
    decision = json.loads(out.stdout)
    if value is None or (value == "NaN" and db_url.startswith("sqlite")):
        # The control: the same day without the stored row promotes. SQLite has no NaN: it stored NULL, a value
        # the contract allows (an outcome without a number), so there is nothing broken to hold for.
        assert decision["action"] == "promote", decision["reasons"]
        return
    assert decision["action"] == "hold", decision["reasons"]
    assert decision["reasons"][0] == "data quality failed, so the day cannot be judged:"
    assert any("every feedback value is a finite number" in r and "(1 broken feedback rows about the day's "
               "requests)" in r for r in decision["reasons"]), decision["reasons"]


def test_the_feedback_join_counts_broken_values_and_keeps_them_out_of_the_mean(pg_url):
    engine = make_engine(pg_url)
    served = _a_day_with_outcomes(engine)
    for k, value in enumerate(BROKEN.values()):
        _insert_directly(engine, served[k], value)
    with engine.connect() as conn:
        rows = feedback_by_variant(conn, "m", DAY)
        summary = collect_day(conn, "m", DAY, "v1", "v2")
    engine.dispose()
    actual = {(r.variant, r.served): r for r in rows if r.kind == "actual"}
    for key in (("v1", True), ("v2", False)):  # both halves of each pair join the request's feedback
        assert actual[key].broken == len(BROKEN)
        assert actual[key].n == len(served) + len(BROKEN)
        assert 0.1 < actual[key].abs_error_mean < 0.4  # the finite outcomes only
    assert {(v.variant, v.served): v.broken_feedback for v in summary.variants} == {("v1", True): 5, ("v2", False): 5}


def test_the_spark_path_counts_them_as_the_database_does(spark, pg_url, tmp_path):
    from rollout_pipeline.store.export import export_days
    from rollout_pipeline.store.spark_summary import collect_day_spark
    from rollout_pipeline_tests.summaries import differences

    engine = make_engine(pg_url)
    served = _a_day_with_outcomes(engine)
    for k, value in enumerate(BROKEN.values()):
        _insert_directly(engine, served[k], value)
    root = f"parquet://{tmp_path / 'lake'}"
    export_days(engine, root, DAY, DAY + dt.timedelta(days=2))
    with engine.connect() as conn:
        from_pg = collect_day(conn, "m", DAY, "v1", "v2")
    engine.dispose()
    from_lake = collect_day_spark(spark, f"file://{tmp_path / 'lake'}", "m", DAY, "v1", "v2")
    assert [v.broken_feedback for v in from_lake.variants] == [5, 5]
    assert differences(from_pg, from_lake, skip=frozenset({"collect_seconds"})) == []
