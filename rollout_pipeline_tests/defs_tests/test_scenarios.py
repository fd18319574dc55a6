"""Each simulator scenario, through the real Router and the daily job, gets the decision it should."""

import datetime as dt

import dagster as dg
import pytest

from rollout_pipeline.defs.runner import run_day
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.simulate.day import simulate_day
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.rollouts import start_rollout
from rollout_pipeline_tests.factories import promoted

DAY = dt.date(2026, 7, 1)


@pytest.mark.parametrize(
    "scenario, action, words",
    [
        ("healthy", "promote", "every gate this step needs passed"),
        ("slow", "rollback", "p99"),
        ("errors", "rollback", "error rate"),
        ("extreme", "rollback", "outside"),
        ("sparse", "hold", "not enough data"),
        ("corrupt", "hold", "data quality failed"),
    ],
)
def test_first_shadow_day_of_each_scenario(db_url, monkeypatch, tmp_path, scenario, action, words):
    result = _decide_a_day(db_url, monkeypatch, tmp_path, scenario, 4000)
    assert result["action"] == action, result["reasons"]
    assert any(words in r for r in result["reasons"]), result["reasons"]


def _decide_a_day(db_url, monkeypatch, tmp_path, scenario: str, requests: int, *, policy: Policy | None = None,
                  canary_percent: int | None = None, model: str = "diabetes") -> dict:
    """Start a rollout (in shadow, or moved to a canary share the day before), simulate DAY, decide it."""
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", db_url)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        rollout = start_rollout(conn, model, "v1", "v2", policy or Policy(), actor="test")
        if canary_percent is not None:
            promoted(conn, rollout, DAY - dt.timedelta(days=1), ("shadow", 0), ("canary", canary_percent))
    simulate_day(engine, model, DAY, requests, scenario, seed=1, spill_dir=tmp_path / "spill", kind="diabetes")
    engine.dispose()
    with dg.instance_for_test() as instance:
        return run_day(model, DAY, instance=instance).result


def test_shifted_predictions_do_not_leave_shadow_and_roll_back_a_canary(db_url, monkeypatch, tmp_path):
    """Prediction shift is a scored (normal) metric by default: confidently past its limit it keeps a candidate in
    shadow (it serves nobody) and rolls back one that serves users."""
    result = _decide_a_day(db_url, monkeypatch, tmp_path, "shifted", 4000)
    reasons = result["reasons"]
    assert result["action"] == "hold", reasons
    assert "does not leave shadow" in reasons[0] and any("predictions shifted up" in r for r in reasons), reasons
    serving = _decide_a_day(db_url, monkeypatch, tmp_path, "shifted", 4000, canary_percent=20, model="diabetes-20")
    assert serving["action"] == "rollback", serving["reasons"]
    assert "does not keep serving 20%" in serving["reasons"][0]


@pytest.mark.parametrize("criticality, action, first", [
    ("normal", "rollback", "does not keep serving 50%"),  # confidently worse never keeps its exposure
    ("critical", "rollback", "critical failure:"),  # a policy that makes complaints critical rolls back too
])
def test_complaints_in_canary_follow_the_policy(db_url, monkeypatch, tmp_path, criticality, action, first):
    result = _decide_a_day(db_url, monkeypatch, tmp_path, "complaints", 10000,
                           policy=Policy(metrics={"complaints": criticality}), canary_percent=50)
    reasons = result["reasons"]
    assert result["action"] == action, reasons
    assert first in reasons[0], reasons
    assert any("candidate complaint rate" in r and " > stable " in r for r in reasons), reasons  # the limit explains itself
    assert result["from"] == {"stage": "canary", "canary_percent": 50}


def test_complaints_are_invisible_in_shadow(db_url, monkeypatch, tmp_path):
    """Shadow answers never reach users, so they draw no complaints: the shadow day passes."""
    result = _decide_a_day(db_url, monkeypatch, tmp_path, "complaints", 4000)
    assert result["action"] == "promote", result["reasons"]


def test_the_demo_promotes_healthy_day_by_day_and_rolls_back_slow_on_sqlite(tmp_path, monkeypatch):
    """`make demo` on the embedded default: healthy walks to production on consecutive days, slow is rolled back,
    and a first model walks to production over its constant baseline. Seeds are fixed: the same on any date."""
    from rollout_pipeline.demo import run_demo

    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
    for name in ("ROLLOUT_DATABASE_URL", "DAGSTER_HOME"):
        monkeypatch.setenv(name, "")  # run_demo sets its own; monkeypatch restores them afterwards
    lines: list[str] = []
    outcomes = run_demo(days=5, echo=lines.append)
    walk = [(o["model"], o["action"], o["to"]["stage"], o["to"]["canary_percent"]) for o in outcomes]
    assert walk == [
        ("diabetes", "promote", "canary", 1), ("diabetes", "promote", "canary", 20),
        ("diabetes", "promote", "canary", 50), ("diabetes", "promote", "production", 100),
        ("cancer", "rollback", "rolled_back", 0),
        ("diabetes-first", "promote", "canary", 1), ("diabetes-first", "promote", "canary", 20),
        ("diabetes-first", "promote", "canary", 50), ("diabetes-first", "promote", "production", 100),
    ], [o["reasons"] for o in outcomes]
    dates = [o["date"] for o in outcomes if o["model"] == "diabetes"]
    assert [dt.date.fromisoformat(b) - dt.date.fromisoformat(a) for a, b in zip(dates, dates[1:])] == [
        dt.timedelta(days=1)] * 3
    assert any("p99" in r for r in outcomes[4]["reasons"])
    assert all(o["applied"] for o in outcomes)
