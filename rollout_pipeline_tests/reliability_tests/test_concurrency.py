"""Two decision runs for one model and day at once: exactly one is recorded and applied, the other
fails saying why, and the canary never advances twice (PostgreSQL: advisory lock + check in
``record_decision``)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from rollout_pipeline.domain.decide import Evidence, decide
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.store import rollouts as repo
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.logs import write_predictions
from rollout_pipeline.store.routing import read_routing
from rollout_pipeline.store.tables import decisions
from rollout_pipeline_tests.factories import log_day

DAY = dt.date(2026, 11, 28)
PASSING = Evidence(data_quality_failures=(), candidate_requests=1_000_000, critical_failures=(), score=100.0)
ROUNDS = 100
CLI = str(Path(sys.executable).with_name("rollout-pipeline"))


def _decide_and_apply(engine, model: str, barrier: threading.Barrier, outcome: dict, key: str) -> None:
    """The store-level decision path in one transaction (as the decision asset + apply do), with both
    runs' reads done before either records: the two really decide at once."""
    try:
        with engine.begin() as conn:
            rollout = repo.active_rollout(conn, model)
            seen = repo.live_decision(conn, model, DAY)
            state = repo.state_before(conn, rollout, DAY)
            result = decide(state, PASSING, rollout.policy)
            barrier.wait(timeout=30)
            record = repo.record_decision(conn, rollout, DAY, result, actor=key, metrics={}, run_id=key,
                                          expected_previous=seen.id if seen else None)
            applied = repo.apply_decision(conn, record.id, actor=key)
        outcome[key] = ("ok", record.id, applied)
    except repo.ConcurrentDecision as exc:
        outcome[key] = ("refused", str(exc), None)
    except Exception as exc:  # noqa: BLE001 - anything else is a failure of the test, reported below
        outcome[key] = ("error", repr(exc), None)


def test_two_decisions_at_once_never_double_advance_100_rounds(pg_url):
    engine = make_engine(pg_url, pool_size=4)
    policy = Policy(min_shadow_days=0)
    try:
        for n in range(ROUNDS):
            model = f"m{n}"
            rerun = n % 2 == 1  # odd rounds: the day already has a live, applied decision (both re-run it)
            with engine.begin() as conn:
                rollout = repo.start_rollout(conn, model, "v1", "v2", policy, actor="test")
                if rerun:
                    held = decide(repo.state_before(conn, rollout, DAY),
                                  Evidence(["log_quality: forced failure"], 0, (), None), policy)
                    first = repo.record_decision(conn, rollout, DAY, held, actor="first", metrics={}, run_id="first")
                    repo.apply_decision(conn, first.id, actor="first")
                version_before = read_routing(conn, model).version
            barrier = threading.Barrier(2)
            outcome: dict = {}
            threads = [threading.Thread(target=_decide_and_apply, args=(engine, model, barrier, outcome, k))
                       for k in ("a", "b")]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            kinds = sorted(v[0] for v in outcome.values())
            assert kinds == ["ok", "refused"], (n, outcome)
            winner = next(k for k, v in outcome.items() if v[0] == "ok")
            loser_message = next(v[1] for v in outcome.values() if v[0] == "refused")
            assert "decided by another run while this one was deciding" in loser_message
            assert f"run {winner}" in loser_message and "not recorded" in loser_message
            with engine.connect() as conn:
                rollout = repo.latest_rollout(conn, model)
                # One step, not two: shadow -> canary 1%.
                assert (rollout.stage, rollout.canary_percent) == ("canary", 1), n
                assert read_routing(conn, model).version == version_before + 1, n
                rows = conn.execute(sa.select(decisions).where(decisions.c.model_name == model)).all()
                live = [r for r in rows if r.superseded_by is None]
                assert len(live) == 1 and live[0].actor == winner and live[0].applied_at is not None, n
                assert len(rows) == (2 if rerun else 1), n
                promoted = [r for r in rows if r.action == "promote"]
                assert len(promoted) == 1, n
    finally:
        engine.dispose()


def test_a_later_rerun_still_supersedes(pg_url):
    """The check refuses only a concurrent decision: re-running a decided day afterwards supersedes it."""
    engine = make_engine(pg_url)
    policy = Policy(min_shadow_days=0)
    for who in ("first", "second"):
        outcome: dict = {}
        if who == "first":
            with engine.begin() as conn:
                repo.start_rollout(conn, "m", "v1", "v2", policy, actor="test")
        _decide_and_apply(engine, "m", threading.Barrier(1), outcome, who)
        assert outcome[who][0] == "ok", outcome
    with engine.connect() as conn:
        history = repo.decision_history(conn, "m", include_superseded=True)
        assert [(d.actor, d.action, d.stage_after, d.percent_after) for d in history] == [
            ("first", "promote", "canary", 1), ("second", "promote", "canary", 1)]
        assert repo.latest_rollout(conn, "m").canary_percent == 1  # the re-run did not advance again
    engine.dispose()


def test_a_decision_for_another_day_that_moved_the_rollout_meanwhile_is_refused(pg_url):
    """Day 2 computed from shadow while day 1's promote was applied: day 2 is refused, not applied on top."""
    engine = make_engine(pg_url)
    policy = Policy(min_shadow_days=0)
    day1, day2 = DAY, DAY + dt.timedelta(days=1)
    with engine.begin() as conn:
        rollout = repo.start_rollout(conn, "m", "v1", "v2", policy, actor="test")
    with engine.begin() as late:
        stale = repo.active_rollout(late, "m")
        state2 = repo.state_before(late, stale, day2)
        result2 = decide(state2, PASSING, policy)
        with engine.begin() as conn:  # day 1 is decided and applied meanwhile
            r1 = repo.record_decision(conn, rollout, day1, decide(repo.state_before(conn, rollout, day1), PASSING, policy),
                                      actor="day1", metrics={}, run_id="day1", expected_previous=None)
            repo.apply_decision(conn, r1.id, actor="day1")
        with pytest.raises(repo.ConcurrentDecision, match=r"moved from shadow 0% to canary 1%"):
            repo.record_decision(late, stale, day2, result2, actor="day2", metrics={}, run_id="day2",
                                 expected_previous=None)
    with engine.connect() as conn:
        assert repo.latest_rollout(conn, "m").canary_percent == 1
        assert [d.day for d in repo.decision_history(conn, "m")] == [day1]
    engine.dispose()


@pytest.mark.parametrize("runs", [5])
def test_concurrent_cli_decides_of_one_day(pg_url, tmp_path, runs):
    """The real path ``runs`` times at once: ``rollout-pipeline decide`` processes (the daily job in-process; the
    decision is stored and applied in the decision's own transaction). The test holds the model's decision lock
    until every run has computed its decision and waits for it; then one records and applies, each other one
    fails in one line saying why; the rollout advances once and nothing is half-written.
    (Dagster runs in threads of one process deadlock in Python's logging setup: processes it is.)"""
    from rollout_pipeline.store.logs import write_predictions
    from rollout_pipeline.store.tables import day_evidence

    engine = make_engine(pg_url)
    with engine.begin() as conn:
        repo.start_rollout(conn, "m", "v1", "v2", Policy(), actor="test")
    write_predictions(engine, log_day("m", DAY, "v1", "v2"))

    holder = engine.connect()
    holder.execute(sa.text("SELECT pg_advisory_lock(:s, hashtext('m'))"), {"s": repo.DECISION_LOCK_SPACE})
    procs = []
    for key in range(runs):
        env = {**os.environ, "ROLLOUT_DATABASE_URL": pg_url, "DAGSTER_HOME": str(tmp_path / f"dagster-{key}"),
               "ROLLOUT_STATE_DIR": str(tmp_path / f"state-{key}")}
        procs.append(subprocess.Popen([CLI, "decide", "--model", "m", "--date", DAY.isoformat(), "--json"], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        deadline = time.monotonic() + 300
        while _lock_waiters(engine) < runs:
            assert time.monotonic() < deadline, "the runs never all reached record_decision"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.2)
    finally:
        holder.execute(sa.text("SELECT pg_advisory_unlock(:s, hashtext('m'))"), {"s": repo.DECISION_LOCK_SPACE})
        holder.close()
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    ok = [json.loads(out) for out, _err, rc in results if rc == 0]
    failed = [(err, rc) for _out, err, rc in results if rc != 0]
    assert len(ok) == 1 and len(failed) == runs - 1, results
    assert ok[0]["action"] == "promote" and ok[0]["applied"] is True
    for err, rc in failed:
        # One error line (progress lines of ROLLOUT_LOG_LEVEL=INFO aside), no Dagster step failure or stack.
        errors = [line for line in err.splitlines() if line.startswith("Error:")]
        assert rc == 1 and len(errors) == 1, err
        assert "decided by another run while this one was deciding" in errors[0]
        assert "Traceback" not in err and " - ERROR - " not in err and "max_retries" not in err, err
    with engine.connect() as conn:
        rollout = repo.latest_rollout(conn, "m")
        assert (rollout.stage, rollout.canary_percent) == ("canary", 1)
        (decided,) = repo.decision_history(conn, "m", include_superseded=True)
        assert decided.applied_at is not None and decided.run_id == ok[0]["run_id"]
        # Every run's evidence is whole (summary, three suites, evaluation); one is live.
        rows = conn.execute(sa.select(day_evidence)).all()
        assert len(rows) == runs and sum(r.superseded_by is None for r in rows) == 1
        assert all(len(r.validations) == 3 and r.evaluation is not None for r in rows)
        assert decided.metrics["evidence"]["run_id"] == decided.run_id
    engine.dispose()


def _lock_waiters(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = :s"
        ), {"s": repo.DECISION_LOCK_SPACE}).scalar_one()


# --- issue #22, probe 3: a person's (or the guardrail's) action racing the night's run of a day -----------------

D1, D2 = DAY, DAY + dt.timedelta(days=1)
TONIGHT = D2 + dt.timedelta(days=1)  # the night of D2's analysis is on D3 (UTC): "today" for rollback and guardrail


def _the_concurrent_action(engine, kind: str) -> None:
    """What a person (or the hourly guardrail) commits while the night's run of D2 is between its analysis
    (day_summary, the checks, the judge: evidence collected under shadow 0%) and its decision."""
    from rollout_pipeline.decision_requests import Approval, Force, Guardrail
    from rollout_pipeline.decisions import make_approval, make_decision, manual_rollback

    if kind in ("approve", "reject"):
        make_approval(engine, Approval("m", D1, "ana (cli)", kind, "reviewed", today=D2))
    elif kind == "force":
        make_decision(engine, Force("m", D2, "bo (cli)", "hold", "campaign week"))
    elif kind == "rollback":
        with engine.begin() as conn:
            manual_rollback(conn, "m", "alerts from the payments team", actor="cy (cli)", day=TONIGHT)
    elif kind == "guardrail":
        make_decision(engine, Guardrail("m", TONIGHT, ("errors: e-value 1e6 >= 1000",)))


# kind -> (how the night's run of D2 ends, words of its refusal, the rollout's state afterwards)
RACES = {
    # The bug: D2 was decided "canary 1% -> 20%" from evidence collected under shadow.
    "approve": ("refused", "evidence was collected under shadow 0%, routing v1, but the rollout is at canary 1%",
                ("canary", 1)),
    # Nothing moved: the night decides D2 from shadow, as its evidence was collected (a new pending promotion).
    "reject": ("decided", None, ("shadow", 0)),
    # Was: the night's run superseded the operator's force it never saw. Now it is a concurrent decision.
    "force": ("refused", "was decided by another run while this one was deciding (decision", ("shadow", 0)),
    "rollback": ("refused", "is already decided and a canary never steps back in time", ("rolled_back", 0)),
    "guardrail": ("refused", "is already decided and a canary never steps back in time", ("rolled_back", 0)),
}


@pytest.mark.parametrize("kind", list(RACES))
def test_approve_reject_force_rollback_or_guardrail_racing_the_nightly_run(pg_url, tmp_path, monkeypatch, kind):
    """The concurrent action commits after the night's run collected D2 and before its decision (the
    decision service is entered right after it). A decision is made on the state the rollout is in when it
    commits: evidence of another state, or a decision of the day recorded since, is refused as a concurrent
    change (nothing recorded, exit 1), and a re-run decides the day on the new state."""
    import dagster as dg

    from rollout_pipeline.defs import assets
    from rollout_pipeline.defs.runner import RunFailed, run_day

    engine = make_engine(pg_url)
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", pg_url)
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
    policy = Policy(min_shadow_days=0, require_approval_for=(1,))
    with engine.begin() as conn:
        repo.start_rollout(conn, "m", "v1", "v2", policy, actor="test")
    write_predictions(engine, log_day("m", D1, "v1", "v2") + log_day("m", D2, "v1", "v2", seed=2))
    with dg.instance_for_test() as instance:
        first = run_day("m", D1, instance=instance)
    assert (first.result["action"], first.result["approval"]) == ("promote", "pending"), first.result
    if kind == "guardrail":  # the guardrail acts on a candidate serving traffic: a forced canary, applied
        from rollout_pipeline.decision_requests import Force
        from rollout_pipeline.decisions import make_decision
        make_decision(engine, Force("m", D1, "ops", "promote", "serve the canary now"))

    real = assets.make_decision
    raced = []

    def decide_after_the_race(engine_, request):
        if request.day == D2 and not raced:
            raced.append(kind)
            _the_concurrent_action(engine_, kind)
        return real(engine_, request)

    monkeypatch.setattr(assets, "make_decision", decide_after_the_race)
    with engine.connect() as conn:
        before = repo.state_before(conn, repo.latest_rollout(conn, "m"), D2)
    outcome, words, state_after = RACES[kind]
    with dg.instance_for_test() as instance:
        if outcome == "refused":
            with pytest.raises(RunFailed) as refused:
                run_day("m", D2, instance=instance)
            assert words in str(refused.value), refused.value
        else:
            run = run_day("m", D2, instance=instance)
            assert run.result["from"] == {"stage": before.stage, "canary_percent": before.canary_percent}
    assert raced == [kind]
    with engine.connect() as conn:
        rollout = repo.latest_rollout(conn, "m")
        assert (rollout.stage, rollout.canary_percent) == state_after
        night = [d for d in repo.decision_history(conn, "m", include_superseded=True) if d.actor == "cli"
                 and d.day == D2]
        if outcome == "refused":
            assert night == []  # nothing of the refused decision was recorded
        # Never a step from a state the evidence was not collected under.
        for d in repo.decision_history(conn, "m", include_superseded=True):
            ev = d.metrics.get("evidence")
            if ev and d.metrics.get("source") == "analysis":
                assert (ev["stage"], ev["canary_percent"]) == (d.stage_before, d.percent_before), d
    if kind == "approve":  # the re-run collects D2 under canary 1% and decides from there
        monkeypatch.setattr(assets, "make_decision", real)
        with dg.instance_for_test() as instance:
            again = run_day("m", D2, instance=instance)
        assert again.result["from"] == {"stage": "canary", "canary_percent": 1}, again.result
        # Shadow traffic says nothing of a served canary: the candidate served no request of D2.
        assert again.result["action"] == "hold", again.result
        assert any("served no request at canary 1%" in r for r in again.result["reasons"]), again.result
    engine.dispose()
