"""A rollout walked end to end through the schedule and sensor path, on PostgreSQL.

Dagster runs in-process on a temporary instance: each night the schedule asks for
the day's runs, the daily job decides, the routing sensor asks for one routing run
per decision and the routing job applies it; the retention schedule retires the old
variant once its window is over. Routing config and history are checked at each step.
"""

import datetime as dt

import dagster as dg

from rollout_pipeline.definitions import defs
from rollout_pipeline.defs.jobs import nightly_analysis
from rollout_pipeline.defs.resources import StoreResource
from rollout_pipeline.defs.retention import nightly_retention
from rollout_pipeline.defs.routing import routing_sensor
from rollout_pipeline.defs.runner import decision_of
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.simulate.day import simulate_day
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.rollouts import decision_history, latest_rollout, start_rollout
from rollout_pipeline.store.routing import read_routing, routing_history_rows
from rollout_pipeline.store.teardown import teardown_records

MODEL = "diabetes"
FIRST_DAY = dt.date(2026, 7, 1)
RESOURCES = {"store": StoreResource(database_url=dg.EnvVar("ROLLOUT_DATABASE_URL"))}


def _at(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), dt.UTC)


def _launch(instance, job_name: str, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """What the daemon does with a run request, in this process."""
    job = defs.resolve_job_def(job_name)
    return job.execute_in_process(
        run_config=request.run_config or None, instance=instance, partition_key=request.partition_key,
        tags=request.tags, raise_on_error=True, resources=RESOURCES,
    )


def _routes(engine) -> dict[str, tuple[str, float, bool]]:
    with engine.connect() as conn:
        routing = read_routing(conn, MODEL)
    return {r.variant: (r.role, r.traffic_percent, r.shadow) for r in routing.routes}


def _tick(instance, cursor: str | None) -> dg.SensorResult:
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=RESOURCES) as context:
        return routing_sensor(context)


def _night(instance, engine, day: dt.date, cursor: str | None) -> tuple[dict, str]:
    """The night after ``day``: schedule -> daily run (decides and applies) -> routing sensor (nothing to do)."""
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=_at(day + dt.timedelta(days=1), 2),
                                   resources=RESOURCES) as context:
        requests = nightly_analysis(context)
    assert [r.partition_key for r in requests] == [f"{day.isoformat()}|{MODEL}"]
    assert requests[0].tags["rollout/actor"] == "schedule"
    decided = decision_of(_launch(instance, "daily_analysis", requests[0]))
    assert decided["applied"] is True  # stored and applied in the decision's own transaction

    sensor = _tick(instance, cursor)
    assert sensor.run_requests == []  # applied already: nothing left for the routing sensor
    return decided, sensor.cursor


def test_shadow_to_production_to_retired_through_schedule_and_sensors(pg_url, monkeypatch, tmp_path):
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", pg_url)
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
    engine = make_engine(pg_url)
    # As the demo: the seed's steps at 16,000 requests a day, one a night, no force.
    policy = Policy(retention_days=3)
    with engine.begin() as conn:
        start_rollout(conn, MODEL, "v1", "v2", policy, actor="test")
    assert _routes(engine) == {"v1": ("stable", 100.0, False), "v2": ("candidate", 0.0, True)}

    expected = [
        # During canary each model shadows the other's requests (shadow_stable_during_canary and
        # shadow_candidate_during_canary): the 1% step is judged pair by pair on the whole day.
        ("shadow", 0, "canary", 1, {"v1": ("stable", 99.0, True), "v2": ("candidate", 1.0, True)}),
        ("canary", 1, "canary", 20, {"v1": ("stable", 80.0, True), "v2": ("candidate", 20.0, True)}),
        ("canary", 20, "canary", 50, {"v1": ("stable", 50.0, True), "v2": ("candidate", 50.0, True)}),
        ("canary", 50, "production", 100, {"v2": ("stable", 100.0, False), "v1": ("inactive", 0.0, True)}),
    ]
    cursor = None
    with dg.instance_for_test() as instance:
        for i, (stage_before, pct_before, stage_after, pct_after, routes) in enumerate(expected):
            day = FIRST_DAY + dt.timedelta(days=i)
            simulate_day(engine, MODEL, day, 16000, "healthy", seed=i, spill_dir=tmp_path / "spill")
            decided, cursor = _night(instance, engine, day, cursor)
            assert decided["action"] == "promote", decided["reasons"]
            assert decided["from"] == {"stage": stage_before, "canary_percent": pct_before}
            assert decided["to"] == {"stage": stage_after, "canary_percent": pct_after}
            assert _routes(engine) == routes, day
            with engine.connect() as conn:
                last = routing_history_rows(conn, MODEL)[-1]
            assert (last.version, last.decision_id, last.actor) == (i + 2, decided["decision_id"], "schedule")
            assert last.reason.startswith(f"promote on {day}")

        production_day = FIRST_DAY + dt.timedelta(days=len(expected) - 1)
        with engine.connect() as conn:
            assert read_routing(conn, MODEL).route("v1").inactive_since == production_day
            assert latest_rollout(conn, MODEL).stage == "production"
            assert all(d.applied_at is not None for d in decision_history(conn, MODEL))

        # The day after promotion the old model shadows the new one, and the analysis goes on.
        watch_day = production_day + dt.timedelta(days=1)
        simulate_day(engine, MODEL, watch_day, 3000, "healthy", seed=9, spill_dir=tmp_path / "spill")
        watched, cursor = _night(instance, engine, watch_day, cursor)
        assert watched["action"] == "hold", watched["reasons"]
        assert watched["reasons"][0].startswith("production: the new model holds up against the old one")
        with engine.connect() as conn:
            assert read_routing(conn, MODEL).route("v1").inactive_since == production_day  # the clock runs on

        # Retention: v1 stays deployable for 3 days after going inactive, and is retired on the 4th.
        for k in range(1, 5):
            day = production_day + dt.timedelta(days=k)
            context = dg.build_schedule_context(instance=instance, scheduled_execution_time=_at(day, 3))
            request = nightly_retention(context)
            assert request.run_key == f"retention-{day}"
            _launch(instance, "retention", request)
            role = _routes(engine)["v1"]
            assert role == (("retired", 0.0, False) if k == 4 else ("inactive", 0.0, True)), (k, role)
        with engine.connect() as conn:
            (record,) = teardown_records(conn, model=MODEL)
            history = routing_history_rows(conn, MODEL)
        assert (record.variant, record.status, record.day, record.inactive_since) == (
            "v1", "done", production_day + dt.timedelta(days=4), production_day)
        assert history[-1].reason.startswith("teardown: v1 inactive since")
        assert _routes(engine)["v2"] == ("stable", 100.0, False)
    engine.dispose()


def test_after_promotion_a_failing_new_model_is_rolled_back_on_the_data(pg_url, monkeypatch, tmp_path):
    """v2 in production, v1 shadowing it: a day where v2 breaks the latency SLO brings v1 back at once."""
    from rollout_pipeline.store.logs import write_predictions
    from rollout_pipeline_tests.factories import log_day, promoted

    monkeypatch.setenv("ROLLOUT_DATABASE_URL", pg_url)
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        rollout = start_rollout(conn, MODEL, "v1", "v2", Policy(), actor="test")
        promoted(conn, rollout, FIRST_DAY, ("canary", 50), ("production", 100))
    day = FIRST_DAY + dt.timedelta(days=1)
    # Served answers come from v2 now, shadow answers from v1; v2's latency went up tenfold.
    rows = [r._replace(latency_ms=r.latency_ms * 20) if r.variant == "v2" else r
            for r in log_day(MODEL, day, "v2", "v1", requests=1500)]
    write_predictions(engine, rows)
    with dg.instance_for_test() as instance:
        decided, _ = _night(instance, engine, day, None)
    assert decided["action"] == "rollback", decided["reasons"]
    assert decided["reasons"][0].startswith("after promotion, critical failure")
    assert any("SLO" in r for r in decided["reasons"])
    assert decided["from"] == {"stage": "production", "canary_percent": 100}
    assert _routes(engine) == {"v1": ("stable", 100.0, False), "v2": ("inactive", 0.0, False)}
    engine.dispose()
