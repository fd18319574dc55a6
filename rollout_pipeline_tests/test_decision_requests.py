"""The decision service's typed requests: one frozen class per way a decision is asked for, each stored under the
source the audit trail has always used, and a request of any other type refused in one line with nothing written."""

import dataclasses
import datetime as dt

import pytest
import sqlalchemy as sa

from rollout_pipeline.decision_requests import (REQUEST_TYPES, SOURCES, Approval, BlockedDay, Force, Guardrail, Nightly,
                                                day_request)
from rollout_pipeline.decisions import DecisionRefused, make_approval, make_decision, manual_rollback
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.store import rollouts as repo
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.tables import decisions

D = dt.date(2026, 6, 1)


@pytest.fixture
def engine(sqlite_url):
    engine = make_engine(sqlite_url)  # the fixture migrated it
    with engine.begin() as conn:
        repo.start_rollout(conn, "m", "v1", "v2", Policy(), actor="test")
    yield engine
    engine.dispose()


def test_each_request_is_stored_under_the_audits_source():
    assert {t.__name__: t.source for t in REQUEST_TYPES} == {
        "Nightly": "analysis", "Force": "forced", "BlockedDay": "blocked", "ManualRollback": "manual_rollback",
        "Guardrail": "guardrail", "Approval": "approval"}
    assert {t.source for t in REQUEST_TYPES} | {"expiry"} == set(SOURCES)  # an expiry is recorded, never asked
    with pytest.raises(dataclasses.FrozenInstanceError):
        Nightly("m", D, "cli").day = D + dt.timedelta(days=1)


@dataclasses.dataclass(frozen=True)
class Pause:
    model: str
    day: dt.date
    actor: str
    dry_run: bool = False


def test_an_unknown_request_type_is_refused_in_one_line(engine):
    with pytest.raises(DecisionRefused) as refused:
        make_decision(engine, Pause("m", D, "cli"))
    assert str(refused.value) == ("unknown decision request Pause: the service decides Nightly, Force, BlockedDay, "
                                  "ManualRollback, Guardrail, Approval")
    with pytest.raises(DecisionRefused, match=r"^unknown decision request Pause: [^\n]*$"):
        make_approval(engine, Pause("m", D, "cli"))
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(decisions)).scalar_one() == 0


def test_the_daily_jobs_request_from_its_run_config():
    assert day_request("m", D, "cli", run_id="r") == Nightly("m", D, "cli", run_id="r")
    assert day_request("m", D, "cli", run_id="r", blocked=True) == BlockedDay("m", D, "cli", "r")
    assert day_request("m", D, "cli", force="hold", reason="campaign", dry_run=True) == \
        Force("m", D, "cli", "hold", "campaign", dry_run=True)
    with pytest.raises(DecisionRefused, match=r"^a reason is only taken with force \(promote, hold or rollback\)$"):
        day_request("m", D, "cli", reason="because")


def test_each_request_reaches_its_handler(engine):
    forced = make_decision(engine, Force("m", D, "ana", "promote", "by hand"))
    assert (forced.record.action, forced.record.stage_after, forced.record.metrics["source"]) == \
        ("promote", "canary", "forced")
    guarded = make_decision(engine, Guardrail("m", D + dt.timedelta(days=1), ("errors: e-value 1e6 >= 1000",)))
    assert (guarded.record.action, guarded.record.actor, guarded.record.metrics["source"]) == \
        ("rollback", "guardrail", "guardrail")
    with pytest.raises(DecisionRefused, match=r"^m 2026-06-03 was never analysed: "):
        make_decision(engine, Nightly("m", D + dt.timedelta(days=2), "cli"))
    with pytest.raises(DecisionRefused, match=r"^nothing to approve: m 2026-06-01's decision #\d+ \(promote\) does "):
        make_approval(engine, Approval("m", D, "ana", "approve", "looks good"))
    with pytest.raises(DecisionRefused, match=r"^unknown action 'pause': use one of promote, hold, rollback$"):
        make_decision(engine, Force("m", D + dt.timedelta(days=2), "ana", "pause", "x"))


def test_a_manual_rollback_is_a_forced_rollback_with_its_own_source(engine):
    make_decision(engine, Force("m", D, "ana", "promote", "by hand"))
    with engine.begin() as conn:
        outcome = manual_rollback(conn, "m", "pager went off", actor="cy (cli)", day=D + dt.timedelta(days=1))
    record = outcome.record
    assert (record.action, record.forced, record.metrics["source"], outcome.applied) == \
        ("rollback", True, "manual_rollback", True)
    assert record.reasons[0] == "forced rollback by cy (cli): pager went off"
    with engine.begin() as conn, pytest.raises(repo.RolloutError, match=r"^m is already rolled back: v1 serves 100%$"):
        manual_rollback(conn, "m", "again", actor="cy (cli)", day=D + dt.timedelta(days=1))
