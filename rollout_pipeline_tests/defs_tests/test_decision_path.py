"""One decision path with its evidence in the database: the daily job stores the day's summary, validation
results and evaluation; the decision reads them back from there (never from Dagster's IO manager), stores and
applies itself in one transaction; a forced decision needs no analysis; a run tagged only with Dagster's
``dagster/partition`` works."""

import datetime as dt

import dagster as dg
import pytest
import sqlalchemy as sa

from rollout_pipeline.decision_requests import Force
from rollout_pipeline.decisions import decide_in, make_decision
from rollout_pipeline.defs.partitions import DAY_MODEL, day_and_model, partition_from_tags
from rollout_pipeline.defs.runner import job_now, run_day
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.domain.records import PredictionRow
from rollout_pipeline.store import rollouts as repo
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.evidence import load_evidence
from rollout_pipeline.store.logs import write_predictions
from rollout_pipeline.store.routing import ConcurrentUpdate, read_routing
from rollout_pipeline.store.tables import day_evidence, decisions, routing_history
from rollout_pipeline_tests.factories import log_day

D1 = dt.date(2026, 6, 1)


@pytest.fixture
def store(sqlite_url, monkeypatch):
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", sqlite_url)
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        repo.start_rollout(conn, "m", "v1", "v2", Policy(), actor="test")
    yield engine
    engine.dispose()


def _live(engine):
    with engine.connect() as conn:
        return repo.decision_history(conn, "m")


def test_the_day_evidence_is_stored_and_the_decision_reads_it(store, instance):
    write_predictions(store, log_day("m", D1, "v1", "v2"))
    run = run_day("m", D1, instance=instance)
    assert run.result["action"] == "promote" and run.result["applied"] is True
    with store.connect() as conn:
        evidence = load_evidence(conn, "m", D1)
    assert evidence.run_id == run.run_id and evidence.stage == "shadow" and evidence.live
    assert evidence.summary.total_rows == 3000 and evidence.summary.day == D1
    assert set(evidence.validations) == {"log_quality", "latency_slo", "prediction_distribution"}
    assert evidence.evaluation is not None and evidence.evaluation.score == pytest.approx(100.0)
    (record,) = _live(store)
    assert record.metrics["source"] == "analysis"
    assert record.metrics["evidence"]["id"] == evidence.id and record.metrics["evidence"]["judged"] is True
    assert record.metrics["score"] == pytest.approx(evidence.evaluation.score)
    # The validation results reach the review as structured records, never parsed back from markdown.
    names = [v["name"] for v in record.metrics["review"]["validations"]]
    assert names == ["latency_slo", "log_quality", "prediction_distribution"]


def test_the_decision_materializes_without_any_io_manager_file(store, instance, tmp_path, monkeypatch):
    """Nothing is pickled for the decision: a run in another 'process' (a fresh instance) reads the database."""
    write_predictions(store, log_day("m", D1, "v1", "v2"))
    run_day("m", D1, instance=instance)
    with dg.instance_for_test() as other:
        forced = run_day("m", D1, force="hold", reason="reviewed elsewhere", instance=other)
    assert forced.result["action"] == "hold" and forced.result["applied"] is True
    (record,) = _live(store)
    assert record.metrics["source"] == "forced" and record.metrics["evidence"]["judged"] is True
    assert record.metrics["review"]["checks"]  # the first run's evaluation, read from the database


def test_a_forced_decision_on_a_day_never_analysed_succeeds_alone_as_the_launchpad_runs_it(store, instance):
    """The UI launchpad materializes `decision` alone; no upstream was ever materialized."""
    instance.add_dynamic_partitions("models", ["m"])
    instance.add_dynamic_partitions("days", [D1.isoformat()])
    result = job_now("daily_analysis").execute_in_process(
        instance=instance, partition_key=f"{D1}|m", asset_selection=[dg.AssetKey("decision")],
        run_config={"ops": {"decision": {"config": {"force": "rollback", "reason": "pager", "operator": "alice"}}}},
        raise_on_error=False)
    assert result.success
    (record,) = _live(store)
    assert (record.action, record.forced, record.actor) == ("rollback", True, "alice")
    assert record.metrics["evidence"] is None  # recorded: no evidence existed for that day
    assert record.applied_at is not None
    with store.connect() as conn:
        assert repo.latest_rollout(conn, "m").stage == "rolled_back"


def test_an_unforced_decision_on_a_day_never_analysed_is_refused_in_one_line(store, instance):
    instance.add_dynamic_partitions("models", ["m"])
    instance.add_dynamic_partitions("days", [D1.isoformat()])
    result = job_now("daily_analysis").execute_in_process(
        instance=instance, partition_key=f"{D1}|m", asset_selection=[dg.AssetKey("decision")], raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "was never analysed" in failure.step_failure_data.user_failure_data.description
    # A refusal is not retried.
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert _live(store) == []


def test_a_run_tagged_only_with_dagster_partition_works(store, instance):
    """GraphQL launchRun and the UI may set only `dagster/partition` = "day|model" (a plain string key)."""
    write_predictions(store, log_day("m", D1, "v1", "v2"))
    instance.add_dynamic_partitions("models", ["m"])
    instance.add_dynamic_partitions("days", [D1.isoformat()])
    result = job_now("daily_analysis").execute_in_process(
        instance=instance, tags={"dagster/partition": f"{D1}|m"}, raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    # Only Dagster's partition tag went in; the decision adds its action for the Runs list.
    assert instance.get_run_by_id(result.run_id).tags == {"dagster/partition": f"{D1}|m", "rollout/action": "promote"}
    (record,) = _live(store)
    assert (record.action, record.run_id) == ("promote", result.run_id)


def test_partition_keys_are_read_from_strings_and_tags():
    key = DAY_MODEL.get_partition_key_from_str(f"{D1}|m")
    assert day_and_model(key) == day_and_model(f"{D1}|m") == (D1, "m")
    assert partition_from_tags({"dagster/partition": f"{D1}|m"}) == (D1, "m")
    assert partition_from_tags({"dagster/partition/date": str(D1), "dagster/partition/model": "m"}) == (D1, "m")
    assert partition_from_tags({"other": "x"}) is None


def test_a_blocked_run_is_held_from_the_stored_validation(store, instance):
    rows = log_day("m", D1, "v1", "v2")
    rows.append(PredictionRow(None, rows[0].ts, "m", "v2", False, None, -5.0, "exploded", 1.0, None))
    write_predictions(store, rows)
    run = run_day("m", D1, instance=instance)
    assert not run.success and run.result["action"] == "hold" and run.result["applied"] is True
    (record,) = _live(store)
    assert record.metrics["source"] == "blocked" and record.metrics["blocked_run"] == run.run_id
    assert any("log_quality" in f for f in record.metrics["data_quality_failures"])
    assert not record.metrics["evidence"]["judged"]  # the judge never ran: evaluated from the stored summary


def test_stored_and_applied_in_one_transaction(store):
    """The service writes the decision and the routing in the caller's transaction: rolled back, both vanish."""
    with store.connect() as conn:
        version = read_routing(conn, "m").version
    request = Force("m", D1, "alice", "promote", "by hand")
    with pytest.raises(RuntimeError, match="boom"):
        with store.begin() as conn:
            outcome = decide_in(conn, request)
            assert outcome.applied and read_routing(conn, "m").version == version + 1
            raise RuntimeError("boom")
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(decisions)).scalar_one() == 0
        assert read_routing(conn, "m").version == version
    outcome = make_decision(store, request)
    with store.connect() as conn:
        (history,) = conn.execute(sa.select(routing_history).where(routing_history.c.decision_id.is_not(None))).all()
        assert history.decision_id == outcome.record.id and outcome.record.applied_at is not None


def test_a_decision_whose_apply_races_stays_stored_for_the_routing_sensor(store, monkeypatch):
    def raced(*_a, **_k):
        raise ConcurrentUpdate("the routing of m changed meanwhile")

    monkeypatch.setattr(repo, "apply_decision", raced)
    outcome = make_decision(store, Force("m", D1, "alice", "promote", "by hand"))
    assert not outcome.applied and "changed meanwhile" in outcome.unapplied_reason
    with store.connect() as conn:
        assert [d.id for d in repo.pending_decisions(conn)] == [outcome.record.id]


def test_a_dry_run_computes_and_rolls_back(store):
    outcome = make_decision(store, Force("m", D1, "alice", "promote", "x", dry_run=True))
    assert outcome.record.action == "promote" and outcome.output()["decision_id"] is None
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(decisions)).scalar_one() == 0
        assert repo.latest_rollout(conn, "m").stage == "shadow"


def test_a_new_analysis_supersedes_the_day_evidence(store, instance):
    write_predictions(store, log_day("m", D1, "v1", "v2"))
    first = run_day("m", D1, instance=instance)
    second = run_day("m", D1, instance=instance)
    with store.connect() as conn:
        rows = conn.execute(sa.select(day_evidence).order_by(day_evidence.c.id)).all()
        assert [r.run_id for r in rows] == [first.run_id, second.run_id]
        assert rows[0].superseded_by == rows[1].id and rows[1].superseded_by is None
        assert load_evidence(conn, "m", D1).run_id == second.run_id
        # a run still finishing keeps reading its own analysis, not the newer one
        assert load_evidence(conn, "m", D1, run_id=first.run_id).id == rows[0].id


class _DriverError(Exception):
    pass


@pytest.mark.parametrize("message, final", [
    ('connection to server at "db" failed: FATAL:  password authentication failed for user "x"', True),
    ('FATAL:  role "x" does not exist', True),
    ("server closed the connection unexpectedly", False),
])
def test_a_database_that_refuses_us_fails_once_in_one_line_and_a_transient_error_is_retried(message, final):
    from rollout_pipeline.defs.failures import database_errors

    error = sa.exc.OperationalError("SELECT 1", {}, _DriverError(message + "\nDETAIL: more"))
    with pytest.raises(Exception) as raised:
        with database_errors():
            raise error
    if final:
        assert isinstance(raised.value, dg.Failure) and raised.value.allow_retries is False
        assert raised.value.description == f"cannot connect to the database: {message}"
    else:
        assert raised.value is error  # left to the step's RetryPolicy


def test_the_hold_sensor_reads_a_run_tagged_only_with_dagster_partition(store, instance):
    from rollout_pipeline.defs.holds import blocked_day_hold
    from rollout_pipeline.defs.resources import Notifier, StoreResource

    rows = log_day("m", D1, "v1", "v2")
    rows.append(PredictionRow(None, rows[0].ts, "m", "v2", False, None, -5.0, "exploded", 1.0, None))
    write_predictions(store, rows)
    instance.add_dynamic_partitions("models", ["m"])
    instance.add_dynamic_partitions("days", [D1.isoformat()])
    result = job_now("daily_analysis").execute_in_process(
        instance=instance, tags={"dagster/partition": f"{D1}|m"}, raise_on_error=False)
    assert not result.success and _live(store) == []
    run = instance.get_run_by_id(result.run_id)
    failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    resources = {"store": StoreResource(database_url=dg.EnvVar("ROLLOUT_DATABASE_URL")), "notifier": Notifier()}
    with dg.build_run_status_sensor_context(sensor_name="blocked_day_hold", dagster_event=failure,
                                            dagster_instance=instance, dagster_run=run,
                                            resources=resources) as context:
        blocked_day_hold(context.for_run_failure())
    (held,) = _live(store)
    assert (held.action, held.run_id, held.actor) == ("hold", result.run_id, "schedule")


def test_older_analyses_of_a_day_are_dropped_once_no_run_can_still_use_them(store):
    from rollout_pipeline.domain.summary import DaySummary
    from rollout_pipeline.store.evidence import SUPERSEDED_KEPT, save_summary

    summary = DaySummary("m", D1, "v1", "v2", (), (), None, (), ())
    t0 = dt.datetime(2026, 6, 2, tzinfo=dt.UTC)
    with store.begin() as conn:
        rollout_id = repo.active_rollout(conn, "m").id
        first = save_summary(conn, summary, rollout_id=rollout_id, stage="shadow", run_id="a", now=t0)
        second = save_summary(conn, summary, rollout_id=rollout_id, stage="shadow", run_id="b",
                              now=t0 + SUPERSEDED_KEPT)
        assert {r.id for r in conn.execute(sa.select(day_evidence))} == {first, second}  # "a" may still run
        third = save_summary(conn, summary, rollout_id=rollout_id, stage="shadow", run_id="c",
                             now=t0 + SUPERSEDED_KEPT + dt.timedelta(seconds=1))
        # "a" untouched for longer than any run takes: dropped; "b" was written a second ago: kept
        assert {r.id for r in conn.execute(sa.select(day_evidence))} == {second, third}
        assert load_evidence(conn, "m", D1).id == third
