"""The routing sensor and job: one run per decision, idempotent applies, healing, concurrent writers."""

import datetime as dt
import threading
import uuid

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

from rollout_pipeline.defs.resources import StoreResource
from rollout_pipeline.defs.routing import DECISION_TAG, apply_routing, routing_sensor
from rollout_pipeline.domain.decide import Decision, RolloutState
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.domain.routing import VariantRoute
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.rollouts import apply_decision, get_decision, record_decision, start_rollout
from rollout_pipeline.store.routing import ConcurrentUpdate, read_routing, routing_history_rows, write_routing

DAY = dt.date(2026, 7, 1)
RESOURCES = {"store": StoreResource(database_url=dg.EnvVar("ROLLOUT_DATABASE_URL"))}  # set by the fixture
PROMOTE = Decision("promote", False, ("judge score 100 >= pass 95",), RolloutState("shadow", 0), "canary", 1)


@pytest.fixture
def store(db_url, monkeypatch):
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", db_url)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        rollout = start_rollout(conn, "churn", "v1", "v2", Policy(), actor="test")
    yield engine, rollout
    engine.dispose()


def _decide(engine, rollout, day=DAY, materialize_in=None) -> int:
    with engine.begin() as conn:
        record = record_decision(conn, rollout, day, PROMOTE, actor="schedule", metrics={}, run_id=None)
    if materialize_in is not None:
        materialize_in.report_runless_asset_event(dg.AssetMaterialization(
            asset_key="decision", partition=f"{day}|churn", metadata={"decision_id": record.id}))
    return record.id


def _tick(instance, cursor=None) -> dg.SensorResult:
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=RESOURCES) as context:
        return routing_sensor(context)


def _apply(instance, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    return apply_routing.execute_in_process(run_config=request.run_config, instance=instance, tags=request.tags,
                                            resources=RESOURCES)


def test_a_new_decision_yields_one_run_request_and_a_seen_one_none(store):
    engine, rollout = store
    with dg.instance_for_test() as instance:
        decision_id = _decide(engine, rollout, materialize_in=instance)
        first = _tick(instance)
        assert [r.run_key for r in first.run_requests] == [f"decision-{decision_id}"]
        request = first.run_requests[0]
        assert request.run_config == {"ops": {"apply_decision_to_routing": {"config": {"decision_id": decision_id}}}}
        assert request.tags[DECISION_TAG] == str(decision_id)

        # Seen (its run not even launched yet): nothing more is asked for.
        second = _tick(instance, first.cursor)
        assert second.run_requests == []

        _apply(instance, request)
        with engine.connect() as conn:
            routing = read_routing(conn, "churn")
            assert get_decision(conn, decision_id).applied_at is not None
        assert {r.variant: r.traffic_percent for r in routing.routes} == {"v1": 99.0, "v2": 1.0}
        assert _tick(instance, second.cursor).run_requests == []


def test_applying_a_decision_twice_changes_nothing(store):
    engine, rollout = store
    with dg.instance_for_test() as instance:
        decision_id = _decide(engine, rollout, materialize_in=instance)
        request = _tick(instance).run_requests[0]
        first = _apply(instance, request).output_for_node("apply_decision_to_routing")
        with engine.connect() as conn:
            before = (read_routing(conn, "churn"), len(routing_history_rows(conn, "churn")))
        again = _apply(instance, request).output_for_node("apply_decision_to_routing")
        with engine.connect() as conn:
            after = (read_routing(conn, "churn"), len(routing_history_rows(conn, "churn")))
    assert first == {"decision_id": decision_id, "applied": True, "routing_version": 2}
    assert again == {"decision_id": decision_id, "applied": False, "routing_version": 2}
    assert before == after
    assert sum(r.traffic_percent for r in after[0].routes) == 100


def test_a_decision_the_cli_applied_yields_no_run(store):
    engine, rollout = store
    with dg.instance_for_test() as instance:
        decision_id = _decide(engine, rollout, materialize_in=instance)
        with engine.begin() as conn:
            assert apply_decision(conn, decision_id, actor="cli")
        result = _tick(instance)
    assert result.run_requests == []


def test_a_crash_after_the_decision_heals_on_the_next_tick(store):
    """The decision row was committed but the process died before its materialization was stored."""
    engine, rollout = store
    with dg.instance_for_test() as instance:
        decision_id = _decide(engine, rollout, materialize_in=None)
        result = _tick(instance)
        assert [r.run_key for r in result.run_requests] == [f"decision-{decision_id}"]


def test_a_failed_routing_run_is_retried_on_the_next_tick(store):
    engine, rollout = store
    with dg.instance_for_test() as instance:
        decision_id = _decide(engine, rollout, materialize_in=instance)
        first = _tick(instance)
        # The routing run crashed before its transaction committed: a failed run, the decision unapplied.
        instance.add_run(DagsterRun(job_name=apply_routing.name, run_id=str(uuid.uuid4()),
                                    tags=first.run_requests[0].tags, status=DagsterRunStatus.FAILURE))
        healed = _tick(instance, first.cursor)
        assert [r.run_key for r in healed.run_requests] == [f"decision-{decision_id}-retry-1"]
        _apply(instance, healed.run_requests[0])
        assert _tick(instance, healed.cursor).run_requests == []
    with engine.connect() as conn:
        assert get_decision(conn, decision_id).applied_at is not None


def test_two_routing_writers_at_once_cannot_both_win(pg_url):
    """Both read version 1 and write at the same moment: exactly one succeeds, the other must re-read."""
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        write_routing(conn, "m", (VariantRoute("a", "stable", 100.0),), expected_version=None, actor="t", reason="init")
    barrier = threading.Barrier(2)
    outcomes = []

    def writer(share: float) -> None:
        try:
            with engine.begin() as conn:
                current = read_routing(conn, "m")
                barrier.wait()
                write_routing(conn, "m", (VariantRoute("a", "stable", 100.0 - share),
                                          VariantRoute("b", "candidate", share)),
                              expected_version=current.version, actor=f"w{share}", reason="race")
            outcomes.append(("ok", share))
        except ConcurrentUpdate:
            outcomes.append(("lost", share))
        except Exception as exc:  # a test thread must report, not vanish
            outcomes.append((repr(exc), share))

    for _ in range(10):
        outcomes.clear()
        threads = [threading.Thread(target=writer, args=(s,)) for s in (20.0, 50.0)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(o for o, _ in outcomes) == ["lost", "ok"], outcomes
        winner = next(s for o, s in outcomes if o == "ok")
        with engine.connect() as conn:
            routing = read_routing(conn, "m")
            history = routing_history_rows(conn, "m")
        assert {r.variant: r.traffic_percent for r in routing.routes} == {"a": 100.0 - winner, "b": winner}
        assert history[-1].version == routing.version and history[-1].actor == f"w{winner}"
    assert len(history) == 11 and routing.version == 11
    engine.dispose()
