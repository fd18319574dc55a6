"""`ROLLOUT_LOGS_URL=parquet:///…` + `rollout-pipeline decide`: the day is read from Parquet through Spark and
decided with the same action as from PostgreSQL (issue #16's "done when").

Two pipeline databases with the same rollout: one holds the simulated day in its own
``prediction_log`` and ``feedback`` tables; the other holds no logs at all, and the same
day (same seed, same rows) sits in a Parquet lake. ``decide`` runs the real Dagster job
in-process on each.
"""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from rollout_pipeline.cli import cli
from rollout_pipeline.simulate.day import simulate_day
from rollout_pipeline.simulate.models import load_pair
from rollout_pipeline.store import evidence as evidence_store
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.lake import LakeWriter
from rollout_pipeline.store.tables import feedback, prediction_log
from rollout_pipeline_tests import postgres
from rollout_pipeline_tests.summaries import differences

MODEL = "diabetes"
DAY = dt.date(2026, 4, 6)


@pytest.fixture
def two_databases(pg_server, pg_template):
    urls = [postgres.create_database(pg_server, template=pg_template) for _ in range(2)]
    yield urls
    for url in urls:
        postgres.drop_database(pg_server, url)


def _cli(monkeypatch, url: str, *args: str, logs_url: str | None = None):
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", url)
    if logs_url is None:
        monkeypatch.delenv("ROLLOUT_LOGS_URL", raising=False)
    else:
        monkeypatch.setenv("ROLLOUT_LOGS_URL", logs_url)
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.setenv("ROLLOUT_SPARK_MASTER", "local[2]")
    return tmp_path


@pytest.mark.parametrize("scenario, expected", [("healthy", "promote"), ("slow", "rollback")])
def test_decide_from_parquet_through_spark_takes_the_same_action_as_from_postgresql(
        spark, env, two_databases, monkeypatch, scenario, expected):
    in_db, in_lake = two_databases
    pair = load_pair(MODEL)
    lake = f"parquet://{env / 'lake'}"
    for url in (in_db, in_lake):
        started = _cli(monkeypatch, url, "rollout", "start", "--model", MODEL, "--stable", pair.stable_variant,
                       "--candidate", pair.candidate_variant)
        assert started.exit_code == 0, started.output
    engines = [make_engine(u) for u in (in_db, in_lake)]
    try:
        simulate_day(engines[0], MODEL, DAY, 3_000, scenario, 5, seeded_ids=True)
        with LakeWriter(lake) as sink:
            simulate_day(engines[1], MODEL, DAY, 3_000, scenario, 5, seeded_ids=True, sink=sink)
        with engines[1].connect() as conn:  # the lake's database holds no logs: only Parquet can decide it
            assert conn.execute(sa.select(sa.func.count()).select_from(prediction_log)).scalar_one() == 0
            assert conn.execute(sa.select(sa.func.count()).select_from(feedback)).scalar_one() == 0

        outcomes, sources = [], []
        for home, url, logs_url in (("db", in_db, None), ("lake", in_lake, lake)):
            monkeypatch.setenv("DAGSTER_HOME", str(env / f"dagster-{home}"))
            out = _cli(monkeypatch, url, "decide", "--model", MODEL, "--date", DAY.isoformat(), "--json",
                       logs_url=logs_url)
            assert out.exit_code == 0, out.output
            outcomes.append(json.loads(out.output[out.output.index("{"):]))
            with dg.DagsterInstance.from_config(str(env / f"dagster-{home}")) as instance:
                event = instance.get_latest_materialization_event(dg.AssetKey("day_summary"))
                sources.append(event.asset_materialization.metadata["log_source"].value)
        assert sources == ["database", "parquet"]  # what the review shows of where the day was read
        from_db, from_lake = outcomes
        assert from_db["action"] == from_lake["action"] == expected
        assert from_db["reasons"] == from_lake["reasons"]
        assert from_db["to"] == from_lake["to"]

        stored = []
        for engine in engines:
            with engine.connect() as conn:
                stored.append(evidence_store.load_evidence(conn, MODEL, DAY))
        assert stored[0].summary.total_rows == stored[1].summary.total_rows > 0
        assert differences(stored[0].summary, stored[1].summary, skip=frozenset({"collect_seconds"})) == []
    finally:
        for engine in engines:
            engine.dispose()


@pytest.mark.parametrize("logs_url, words", [
    ("ftp://example.com/logs", "unsupported logs URL"),
    ("parquet://relative/path", "three slashes"),
])
def test_a_logs_url_that_cannot_work_is_refused_in_one_line_before_any_run(env, sqlite_url, monkeypatch, logs_url,
                                                                           words):
    assert _cli(monkeypatch, sqlite_url, "rollout", "start", "--model", "m", "--stable", "a",
                "--candidate", "b").exit_code == 0
    out = _cli(monkeypatch, sqlite_url, "decide", "--model", "m", "--date", "2026-04-06", logs_url=logs_url)
    assert out.exit_code != 0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0], out.output
    if (env / "dagster").exists():  # nothing reached Dagster
        with dg.DagsterInstance.from_config(str(env / "dagster")) as instance:
            assert instance.get_runs_count() == 0
