"""The daily job in-process on a temporary instance: decisions, blocking checks, forcing, re-runs."""

import datetime as dt

import dagster as dg
import pytest
import sqlalchemy as sa

from rollout_pipeline.defs.runner import RunFailed, run_day
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.domain.records import PredictionRow
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.logs import write_predictions
from rollout_pipeline.store.rollouts import active_rollout, apply_decision, decision_history, start_rollout
from rollout_pipeline.store.routing import read_routing
from rollout_pipeline_tests.factories import log_day

D1 = dt.date(2026, 6, 1)


@pytest.fixture
def store(db_url, monkeypatch):
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", db_url)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        start_rollout(conn, "m", "v1", "v2", Policy(), actor="test")
    yield engine
    engine.dispose()


def _apply(engine, out):
    with engine.begin() as conn:
        return apply_decision(conn, out["decision_id"], actor="test")


def test_a_healthy_shadow_day_promotes_to_the_first_canary_step(store, instance):
    write_predictions(store, log_day("m", D1, "v1", "v2"))
    run = run_day("m", D1, instance=instance)
    assert run.success and run.failed_checks == ()
    assert run.result["action"] == "promote"
    assert run.result["to"] == {"stage": "canary", "canary_percent": 1}
    # Stored and applied in the decision's own transaction: applying again changes nothing.
    assert run.result["applied"] is True
    assert _apply(store, run.result) is False
    with store.connect() as conn:
        routing = read_routing(conn, "m")
        assert {(r.variant, r.role, r.traffic_percent, r.shadow) for r in routing.routes} == {
            ("v1", "stable", 99.0, True), ("v2", "candidate", 1.0, False)}  # the stable shadows the candidate
        assert active_rollout(conn, "m").canary_percent == 1


def test_a_failing_blocking_check_stops_the_decision_and_holds(store, instance):
    rows = log_day("m", D1, "v1", "v2")
    rows.append(PredictionRow(None, rows[0].ts, "m", "v2", False, None, -5.0, "exploded", 1.0, None))
    write_predictions(store, rows)
    run = run_day("m", D1, instance=instance)
    assert not run.success
    assert "log_quality" in run.failed_checks
    # The decision asset never materialized in that run...
    assert instance.get_latest_materialization_event(dg.AssetKey("decision")) is None
    assert instance.get_latest_materialization_event(dg.AssetKey("day_summary")) is not None
    # ...and the day is recorded as a hold naming the failed expectations.
    assert run.result["action"] == "hold"
    text = " ".join(run.result["reasons"])
    assert "correlation id" in text and "status" in text and "latency" in text


def test_slow_candidate_is_rolled_back_with_the_limit_in_the_reason(store, instance):
    write_predictions(store, log_day("m", D1, "v1", "v2", candidate_latency=6.0))
    run = run_day("m", D1, instance=instance)
    assert run.result["action"] == "rollback"
    assert any("p99" in r and "SLO 250 ms" in r for r in run.result["reasons"])


def test_not_enough_data_holds(store, instance):
    write_predictions(store, log_day("m", D1, "v1", "v2", requests=60))
    run = run_day("m", D1, instance=instance)
    assert run.result["action"] == "hold"
    assert any("not enough data" in r for r in run.result["reasons"])


def test_forced_decision_through_run_config_needs_a_reason_and_is_audited(store, instance):
    write_predictions(store, log_day("m", D1, "v1", "v2"))
    run_day("m", D1, instance=instance)
    with pytest.raises(RunFailed, match="needs a reason"):
        run_day("m", D1, force="rollback", reason="", instance=instance)
    forced = run_day("m", D1, force="rollback", reason="pager went off", actor="alice", instance=instance)
    assert forced.result["action"] == "rollback" and forced.result["forced"] is True
    with store.connect() as conn:
        history = decision_history(conn, "m", include_superseded=True)
    assert [d.action for d in history] == ["promote", "rollback"]
    live = decision_history(store.connect().__enter__(), "m")
    assert len(live) == 1 and live[0].forced and "pager went off" in live[0].reasons[0] and live[0].actor == "alice"


def test_rerunning_a_day_supersedes_and_never_advances_twice(store, instance):
    write_predictions(store, log_day("m", D1, "v1", "v2"))
    first = run_day("m", D1, instance=instance)
    assert first.result["applied"] is True
    again = run_day("m", D1, instance=instance)
    # Recomputed from the state before the day's first decision: shadow -> 1%, not 1% -> 20%.
    assert again.result["from"] == {"stage": "shadow", "canary_percent": 0}
    assert again.result["to"] == {"stage": "canary", "canary_percent": 1}
    with store.connect() as conn:
        assert len(decision_history(conn, "m")) == 1
        assert len(decision_history(conn, "m", include_superseded=True)) == 2


def test_deciding_an_older_day_is_refused_unless_forced(store, instance):
    d2 = D1 + dt.timedelta(days=1)
    write_predictions(store, log_day("m", D1, "v1", "v2") + log_day("m", d2, "v1", "v2"))
    run_day("m", d2, instance=instance)
    with pytest.raises(RunFailed, match="already decided"):
        run_day("m", D1, instance=instance)
    forced = run_day("m", D1, force="hold", reason="backfill for the audit", instance=instance)
    assert forced.result["action"] == "hold"


def test_dry_run_stores_nothing(store, instance):
    write_predictions(store, log_day("m", D1, "v1", "v2"))
    run = run_day("m", D1, dry_run=True, instance=instance)
    assert run.result["action"] == "promote" and run.result["decision_id"] is None
    with store.connect() as conn:
        assert decision_history(conn, "m") == []
        assert conn.execute(sa.text("SELECT count(*) FROM decisions")).scalar_one() == 0


def test_a_scheduled_run_stopped_by_the_blocking_check_is_held_by_the_failure_sensor(store, instance):
    """The schedule's run has no CLI around it: the run-failure sensor records the hold, once."""
    from rollout_pipeline.definitions import defs
    from rollout_pipeline.defs.holds import blocked_day_hold
    from rollout_pipeline.defs.resources import Notifier, StoreResource
    from rollout_pipeline.defs.routing import routing_sensor

    rows = log_day("m", D1, "v1", "v2")
    rows.append(PredictionRow(None, rows[0].ts, "m", "v2", False, None, -5.0, "exploded", 1.0, None))
    write_predictions(store, rows)
    instance.add_dynamic_partitions("models", ["m"])
    instance.add_dynamic_partitions("days", [D1.isoformat()])
    resources = {"store": StoreResource(database_url=dg.EnvVar("ROLLOUT_DATABASE_URL")), "notifier": Notifier()}
    result = defs.resolve_job_def("daily_analysis").execute_in_process(
        instance=instance, partition_key=f"{D1}|m", tags={"rollout/actor": "schedule"}, raise_on_error=False,
        resources=resources)
    assert not result.success
    with store.connect() as conn:
        assert decision_history(conn, "m") == []  # nothing recorded by the run itself

    run = instance.get_run_by_id(result.run_id)
    failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    for _ in range(2):  # a second evaluation of the same failure records nothing more
        with dg.build_run_status_sensor_context(
                sensor_name="blocked_day_hold", dagster_event=failure, dagster_instance=instance, dagster_run=run,
                resources=resources) as context:
            blocked_day_hold(context.for_run_failure())
    with store.connect() as conn:
        (held,) = decision_history(conn, "m", include_superseded=True)
    assert (held.action, held.actor, held.run_id) == ("hold", "schedule", result.run_id)
    assert held.applied_at is not None  # decided and applied by the one decision service
    assert held.metrics["source"] == "blocked" and held.metrics["blocked_run"] == result.run_id
    assert held.reasons[0].startswith("data quality failed")
    assert any("correlation id" in r for r in held.reasons)

    # ...so the routing sensor has nothing left to apply.
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        assert not routing_sensor(context).run_requests
