"""The ``force_decision`` job, as the UI launches it: a day never analysed is forced and shows as that partition's
decision; its config is checked before launch (a missing reason, an unknown action); a blank reason is refused
at run time, once, and the job is never retried after a step failure."""

import datetime as dt

import dagster as dg
import pytest

from rollout_pipeline.defs.force import force_decision
from rollout_pipeline.defs.night import NO_RETRY_ON_STEP_FAILURE
from rollout_pipeline.defs.resources import Notifier, StoreResource
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.rollouts import decision_history, start_rollout

D1 = dt.date(2026, 6, 1)


@pytest.fixture
def store(db_url, monkeypatch, tmp_path):
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", db_url)
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path))
    engine = make_engine(db_url)
    with engine.begin() as conn:
        start_rollout(conn, "m", "v1", "v2", Policy(), actor="test")
    yield engine
    engine.dispose()


def _run(instance, config: dict):
    resources = {"store": StoreResource(database_url=dg.EnvVar("ROLLOUT_DATABASE_URL")), "notifier": Notifier()}
    return force_decision.execute_in_process(run_config={"ops": {"force_day": {"config": config}}},
                                             instance=instance, resources=resources, raise_on_error=False,
                                             tags={"rollout/actor": "ana (ui)"})


def test_a_day_never_analysed_is_forced_and_shown_as_its_partition_s_decision(store, instance):
    result = _run(instance, {"model": "m", "date": D1.isoformat(), "action": "rollback", "reason": "p99 alerts"})
    assert result.success
    with store.connect() as conn:
        (row,) = decision_history(conn, "m")
    assert row.action == "rollback" and row.forced and row.actor == "ana (ui)"
    assert row.metrics["evidence"] is None  # never analysed: the decision says no evidence existed
    assert row.reasons[0] == "forced rollback by ana (ui): p99 alerts"
    assert D1.isoformat() in instance.get_dynamic_partitions("days") and "m" in instance.get_dynamic_partitions("models")
    (record,) = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("decision"), asset_partitions=[f"{D1}|m"]), limit=1).records
    meta = record.asset_materialization.metadata
    assert meta["action"].value == "rollback" and meta["decision_id"].value == row.id and meta["forced"].value
    assert instance.get_run_by_id(result.run_id).tags["rollout/action"] == "rollback"


@pytest.mark.parametrize("config, field", [
    ({"model": "m", "date": "2026-06-01", "action": "rollback"}, "reason"),  # missing reason
    ({"model": "m", "date": "2026-06-01", "action": "skip", "reason": "x"}, "action"),  # not an action
    ({"date": "2026-06-01", "action": "hold", "reason": "x"}, "model"),
])
def test_the_config_is_checked_before_launch(config, field):
    with pytest.raises(dg.DagsterInvalidConfigError, match=field):
        dg.validate_run_config(force_decision, {"ops": {"force_day": {"config": config}}})


@pytest.mark.parametrize("config, message", [
    ({"model": "m", "date": "2026-06-01", "action": "hold", "reason": "   "}, "needs a reason"),
    ({"model": "m", "date": "2999-01-01", "action": "hold", "reason": "x"}, "in the future"),
    ({"model": "nope", "date": "2026-06-01", "action": "hold", "reason": "x"}, "nope has no rollout"),
])
def test_a_refusal_fails_once_in_one_line_and_is_not_retried(store, instance, config, message):
    result = _run(instance, config)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert message in failure.step_failure_data.user_failure_data.description
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    with store.connect() as conn:
        assert decision_history(conn, "m") == []
    # The instance's run retries skip a run that failed in a step (a refusal): the job says so.
    assert NO_RETRY_ON_STEP_FAILURE.items() <= force_decision.tags.items()
