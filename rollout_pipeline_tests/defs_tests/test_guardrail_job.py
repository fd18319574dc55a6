"""The intraday guardrail through Dagster: the hourly schedule on the day's logs so far, on both backends.

A 20% canary's day is written up to the hour the schedule fires; an error burst there is rolled back by that hour's
run (actor guardrail, the routing changed at once), a healthy day is left alone, and the night's analysis of the
completed day keeps the guardrail's decision.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from rollout_pipeline.decision_requests import Force, Nightly
from rollout_pipeline.decisions import make_decision
from rollout_pipeline.defs.guardrail import guardrail, hourly_guardrail
from rollout_pipeline.defs.resources import Notifier, StoreResource
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.quality.traffic import DaySpec, generate
from rollout_pipeline.store import rollouts as repo
from rollout_pipeline.store.logs import write_predictions
from rollout_pipeline.store.routing import read_routing

DAY = dt.date(2026, 6, 10)


def _canary_at_20(engine, model: str, policy: Policy = Policy()) -> None:
    with engine.begin() as conn:
        repo.start_rollout(conn, model, "v1", "v2", policy, actor="test")
    for k in (2, 1):  # shadow -> 1% -> 20%, forced on the two days before
        make_decision(engine, Force(model, DAY - dt.timedelta(days=k), "test", "promote", "test setup"))


def _run_the_hour(monkeypatch, db_url, hour: int):
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", db_url)
    at = dt.datetime.combine(DAY, dt.time(hour, 15), dt.UTC)
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=at)
        request = hourly_guardrail(context)
        result = guardrail.execute_in_process(
            run_config=request.run_config, instance=instance,
            resources={"store": StoreResource(database_url=dg.EnvVar("ROLLOUT_DATABASE_URL")), "notifier": Notifier()})
    assert result.success
    return result.output_for_node("intraday_guardrail")


def _logs_until(engine, model: str, spec: DaySpec, hour: int) -> None:
    rows, _, _ = generate(spec, model)
    until = dt.datetime.combine(DAY, dt.time(hour, 15), dt.UTC)
    write_predictions(engine, [r for r in rows if r.ts < until])


def _burst(seed: int = 8) -> tuple[DaySpec, int]:
    """A 20% canary's day with an error burst, and the first hourly run at least an hour into the burst."""
    spec = DaySpec("canary-20", 12000, seed, "error_burst", day=DAY)
    return spec, int(generate(spec, "m")[2]["start_hour"]) + 2


def test_an_error_burst_on_a_canary_is_rolled_back_by_the_next_hourly_run(engine, db_url, monkeypatch):
    _canary_at_20(engine, "burst")
    spec, hour = _burst()
    _logs_until(engine, "burst", spec, hour)
    (row,) = _run_the_hour(monkeypatch, db_url, hour)
    assert row["action"] == "rollback" and row["applied"], row
    with engine.connect() as conn:
        decision = repo.live_decision(conn, "burst", DAY)
        routing = read_routing(conn, "burst")
    assert decision.actor == "guardrail" and decision.action == "rollback" and decision.day == DAY
    assert any("errors: candidate" in r and "any-time-valid" in r for r in decision.reasons), decision.reasons
    assert routing.route("v2").traffic_percent == 0 and routing.route("v1").traffic_percent == 100
    # The night's analysis of the completed day keeps the guardrail's decision (it never supersedes it).
    kept = make_decision(engine, Nightly("burst", DAY, "schedule", run_id="nightly"))
    assert kept.record.id == decision.id and kept.record.actor == "guardrail"


def test_a_healthy_canary_day_is_left_alone_at_every_look(engine, db_url, monkeypatch):
    _canary_at_20(engine, "calm")
    _logs_until(engine, "calm", DaySpec("canary-20", 12000, 9, None, day=DAY), 23)
    for hour in (6, 23):
        (row,) = _run_the_hour(monkeypatch, db_url, hour)
        assert row["action"] == "none" and not row["alarms"], row
    with engine.connect() as conn:
        assert repo.live_decision(conn, "calm", DAY) is None
        assert repo.active_rollout(conn, "calm").canary_percent == 20


def test_a_rollout_in_shadow_or_with_the_guardrail_off_is_not_watched(engine, db_url, monkeypatch):
    with engine.begin() as conn:
        repo.start_rollout(conn, "quiet", "v1", "v2", Policy(), actor="test")
    _canary_at_20(engine, "off", Policy(guardrail=False))
    spec, hour = _burst()
    _logs_until(engine, "off", spec, hour)
    assert _run_the_hour(monkeypatch, db_url, hour) == []
    with engine.connect() as conn:
        assert repo.live_decision(conn, "off", DAY) is None
