"""Approval gates through the decision service, the routing sensor, the Dagster job and the CLI.

Covers: with ``require_approval_for: [1]`` a healthy shadow day's promotion is stored pending and not applied (the
routing unchanged, the routing sensor skips it) until ``approve`` applies it in one transaction, audited with the
operator and the reason in the decision row and the routing history (both backends); ``reject`` holds or rolls back;
a later night keeps waiting and says whether the evidence still passes, and an approval then still applies; a
pending promotion past ``approval_expiry_days`` is expired into a hold by the next night or by ``approve``; the
refusals in one line; the ``approve_decision`` job from run config; ``decide --json``, ``status --json``,
``approve`` and ``reject`` from the CLI. Evidence is one small collected day stored under each date.
"""

import dataclasses
import datetime as dt
import json

import dagster as dg
import pytest
from click.testing import CliRunner

from rollout_pipeline.cli import cli
from rollout_pipeline.decision_requests import Approval, Force, Nightly
from rollout_pipeline.decisions import DecisionRefused, make_approval, make_decision
from rollout_pipeline.defs.approvals import approve_decision
from rollout_pipeline.defs.resources import Notifier, StoreResource
from rollout_pipeline.defs.routing import routing_sensor
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.store import evidence as evidence_store
from rollout_pipeline.store import rollouts as repo
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.logs import write_predictions
from rollout_pipeline.store.routing import read_routing, routing_history_rows
from rollout_pipeline.store.summary import collect_day
from rollout_pipeline.validation.suites import LOG_QUALITY, ExpectationOutcome, SuiteResult
from rollout_pipeline_tests.factories import log_day

D = dt.date(2026, 6, 1)
GATED = Policy(min_shadow_days=1, require_approval_for=(1,), approval_expiry_days=3)
# The job and the CLI judge expiry on the real UTC day: a century of expiry keeps D approvable whatever today is.
UNHURRIED = Policy(min_shadow_days=1, require_approval_for=(1,), approval_expiry_days=36_500)
PASSED = SuiteResult(LOG_QUALITY, True, (ExpectationOutcome("rows", "rows present", True, False, "ok"),))


def _start(engine, model: str = "m", policy: Policy = GATED):
    """A rollout in shadow and one small healthy shadow day collected (its summary is reused for every day)."""
    write_predictions(engine, log_day(model, D, "v1", "v2", requests=600))
    with engine.begin() as conn:
        repo.start_rollout(conn, model, "v1", "v2", policy, actor="test")
        return collect_day(conn, model, D, "v1", "v2")


def _night(engine, summary, day: dt.date, model: str = "m", today: dt.date | None = None):
    """The night's analysis of ``day`` (run on ``today``, default the next day): its evidence stored (log quality
    passed), then decided by the service."""
    with engine.begin() as conn:
        rollout = repo.rollout_for_day(conn, model, day)
        state = repo.state_before(conn, rollout, day)
        evidence_id = evidence_store.save_summary(conn, dataclasses.replace(summary, day=day, accuracy_day=day),
                                                  rollout_id=rollout.id, stage=state.stage, run_id=f"run-{day}")
        evidence_store.save_validation(conn, evidence_id, LOG_QUALITY, PASSED)
    return make_decision(engine, Nightly(model, day, "schedule", run_id=f"run-{day}",
                                         today=today or day + dt.timedelta(days=1)))


def _verdict(engine, verdict: str, day: dt.date = D, reason: str | None = "metrics reviewed", today=None, **kw):
    return make_approval(engine, Approval("m", day, "ana", verdict, reason, today=today or day + dt.timedelta(days=1),
                                          **kw))


def _routing(engine, model: str = "m"):
    with engine.connect() as conn:
        return read_routing(conn, model)


def test_a_healthy_shadow_day_waits_for_approval_then_approve_applies_it(engine, db_url, monkeypatch):
    summary = _start(engine)
    before = _routing(engine)
    pending = _night(engine, summary, D)
    assert pending.record.action == "promote" and pending.record.approval == "pending"
    assert pending.output()["approval"] == "pending" and pending.output()["applied"] is False
    assert _routing(engine) == before and before.route("v2").traffic_percent == 0  # the routing did not change
    with engine.connect() as conn:
        assert repo.pending_decisions(conn) == []  # not for the routing sensor
        assert repo.active_rollout(conn, "m").stage == "shadow"
    # The routing sensor does not apply it.
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", db_url)
    with dg.instance_for_test() as instance, dg.build_sensor_context(
            instance=instance, resources={"store": StoreResource(database_url=dg.EnvVar("ROLLOUT_DATABASE_URL"))}
    ) as context:
        result = routing_sensor(context)
    assert not result.run_requests and "no unapplied decision" in result.skip_reason.skip_message

    approved = _verdict(engine, "approve")
    assert approved.applied and approved.record.approval == "approved" and approved.record.actor == "ana"
    assert approved.record.reasons[0] == "approved by ana: metrics reviewed"
    assert (approved.record.stage_after, approved.record.percent_after) == ("canary", 1)
    routing = _routing(engine)
    assert routing.route("v2").traffic_percent == 1 and routing.version == before.version + 1
    with engine.connect() as conn:
        (change,) = [h for h in routing_history_rows(conn, "m") if h.version == routing.version]
        history = repo.decision_history(conn, "m", include_superseded=True)
        assert repo.active_rollout(conn, "m").canary_percent == 1
    assert change.actor == "ana" and change.decision_id == approved.record.id
    assert "approved by ana: metrics reviewed" in change.reason
    # The audit keeps the pending decision, superseded by the approval that names it.
    assert [(d.id, d.approval) for d in history] == [(pending.record.id, "pending"), (approved.record.id, "approved")]
    assert approved.record.metrics["approval"]["of"] == pending.record.id
    assert approved.record.metrics["approval"]["operator"] == "ana"
    # Refusals in one line: already approved; the next night starts from canary 1%.
    with pytest.raises(DecisionRefused, match=r"^nothing to approve: m 2026-06-01's promotion is already approved"):
        _verdict(engine, "approve")
    nxt = _night(engine, summary, D + dt.timedelta(days=1))
    assert (nxt.record.stage_before, nxt.record.percent_before) == ("canary", 1)


@pytest.mark.parametrize("rollback, action, candidate_role", [(False, "hold", "candidate"),
                                                              (True, "rollback", "inactive")])
def test_reject_holds_or_rolls_back(sqlite_engine, rollback, action, candidate_role):
    engine = sqlite_engine
    summary = _start(engine)
    _night(engine, summary, D)
    rejected = _verdict(engine, "reject", reason="wait for the campaign to end", rollback=rollback)
    assert rejected.record.action == action and rejected.record.approval == "rejected" and rejected.applied
    assert rejected.record.reasons[0] == "rejected by ana: wait for the campaign to end"
    assert _routing(engine).route("v2").role == candidate_role and _routing(engine).route("v2").traffic_percent == 0
    with pytest.raises(DecisionRefused, match="already rejected"):
        _verdict(engine, "approve")


def test_a_later_night_keeps_waiting_and_an_approval_still_applies(sqlite_engine):
    engine = sqlite_engine
    summary = _start(engine)
    _night(engine, summary, D)
    waiting = _night(engine, summary, D + dt.timedelta(days=1))
    assert waiting.record.action == "hold" and waiting.record.approval is None
    assert waiting.record.reasons == ["waiting for approval of 2026-06-01's promotion to canary 1%; "
                                      "today's evidence still passes"]
    assert _routing(engine).route("v2").traffic_percent == 0
    approved = _verdict(engine, "approve", today=D + dt.timedelta(days=2))
    assert approved.applied and _routing(engine).route("v2").traffic_percent == 1
    with engine.connect() as conn:
        rollout = repo.active_rollout(conn, "m")
        assert (rollout.stage, rollout.canary_percent) == ("canary", 1)
        assert repo.state_before(conn, rollout, D + dt.timedelta(days=2)).canary_percent == 1


def test_an_expired_approval_holds_at_the_next_night_or_at_approve(sqlite_engine):
    engine = sqlite_engine
    summary = _start(engine)
    pending = _night(engine, summary, D)  # recorded as pending on D + 1: approvable until D + 4
    # approve after the expiry: the expiry is recorded (a hold), and the approval refused saying so
    with pytest.raises(DecisionRefused, match=r"^too late: approval of 2026-06-01's promotion to canary 1% expired"):
        _verdict(engine, "approve", today=D + dt.timedelta(days=5))
    with engine.connect() as conn:
        expired = repo.live_decision(conn, "m", D)
    assert expired.action == "hold" and expired.approval == "expired" and expired.metrics["approval"]["of"] == pending.record.id
    assert _routing(engine).route("v2").traffic_percent == 0
    with pytest.raises(DecisionRefused, match="already expired"):
        _verdict(engine, "approve", today=D + dt.timedelta(days=1))


def test_a_day_analysed_late_is_not_expired_at_birth_and_an_expiry_is_the_policy_s(sqlite_engine):
    """The window counts from the day the promotion was recorded as pending, not from its logs' day; whoever
    sees the expiry first, it is recorded under the policy's name."""
    engine = sqlite_engine
    summary = _start(engine)  # approval_expiry_days 3
    late = D + dt.timedelta(days=10)
    pending = _night(engine, summary, D, today=late)  # D's logs analysed ten days later
    assert pending.record.approval == "pending"
    assert pending.record.metrics["approval"] == {"state": "pending", "recorded_on": late.isoformat(),
                                                  "expires_after": (late + dt.timedelta(days=3)).isoformat()}
    with engine.connect() as conn:
        from rollout_pipeline.decision_approvals import pending_approval
        assert pending_approval(conn, "m")["expires_after"] == (late + dt.timedelta(days=3)).isoformat()
    with pytest.raises(DecisionRefused, match=r"^too late: .* not approved by 2026-06-14 .*counted from 2026-06-11"):
        _verdict(engine, "approve", today=late + dt.timedelta(days=4))  # past the window: recorded, refused
    with engine.connect() as conn:
        expired = repo.live_decision(conn, "m", D)
        rollout = repo.active_rollout(conn, "m")
    assert expired.approval == "expired" and expired.actor == f"policy {rollout.policy_version}" != "ana"


def test_approving_a_day_analysed_late_within_its_window_applies_it(sqlite_engine):
    engine = sqlite_engine
    summary = _start(engine)
    late = D + dt.timedelta(days=10)
    _night(engine, summary, D, today=late)
    approved = _verdict(engine, "approve", today=late + dt.timedelta(days=3))  # the window's last day
    assert approved.applied and approved.record.approval == "approved"


def test_the_night_past_the_expiry_expires_the_pending_promotion(sqlite_engine):
    engine = sqlite_engine
    summary = _start(engine, policy=Policy(min_shadow_days=1, require_approval_for=(1,), approval_expiry_days=1))
    _night(engine, summary, D)
    assert _night(engine, summary, D + dt.timedelta(days=1)).record.reasons[0].startswith("waiting for approval")
    third = _night(engine, summary, D + dt.timedelta(days=2))  # D + 2 > D + 1: expired, and today decides anew
    with engine.connect() as conn:
        expired = repo.live_decision(conn, "m", D)
    assert expired.approval == "expired" and expired.action == "hold"
    assert third.record.approval == "pending" and third.record.action == "promote"  # a new promotion, waiting


def test_refusals_in_one_line(sqlite_engine):
    engine = sqlite_engine
    _start(engine)
    with pytest.raises(DecisionRefused, match=r"^nothing to approve: m 2026-06-01 has no decision$"):
        _verdict(engine, "approve")
    make_decision(engine, Force("m", D, "ana", "hold", "campaign"))
    with pytest.raises(DecisionRefused, match=r"does not wait for approval$"):
        _verdict(engine, "reject")
    make_decision(engine, Force("m", D, "ana", "promote", "go"))  # a person: no approval
    with engine.connect() as conn:
        assert repo.live_decision(conn, "m", D).approval is None


def test_reason_missing_is_refused(sqlite_engine):
    engine = sqlite_engine
    summary = _start(engine)
    _night(engine, summary, D)
    with pytest.raises(DecisionRefused, match=r"^to approve needs a reason"):
        _verdict(engine, "approve", reason="  ")


def test_the_approve_decision_job_from_run_config(sqlite_engine, sqlite_url, monkeypatch):
    engine = sqlite_engine
    summary = _start(engine, policy=UNHURRIED)
    _night(engine, summary, D)
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", sqlite_url)
    resources = {"store": StoreResource(database_url=dg.EnvVar("ROLLOUT_DATABASE_URL")), "notifier": Notifier()}
    config = {"model": "m", "date": str(D), "verdict": "approve", "reason": "looks good", "operator": "bo"}
    with dg.instance_for_test() as instance:
        result = approve_decision.execute_in_process(
            run_config={"ops": {"give_verdict": {"config": config}}}, instance=instance, resources=resources)
        assert result.success
        out = result.output_for_node("give_verdict")
        again = approve_decision.execute_in_process(
            run_config={"ops": {"give_verdict": {"config": config}}}, instance=instance, resources=resources,
            raise_on_error=False)
    assert out["approval"] == "approved" and out["applied"] and out["operator"] == "bo"
    assert _routing(engine).route("v2").traffic_percent == 1
    assert not again.success  # already approved: refused, one line
    (failure,) = [e for e in again.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "already approved" in failure.step_failure_data.error.message


@pytest.fixture
def sqlite_engine(sqlite_url):
    engine = make_engine(sqlite_url)  # the fixture migrated it
    yield engine
    engine.dispose()


def test_the_cli_decide_status_approve_and_reject(tmp_path, monkeypatch):
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("ROLLOUT_DATABASE_URL", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    policy = tmp_path / "gated.yaml"
    policy.write_text("require_approval_for: [1]\napproval_expiry_days: 36500\n")
    run = lambda *args: CliRunner().invoke(cli, list(args))  # noqa: E731
    assert run("init-db").exit_code == 0
    assert run("rollout", "start", "--model", "m", "--stable", "v1", "--candidate", "v2", "--policy",
               str(policy)).exit_code == 0
    engine = make_engine(f"sqlite:///{tmp_path / 'state' / 'rollout.db'}")
    write_predictions(engine, log_day("m", D, "v1", "v2"))
    engine.dispose()
    out = run("decide", "--model", "m", "--date", str(D), "--json")
    assert out.exit_code == 0, out.output
    decision = json.loads(out.output[out.output.index("{"):])
    assert decision["action"] == "promote" and decision["approval"] == "pending" and decision["applied"] is False
    status = json.loads(run("status", "--model", "m", "--json").output)
    assert status["stage"] == "shadow" and status["approval"]["date"] == str(D)
    assert status["approval"]["to"] == {"stage": "canary", "canary_percent": 1}
    assert sorted((r["variant"], r["traffic_percent"]) for r in status["routing"]) == [("v1", 100.0), ("v2", 0.0)]
    assert "m: waiting for approval of 2026-06-01's promotion to canary 1%" in run("status").output
    blank = run("approve", "--model", "m", "--date", str(D), "--reason", " ")
    assert blank.exit_code == 1 and blank.stderr.strip().count("\n") == 0 and "--reason must say why" in blank.stderr
    approved = run("approve", "--model", "m", "--date", str(D), "--reason", "reviewed", "--operator", "bo", "--json")
    assert approved.exit_code == 0, approved.output
    out = json.loads(approved.output)
    assert out["approval"] == "approved" and out["applied"] is True and out["operator"] == "bo (cli)"
    assert out["reasons"][0] == "approved by bo (cli): reviewed"
    status = json.loads(run("status", "--model", "m", "--json").output)
    assert status["approval"] is None and (status["stage"], status["canary_percent"]) == ("canary", 1)
    again = run("reject", "--model", "m", "--date", str(D), "--reason", "too late")
    line = again.stderr.strip()
    assert again.exit_code == 1 and "\n" not in line
    assert line.startswith(f"Error: nothing to reject: m 2026-06-01's promotion is already approved (decision "
                           f"#{out['decision_id']} by bo (cli) at ")
    nothing = run("approve", "--model", "m", "--date", "2026-05-31", "--reason", "x")
    assert nothing.exit_code == 1 and "nothing to approve: m 2026-05-31 has no decision" in nothing.stderr
