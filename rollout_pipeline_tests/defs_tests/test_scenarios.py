"""Each simulator scenario, through the real Router and the daily job, gets the decision it should."""

import datetime as dt

import dagster as dg
import pytest

from rollout_pipeline.defs.runner import run_day
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.simulate.day import simulate_day
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.rollouts import start_rollout

DAY = dt.date(2026, 7, 1)


@pytest.mark.parametrize(
    "scenario, action, words",
    [
        ("healthy", "promote", "judge score"),
        ("slow", "rollback", "p99"),
        ("errors", "rollback", "error rate"),
        ("extreme", "rollback", "outside"),
        ("sparse", "hold", "not enough data"),
        ("corrupt", "hold", "data quality failed"),
    ],
)
def test_first_shadow_day_of_each_scenario(db_url, monkeypatch, tmp_path, scenario, action, words):
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", db_url)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        start_rollout(conn, "diabetes", "v1", "v2", Policy(), actor="test")
    simulate_day(engine, "diabetes", DAY, 4000, scenario, seed=1, spill_dir=tmp_path / "spill")
    engine.dispose()
    with dg.instance_for_test() as instance:
        run = run_day("diabetes", DAY, instance=instance)
    assert run.result["action"] == action, run.result["reasons"]
    assert any(words in r for r in run.result["reasons"]), run.result["reasons"]
