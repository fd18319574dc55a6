"""Backtests of a policy: past days re-decided from their stored evidence, nothing changed.

Covers: the pure re-decision (no database) from the state each day was decided in, then vs now and what
differs; a week decided by the real decision service, backtested under a stricter policy through the store
(both backends), the CLI and the Dagster job, with the rollouts, routing, routing history, decisions and
evidence byte-identical before and after; a day whose logs are there but whose evidence is not is
re-collected (and validated); bad input refused in one line with the documented exit codes;
``decide --policy --dry-run`` answers the what-if for one day.
"""

import dataclasses
import datetime as dt
import json

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from rollout_pipeline.backtest import (
    BacktestError,
    StoredDay,
    Taken,
    backtest,
    days_between,
    run_backtest,
)
from rollout_pipeline.cli import cli
from rollout_pipeline.decision_requests import day_request
from rollout_pipeline.decisions import make_decision
from rollout_pipeline.domain.policy import policy_from_yaml
from rollout_pipeline.defs.backtest import backtest as backtest_job
from rollout_pipeline.defs.resources import StoreResource
from rollout_pipeline.domain.decide import RolloutState
from rollout_pipeline.domain.policy import Policy, PolicyError
from rollout_pipeline.store import evidence as evidence_store
from rollout_pipeline.store import rollouts as repo
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.logs import write_predictions
from rollout_pipeline.store.readonly import read_only
from rollout_pipeline.store.summary import collect_day
from rollout_pipeline.store.tables import (
    day_evidence,
    decisions,
    rollouts,
    routing_config,
    routing_history,
    routing_version,
    teardowns,
)
from rollout_pipeline.validation.suites import LOG_QUALITY, ExpectationOutcome, SuiteResult
from rollout_pipeline_tests.factories import log_day

D1 = dt.date(2026, 6, 1)
WEEK = [D1 + dt.timedelta(days=i) for i in range(7)]
STRICTER = "min_shadow_days: 10\n"  # the rollout's policy promotes after 7 shadow days
PASSED = SuiteResult(LOG_QUALITY, True, (ExpectationOutcome("rows", "rows present", True, False, "ok"),))


def _week(engine) -> None:
    """A rollout kept in shadow 7 days (min_shadow_days 7): six holds (the second forced), then a promotion.

    One small day of logs is collected once; each day's evidence is that summary under its own date, with a
    passed log-quality result, and each day is decided by the real decision service."""
    write_predictions(engine, log_day("m", D1, "v1", "v2", requests=600))
    with engine.begin() as conn:
        repo.start_rollout(conn, "m", "v1", "v2", Policy(min_shadow_days=7), actor="test")
        summary = collect_day(conn, "m", D1, "v1", "v2")
    for day in WEEK:
        with engine.begin() as conn:
            rollout = repo.rollout_for_day(conn, "m", day)
            evidence_id = evidence_store.save_summary(conn, dataclasses.replace(summary, day=day, accuracy_day=day),
                                                      rollout_id=rollout.id, stage="shadow", run_id=f"run-{day}")
            evidence_store.save_validation(conn, evidence_id, LOG_QUALITY, PASSED)
        forced = day == WEEK[1]
        make_decision(engine, day_request("m", day, "test", run_id=f"run-{day}", force="hold" if forced else None,
                                          reason="campaign week" if forced else None))


def _dump(engine) -> str:
    """Every row of the tables a backtest must never touch, in a stable order."""
    with engine.connect() as conn:
        return repr([list(conn.execute(sa.select(t).order_by(*t.primary_key.columns)))
                     for t in (rollouts, routing_config, routing_version, routing_history, decisions, teardowns,
                                                          day_evidence)])


@pytest.fixture
def week(engine):
    _week(engine)
    return engine


def test_a_stricter_policy_over_a_week_shows_the_differing_day_and_changes_nothing(week):
    before = _dump(week)
    rows = run_backtest(week, "m", WEEK[0], WEEK[-1], policy_from_yaml(STRICTER), recollect=False)
    assert _dump(week) == before  # routing version, decisions, evidence: byte for byte
    assert [r.day for r in rows] == WEEK
    assert [r.differs for r in rows] == [False] * 6 + [True]
    last = rows[-1]
    assert last.then == "promote -> canary 1%" and last.now == "hold -> shadow 0%"
    assert last.difference == "promote -> hold" and last.state == "shadow 0%"
    assert last.reasons[0] == "every gate this step needs passed (judge score 100), but day 7 of 10 required in this step"
    assert last.reasons[1].startswith("evidence: 7 nights at shadow (2026-06-01..2026-06-07):")  # the step's nights
    assert rows[1].then == "hold (forced) -> shadow 0%" and rows[1].now == "hold -> shadow 0%"
    assert {r.evidence for r in rows} == {"stored"}
    same = run_backtest(week, "m", WEEK[0], WEEK[-1], Policy(min_shadow_days=7), recollect=False)
    assert not any(r.differs for r in same)  # the rollout's own policy re-decides what was decided


def test_a_day_with_logs_but_no_evidence_is_recollected_and_validated_and_one_without_either_is_said(week):
    day8, day9 = D1 + dt.timedelta(days=7), D1 + dt.timedelta(days=8)
    write_predictions(week, log_day("m", day8, "v1", "v2", requests=600, stage="canary", canary_percent=1))
    before = _dump(week)
    seen = []

    def validate(summary, stage, policy):
        seen.append((summary.day, summary.total_rows, stage))
        return [PASSED]

    rows = run_backtest(week, "m", day8, day9, Policy(), validate=validate)
    assert _dump(week) == before
    assert seen == [(day8, 600, "canary")]  # from the state after the week's promotion
    recollected, gone = rows
    assert recollected.evidence == "re-collected" and recollected.then == "not decided"
    assert recollected.state == "canary 1%" and recollected.differs
    assert gone.evidence == "none" and gone.now == "cannot re-decide" and "no logs left" in gone.difference


def test_redeciding_is_pure_from_the_state_the_day_was_decided_in(engine):
    # No database for the re-decision itself: one stored summary, two states.
    write_predictions(engine, log_day("m", D1, "v1", "v2", requests=600))
    with engine.connect() as conn:
        summary = collect_day(conn, "m", D1, "v1", "v2")
    shadow = StoredDay(D1, RolloutState("shadow", 0, 0), Taken("hold", False, "shadow", 0, "x"), summary, "shadow")
    broken = dataclasses.replace(shadow, day=D1 + dt.timedelta(days=1), failures=("log_quality: rows (none)",))
    rows = backtest([broken, shadow], Policy())
    assert [r.day for r in rows] == [D1, D1 + dt.timedelta(days=1)]
    assert rows[0].now == "promote -> canary 1%" and rows[0].difference == "hold -> promote"
    assert rows[1].now == "hold -> shadow 0%" and not rows[1].differs
    assert rows[1].reasons[0].startswith("data quality failed")


@pytest.mark.parametrize("start, end, message", [
    (D1, D1 - dt.timedelta(days=1), "is after"),
    (D1 - dt.timedelta(days=400), D1, "at most 366 days"),
    (D1, dt.date(2026, 7, 1), "is today"),
])
def test_a_bad_range_is_refused_in_one_line(start, end, message):
    with pytest.raises(BacktestError, match=message):
        days_between(start, end, today=dt.date(2026, 7, 1))


def test_the_backtest_connection_is_refused_any_write_by_the_database(engine):
    with engine.begin() as conn:
        repo.start_rollout(conn, "m", "v1", "v2", Policy(), actor="test")
    before = _dump(engine)
    with pytest.raises(sa.exc.DBAPIError, match="(?i)read.only|readonly"):
        with read_only(engine) as conn:
            conn.execute(rollouts.update().values(stage="canary"))
    with engine.begin() as conn:  # the pooled connection writes again afterwards
        conn.execute(rollouts.update().where(sa.false()).values(stage="canary"))
    assert _dump(engine) == before


def test_policy_text_goes_over_a_preset_and_a_bad_one_names_its_field():
    assert policy_from_yaml("min_shadow_days: 4", "first-model").first_model is True
    assert policy_from_yaml(None).min_shadow_days == Policy().min_shadow_days
    with pytest.raises(PolicyError, match="min_shadow_days"):
        policy_from_yaml("min_shadow_days: -1")
    with pytest.raises(PolicyError, match="mapping"):
        policy_from_yaml("- 1")


@pytest.fixture
def sqlite_week(sqlite_url, monkeypatch, tmp_path):
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", sqlite_url)
    engine = make_engine(sqlite_url)
    _week(engine)
    (tmp_path / "strict.yaml").write_text(STRICTER)
    yield engine, str(tmp_path / "strict.yaml")
    engine.dispose()


def test_the_cli_prints_the_differing_days_and_changes_nothing(sqlite_week):
    engine, strict = sqlite_week
    before = _dump(engine)
    runner = CliRunner()
    args = ["backtest", "--model", "m", "--from", str(WEEK[0]), "--to", str(WEEK[-1]), "--policy", strict]
    text = runner.invoke(cli, args)
    assert text.exit_code == 0, text.output
    assert "1 of 7 days would be decided differently" in text.output
    (line,) = [x for x in text.output.splitlines() if x.startswith(str(WEEK[-1]))]
    assert "promote -> canary 1%" in line and "hold -> shadow 0%" in line and "promote -> hold" in line
    out = json.loads(runner.invoke(cli, [*args, "--json"]).output)
    assert out["differing"] == 1 and out["rows"][-1]["difference"] == "promote -> hold"
    # The differing day's reasons, then and now, under the table.
    then, now = out["rows"][-1]["then_reasons"], out["rows"][-1]["reasons"]
    assert then and now and then != now
    block = text.output.split(f"differs on {WEEK[-1]} (promote -> hold):\n", 1)[1]
    assert block.startswith("  then:\n" + "".join(f"    - {x}\n" for x in then) + "  now: \n"
                            + "".join(f"    - {x}\n" for x in now))
    what_if = runner.invoke(cli, ["decide", "--model", "m", "--date", str(WEEK[-1]), "--dry-run", "--policy", strict,
                                  "--json"])
    assert what_if.exit_code == 0, what_if.output
    answer = json.loads(what_if.output)
    assert answer["now"] == "hold -> shadow 0%" and answer["then"] == "promote -> canary 1%"
    assert answer["dry_run"] is True and answer["applied"] is False
    assert _dump(engine) == before


@pytest.mark.parametrize("args, code, message", [
    (["backtest", "--model", "m", "--from", "2026-06-01", "--to", "2026-13-01", "--preset", "default"], 2,
     "not a date"),
    (["backtest", "--model", "m", "--from", "2026-06-03", "--to", "2026-06-01", "--preset", "default"], 1,
     "is after"),
    (["backtest", "--model", "m", "--from", "2026-06-01", "--to", "2999-01-01", "--preset", "default"], 1,
     "in the future"),
    (["backtest", "--model", "m; drop", "--from", "2026-06-01", "--to", "2026-06-02", "--preset", "default"], 1,
     "model"),
    (["backtest", "--model", "m", "--from", "2026-06-01", "--to", "2026-06-02"], 1, "name the policy"),
    (["backtest", "--model", "nobody", "--from", "2026-06-01", "--to", "2026-06-02", "--preset", "default"], 1,
     "has no rollout"),
    (["decide", "--model", "m", "--date", "2026-06-01", "--preset", "default"], 1, "only with --dry-run"),
])
def test_bad_input_is_one_line_with_the_documented_exit_code(sqlite_url, monkeypatch, args, code, message):
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", sqlite_url)
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        repo.start_rollout(conn, "m", "v1", "v2", Policy(), actor="test")
    engine.dispose()
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output


def test_the_dagster_job_shows_the_table_and_changes_nothing(sqlite_week):
    engine, _ = sqlite_week
    before = _dump(engine)
    config = {"model": "m", "date_from": str(WEEK[0]), "date_to": str(WEEK[-1]), "policy_yaml": STRICTER}
    with dg.instance_for_test() as instance:
        result = backtest_job.execute_in_process(
            run_config={"ops": {"backtest_policy": {"config": config}}}, instance=instance,
            resources={"store": StoreResource(database_url=dg.EnvVar("ROLLOUT_DATABASE_URL"))})
        bad = backtest_job.execute_in_process(
            run_config={"ops": {"backtest_policy": {"config": {**config, "policy_yaml": "min_shadow_days: x"}}}},
            instance=instance, raise_on_error=False,
            resources={"store": StoreResource(database_url=dg.EnvVar("ROLLOUT_DATABASE_URL"))})
    assert result.success and _dump(engine) == before
    (materialization,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    meta = materialization.event_specific_data.metadata
    assert meta["differing"].value == 1 and meta["days"].value == 7
    assert "| 2026-06-07 | shadow 0% | promote -> canary 1% | hold -> shadow 0% | promote -> hold |" in \
        meta["backtest"].value
    assert not bad.success
