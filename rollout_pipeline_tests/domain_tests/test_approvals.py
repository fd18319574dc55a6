"""Approval gates, table-driven: which promotions wait, and how approve, reject, expiry and a waiting night decide.

No Dagster, no database: the pure rules of ``domain/decide.py`` and the policy's two fields.
"""

import datetime as dt

import pytest

from rollout_pipeline.domain.decide import (Decision, Evidence, ForceError, RolloutState, approval_expired,
                                            approve_promotion, decide, expire_promotion, force_decision,
                                            needs_approval, reject_promotion, waiting_hold)
from rollout_pipeline.domain.policy import Policy, PolicyError, parse_policy

GOOD = Evidence(data_quality_failures=(), candidate_requests=1000, critical_failures=(), score=100.0)
GATED = Policy(min_requests=100, require_approval_for=(1, 100))
D = dt.date(2026, 6, 1)
PENDING = Decision("promote", False, ("judge score 100 >= pass 95", "promote to canary 1%"),
                   RolloutState("shadow", 0), "canary", 1)


@pytest.mark.parametrize(
    "state, policy, waits",
    [
        (RolloutState("shadow", 0), GATED, True),  # leaving shadow
        (RolloutState("canary", 1), GATED, False),  # 1 -> 20: not listed
        (RolloutState("canary", 50), GATED, True),  # going to production
        (RolloutState("shadow", 0), Policy(min_requests=100), False),  # no gate by default
        (RolloutState("canary", 20), Policy(min_requests=100, require_approval_for=(50,)), True),
    ],
)
def test_which_nightly_promotions_wait_for_a_person(state, policy, waits):
    decision = decide(state, GOOD, policy)
    assert decision.action == "promote"
    assert needs_approval(decision, policy) is waits


@pytest.mark.parametrize("decision", [
    force_decision(RolloutState("shadow", 0), "promote", "release day", GATED, "ana"),  # a person forced it already
    decide(RolloutState("shadow", 0), Evidence((), 1000, (), 100.0, insufficient=("p99 not yet decided",)),
           GATED),  # a hold
    decide(RolloutState("shadow", 0), Evidence((), 1000, ("p99 412 ms > 250 ms",), 0.0), GATED),  # a rollback
])
def test_forced_promotions_holds_and_rollbacks_never_wait(decision):
    assert not needs_approval(decision, GATED)


@pytest.mark.parametrize(
    "data, error",
    [
        ({"require_approval_for": [2]}, "require_approval_for [2] must be steps of canary_steps [1, 20, 50, 100]"),
        ({"canary_steps": [5, 100], "require_approval_for": [1]}, "require_approval_for [1] must be steps"),
        ({"approval_expiry_days": 0}, "approval_expiry_days"),
    ],
)
def test_the_policy_refuses_gates_that_are_not_steps(data, error):
    with pytest.raises(PolicyError, match=error.replace("[", r"\[").replace("]", r"\]")):
        parse_policy(data)


def test_the_policy_takes_steps_it_has():
    policy = parse_policy({"canary_steps": [5, 50, 100], "require_approval_for": [5, 100], "approval_expiry_days": 2})
    assert policy.require_approval_for == (5, 100) and policy.approval_expiry_days == 2


@pytest.mark.parametrize(
    "today, expired",
    [(D + dt.timedelta(days=1), False), (D + dt.timedelta(days=3), False), (D + dt.timedelta(days=4), True)],
)
def test_a_pending_promotion_may_be_approved_until_its_day_plus_the_expiry(today, expired):
    assert approval_expired(D, today, Policy(approval_expiry_days=3)) is expired


@pytest.mark.parametrize(
    "verdict, kwargs, action, after, first_reason",
    [
        ("approve", {}, "promote", ("canary", 1), "approved by ana: metrics reviewed"),
        ("reject", {}, "hold", ("shadow", 0), "rejected by ana: metrics reviewed"),
        ("reject", {"rollback": True}, "rollback", ("rolled_back", 0), "rejected by ana: metrics reviewed"),
    ],
)
def test_a_persons_verdict(verdict, kwargs, action, after, first_reason):
    rule = approve_promotion if verdict == "approve" else reject_promotion
    decision = rule(PENDING, "ana", "  metrics reviewed ", **kwargs)
    assert (decision.action, (decision.stage_after, decision.percent_after)) == (action, after)
    assert decision.before == PENDING.before and decision.reasons[0] == first_reason
    assert decision.forced is (verdict == "reject")  # a rejection overrides the policy; an approval is its own step


@pytest.mark.parametrize("rule", [approve_promotion, reject_promotion])
@pytest.mark.parametrize("reason", [None, "", "   "])
def test_a_verdict_needs_a_reason(rule, reason):
    with pytest.raises(ForceError, match="needs a reason"):
        rule(PENDING, "ana", reason)


def test_an_expired_promotion_holds_where_the_rollout_stands():
    decision = expire_promotion(PENDING, D, Policy(approval_expiry_days=3))
    assert (decision.action, decision.stage_after, decision.percent_after) == ("hold", "shadow", 0)
    assert decision.reasons == ("approval of 2026-06-01's promotion to canary 1% expired: not approved by "
                                "2026-06-04 (approval_expiry_days 3); hold",)


@pytest.mark.parametrize(
    "evidence, says",
    [
        (GOOD, "waiting for approval of 2026-06-01's promotion to canary 1%; today's evidence still passes"),
        (Evidence((), 1000, (), 100.0, insufficient=("x",)), "waiting for approval of 2026-06-01's promotion to canary 1%; today's "
                                       "evidence no longer passes: hold"),
    ],
)
def test_a_later_night_keeps_waiting_and_says_whether_the_evidence_holds(evidence, says):
    state = RolloutState("shadow", 0, 1)
    today = decide(state, evidence, GATED)
    decision = waiting_hold(state, D, PENDING, today)
    assert (decision.action, decision.stage_after, decision.percent_after) == ("hold", "shadow", 0)
    assert decision.reasons[0] == says
    if today.action != "promote":
        assert decision.reasons[1:] == today.reasons  # why it no longer passes
