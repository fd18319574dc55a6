"""The nightly schedule's one run for many models, executed in-process on a temporary instance (PostgreSQL).

The schedule asks for the night's partitions as one run per contiguous range of the
models dimension; that run materializes every partition with its own metadata and
check evaluations; one model's failure (a blocked day, a refused decision, a database
error) stays that model's while every other model is decided, stored, applied and
materialized; runs of one partition behave as before.
"""

import datetime as dt

import dagster as dg
import pytest
import sqlalchemy as sa

from rollout_pipeline.definitions import defs
from rollout_pipeline.defs import assets as assets_module
from rollout_pipeline.defs.jobs import nightly_analysis
from rollout_pipeline.defs.night import FAILED, partition_ranges
from rollout_pipeline.defs.resources import resources_from_environment
from rollout_pipeline.defs.runner import run_day
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.domain.records import PredictionRow
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.logs import write_predictions
from rollout_pipeline.store.rollouts import decision_history, start_rollout
from rollout_pipeline.store.tables import rollouts
from rollout_pipeline_tests.factories import log_day

DAY = dt.date(2026, 6, 1)
MODELS = ["m1", "m2", "m3"]


@pytest.fixture
def instance(persistent_instance):
    """The schedule's context needs an instance it can reference: on files, not in memory."""
    return persistent_instance


@pytest.fixture
def fleet(pg_url, monkeypatch):
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", pg_url)
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        for model in MODELS:
            start_rollout(conn, model, "v1", "v2", Policy(), actor="test")
    yield engine
    engine.dispose()


def _requests(instance, day: dt.date = DAY) -> list[dg.RunRequest]:
    at = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(2), dt.UTC)
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=at,
                                   resources=resources_from_environment()) as context:
        return list(nightly_analysis(context))


def _launch(instance, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """What the daemon's run worker does with the request, in this process."""
    return defs.resolve_job_def("daily_analysis").execute_in_process(
        instance=instance, partition_key=request.partition_key, tags=request.tags, raise_on_error=False,
        resources=resources_from_environment())


def _materialized(result, asset: str) -> dict[str, dict]:
    """Metadata of each partition ``asset`` materialized in the run, by model."""
    out = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION" and event.asset_key.path == [asset]:
            m = event.event_specific_data.materialization
            out[m.partition.split("|")[1]] = {k: v.value for k, v in m.metadata.items()}
    return out


def _checks(result) -> dict[tuple[str, str], bool]:
    out = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            out[(str(data.partition).split("|")[1], data.check_name)] = data.passed
    return out


def _live(engine, model: str):
    with engine.connect() as conn:
        history = [d for d in decision_history(conn, model) if d.day == DAY]
    return history[-1] if history else None


def test_ranges_follow_the_models_order():
    assert partition_ranges(["a", "b", "c", "d", "e"], ["a", "b", "d"]) == [("a", "b"), ("d", "d")]
    assert partition_ranges(["a", "b"], []) == []
    assert partition_ranges(["a", "b", "c"], ["c", "a", "b"]) == [("a", "c")]


def test_the_night_is_one_run_with_each_partitions_own_materializations_and_checks(fleet, instance):
    for i, model in enumerate(MODELS):
        write_predictions(fleet, log_day(model, DAY, "v1", "v2", seed=i))
    (request,) = _requests(instance)
    assert request.partition_key is None and request.tags["rollout/actor"] == "schedule"
    assert (request.tags["dagster/asset_partition_range_start"], request.tags["dagster/asset_partition_range_end"]) \
        == (f"{DAY}|m1", f"{DAY}|m3")
    result = _launch(instance, request)
    assert result.success
    for asset in ("day_summary", "judgement", "decision"):
        metadata = _materialized(result, asset)
        assert sorted(metadata) == MODELS, asset
        assert all(FAILED not in m for m in metadata.values())
    decided = _materialized(result, "decision")
    for model in MODELS:  # each partition carries its own review: its own decision id, reasons and report
        record = _live(fleet, model)
        assert decided[model]["decision_id"] == record.id and decided[model]["action"] == record.action
        assert decided[model]["decision"]["decision_id"] == record.id
        assert model in decided[model]["report"]
        assert record.applied_at is not None and record.run_id == result.run_id
    assert len({d["decision_id"] for d in decided.values()}) == 3
    checks = _checks(result)
    assert {(m, c) for m, c in checks} == {(m, c) for m in MODELS
                                           for c in ("log_quality", "latency_slo", "prediction_distribution")}
    assert checks[("m1", "log_quality")] is True
    # Dagster knows each partition as materialized.
    partitions = instance.get_materialized_partitions(dg.AssetKey("decision"))
    assert partitions == {f"{DAY}|{m}" for m in MODELS}
    assert instance.get_run_by_id(result.run_id).tags["rollout/action"].endswith("promote")


def test_a_blocked_day_is_held_in_the_run_and_the_others_are_decided(fleet, instance):
    for i, model in enumerate(MODELS):
        rows = log_day(model, DAY, "v1", "v2", seed=i)
        if model == "m2":
            rows.append(PredictionRow(None, rows[0].ts, model, "v2", False, None, -5.0, "exploded", 1.0, None))
        write_predictions(fleet, rows)
    (request,) = _requests(instance)
    result = _launch(instance, request)
    assert result.success
    assert _checks(result)[("m2", "log_quality")] is False and _checks(result)[("m1", "log_quality")] is True
    decided = _materialized(result, "decision")
    assert decided["m2"]["action"] == "hold"
    held = _live(fleet, "m2")
    assert held.metrics["source"] == "blocked" and held.metrics["blocked_run"] == result.run_id
    assert "correlation id" in " ".join(held.reasons)
    assert decided["m1"]["action"] == decided["m3"]["action"] == "promote"


def test_one_models_failure_leaves_the_others_decided_and_fails_the_run_naming_it(fleet, instance, monkeypatch):
    for i, model in enumerate(MODELS):
        write_predictions(fleet, log_day(model, DAY, "v1", "v2", seed=i))
    real = assets_module.evidence_store.save_summary

    def broken_for_m3(conn, summary, **kwargs):
        if summary.model_name == "m3":
            raise sa.exc.OperationalError("INSERT", {}, Exception("server closed the connection unexpectedly"))
        return real(conn, summary, **kwargs)

    monkeypatch.setattr(assets_module.evidence_store, "save_summary", broken_for_m3)
    # m2's next day is decided already: its night is refused (a canary never steps back in time).
    write_predictions(fleet, log_day("m2", DAY + dt.timedelta(days=1), "v1", "v2", seed=7))
    assert run_day("m2", DAY + dt.timedelta(days=1), instance=instance).success

    (request,) = _requests(instance)
    result = _launch(instance, request)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.user_failure_data.description
    assert message.startswith("2 of 3 models not decided")
    assert "m2: refusing to decide" in message and "m3: not done: day_summary: OperationalError" in message
    # m1 is decided, applied and materialized; m2 and m3 have no decision materialized for the day.
    assert sorted(_materialized(result, "decision")) == ["m1"]
    assert _live(fleet, "m1").applied_at is not None and _live(fleet, "m3") is None
    assert FAILED in _materialized(result, "day_summary")["m3"]
    assert "m3" not in {m for m, _ in _checks(result)}
    # The range run is not retried after a step failure: the retry would decide m1 again.
    assert request.tags["dagster/retry_on_asset_or_op_failure"] == "false"


def test_a_model_without_an_active_rollout_splits_the_range(fleet, instance):
    instance.add_dynamic_partitions("models", MODELS)  # as earlier nights registered them, in this order
    with fleet.begin() as conn:  # m2's rollout is over: the night has nothing to analyse for it
        conn.execute(sa.update(rollouts).where(rollouts.c.model_name == "m2").values(active=False))
    requests = _requests(instance)
    assert [r.partition_key for r in requests] == [f"{DAY}|m1", f"{DAY}|m3"]  # ranges of one: ordinary runs
    assert all(r.tags["rollout/actor"] == "schedule" for r in requests)


def test_a_forced_decision_takes_one_partition(fleet, instance):
    for i, model in enumerate(MODELS):
        write_predictions(fleet, log_day(model, DAY, "v1", "v2", seed=i))
    (request,) = _requests(instance)
    result = defs.resolve_job_def("daily_analysis").execute_in_process(
        instance=instance, tags=request.tags, raise_on_error=False, resources=resources_from_environment(),
        run_config={"ops": {"decision": {"config": {"force": "hold", "reason": "r", "operator": "op"}}}})
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "one partition" in failure.step_failure_data.user_failure_data.description
    assert _live(fleet, "m1") is None
