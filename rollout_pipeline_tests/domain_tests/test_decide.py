"""The policy state machine, table-driven: no Dagster, no database."""

import pytest

from rollout_pipeline.domain.decide import Evidence, ForceError, RolloutState, decide, force_decision
from rollout_pipeline.domain.policy import Policy, PolicyError, parse_policy

P = Policy(min_requests=100)
GOOD = Evidence(data_quality_failures=(), candidate_requests=1000, critical_failures=(), score=100.0)


@pytest.mark.parametrize(
    "state, evidence, action, after",
    [
        (RolloutState("shadow", 0), GOOD, "promote", ("canary", 1)),
        (RolloutState("canary", 1), GOOD, "promote", ("canary", 20)),
        (RolloutState("canary", 20), GOOD, "promote", ("canary", 50)),
        (RolloutState("canary", 50), GOOD, "promote", ("production", 100)),
        # Not enough data holds, never promotes.
        (RolloutState("canary", 20), Evidence((), 99, (), 100.0), "hold", ("canary", 20)),
        # A critical gate without enough data holds at every step, the first one included: its reason names counts.
        (RolloutState("canary", 1), Evidence((), 60, (), 100.0, insufficient=("p99 latency not judged: 60 < 700",)),
         "hold", ("canary", 1)),
        (RolloutState("shadow", 0), Evidence((), 5000, (), 100.0, insufficient=("x",)), "hold", ("shadow", 0)),
        # ...but a critical failure seen on a small sample still rolls back (it was confidently worse).
        (RolloutState("canary", 1), Evidence((), 60, ("error rate 40%",), 0.0, insufficient=("x",)), "rollback",
         ("rolled_back", 0)),
        # Normal gates without a verdict never decide: they are named in the reasons of a promotion.
        (RolloutState("canary", 20), Evidence((), 1000, (), 100.0, not_judged=("accuracy: 12 outcomes",)),
         "promote", ("canary", 50)),
        # Bad data holds even with a perfect score.
        (RolloutState("canary", 20), Evidence(("log_quality: x",), 1000, (), 100.0), "hold", ("canary", 20)),
        # Critical failures roll back.
        (RolloutState("canary", 50), Evidence((), 1000, ("candidate p99 412 ms > SLO 250 ms",), 0.0), "rollback",
         ("rolled_back", 0)),
        # A scored (normal) gate confidently past its limit: a candidate serving users never keeps its share (a
        # rollback at any canary step, the first included); in shadow it serves nobody and does not leave shadow.
        (RolloutState("canary", 20), Evidence((), 1000, (), 87.5, normal_failures=("complaint rate 5x",)), "rollback",
         ("rolled_back", 0)),
        (RolloutState("canary", 1), Evidence((), 90, (), 87.5, normal_failures=("complaint rate 8x",),
                                             insufficient=("x",)), "rollback", ("rolled_back", 0)),
        (RolloutState("shadow", 0), Evidence((), 1000, (), 87.5, normal_failures=("shift +1.2 sd",)), "hold",
         ("shadow", 0)),
        # Evidence of an earlier version (failures only among the score's reasons) reads the same way.
        (RolloutState("canary", 20), Evidence((), 1000, (), 80.0, score_reasons=("accuracy worse",)), "rollback",
         ("rolled_back", 0)),
        (RolloutState("canary", 20), Evidence((), 1000, (), None), "hold", ("canary", 20)),
        # After promotion, while the old model shadows: hold when the new one holds up, roll back when it fails.
        (RolloutState("production", 100), GOOD, "hold", ("production", 100)),
        (RolloutState("production", 100), Evidence((), 1000, ("candidate p99 412 ms > SLO 250 ms",), 0.0),
         "rollback", ("rolled_back", 0)),
        (RolloutState("production", 100), Evidence((), 1000, (), 87.5, normal_failures=("accuracy worse",)),
         "rollback", ("rolled_back", 0)),
        (RolloutState("production", 100), Evidence((), 1000, (), 100.0, insufficient=("x",)), "hold",
         ("production", 100)),
        (RolloutState("production", 100), Evidence(("log_quality: x",), 1000, ("p99",), 0.0), "hold",
         ("production", 100)),
        # ...but never to a variant that was torn down.
        (RolloutState("production", 100), Evidence((), 1000, ("p99",), 0.0, old_variant_deployable=False), "hold",
         ("production", 100)),
        (RolloutState("rolled_back", 0), GOOD, "hold", ("rolled_back", 0)),
    ],
)
def test_decisions(state, evidence, action, after):
    d = decide(state, evidence, P)
    assert (d.action, d.stage_after, d.percent_after) == (action, *after)
    assert d.reasons and all(isinstance(r, str) and r for r in d.reasons)


def test_reasons_carry_the_limit():
    d = decide(RolloutState("canary", 50), Evidence((), 1000, ("candidate p99 412 ms > SLO 250 ms",), 0.0), P)
    assert "candidate p99 412 ms > SLO 250 ms" in d.reasons


def test_minimum_days_in_shadow():
    policy = Policy(min_requests=100, min_shadow_days=2)
    assert decide(RolloutState("shadow", 0, days_in_step=0), GOOD, policy).action == "hold"
    assert decide(RolloutState("shadow", 0, days_in_step=1), GOOD, policy).action == "promote"


@pytest.mark.parametrize("action, after", [("promote", ("canary", 50)), ("hold", ("canary", 20)),
                                           ("rollback", ("rolled_back", 0))])
def test_forced(action, after):
    d = force_decision(RolloutState("canary", 20), action, "because", P, "alice")
    assert d.forced and (d.stage_after, d.percent_after) == after and "alice" in d.reasons[0]


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_force_needs_a_reason(reason):
    with pytest.raises(ForceError, match="needs a reason"):
        force_decision(RolloutState("canary", 20), "promote", reason, P, "bob")


def test_custom_steps():
    policy = Policy(min_requests=10, canary_steps=(5, 100))
    assert decide(RolloutState("shadow", 0), GOOD, policy).percent_after == 5
    assert decide(RolloutState("canary", 5), GOOD, policy).stage_after == "production"
    # The last step before production gets no small-sample shortcut (a 72-request step to 100% once did).
    small = Evidence((), 72, (), 100.0, insufficient=("p99 latency not judged: 72 candidate requests < 700",))
    d = decide(RolloutState("canary", 5), small, policy)
    assert d.action == "hold" and "72 candidate requests" in " ".join(d.reasons)


def test_a_hold_names_its_true_cause():
    # After promotion with the old model shadowing, a gate still undecided is named; "is it still shadowing?" is
    # only said when the old model logged no shadow answer at all.
    undecided = Evidence((), 37_210, (), 100.0, insufficient=("accuracy not yet decided: 12 entities",),
                         stable_requests=37_210)
    d = decide(RolloutState("production", 100), undecided, P)
    assert d.action == "hold" and "accuracy not yet decided: 12 entities" in d.reasons
    assert not any("still shadowing" in r for r in d.reasons)
    silent = Evidence((), 37_210, (), None, insufficient=("x",), stable_requests=0)
    assert "still shadowing" in decide(RolloutState("production", 100), silent, P).reasons[0]


def test_a_canary_that_served_nobody_holds_and_says_why():
    # Mirrored answers judged every gate, but no user saw the candidate: the step did not happen (routing not applied).
    mirrored_only = Evidence((), 0, (), 100.0)
    d = decide(RolloutState("canary", 1), mirrored_only, P)
    assert d.action == "hold" and "served no request at canary 1%" in d.reasons[0]
    # One served request is enough for this rule: the step's own gates size the rest.
    assert decide(RolloutState("canary", 1), Evidence((), 1, (), 100.0), Policy()).action == "promote"
    # A critical failure seen on the mirrored answers alone does not wait for users.
    assert decide(RolloutState("canary", 1), Evidence((), 0, (), 0.0, normal_failures=("errors 9x",)), P).action \
        == "rollback"


def test_pooled_evidence_is_named_in_the_reasons():
    pooled = Evidence((), 300, (), 100.0, insufficient=("p99 latency not yet decided: 90 of 300",),
                      pooled="3 nights at canary 1% (2026-03-02..2026-03-04): 300 candidate answers")
    d = decide(RolloutState("canary", 1, days_in_step=2), pooled, P)
    assert d.action == "hold" and d.reasons[-1].startswith("evidence: 3 nights at canary 1%")


def test_promotion_names_what_was_not_judged():
    d = decide(RolloutState("canary", 20), Evidence((), 1000, (), 100.0, not_judged=("accuracy (normal): 12",)), P)
    assert any("accuracy (normal): 12" in r for r in d.reasons)


@pytest.mark.parametrize("data, field", [
    ({"canary_steps": [1, 20, 50]}, "canary_steps"),
    ({"canary_steps": [20, 1, 100]}, "canary_steps"),
    ({"judge": {"pass_score": 50, "marginal_score": 90}}, "judge"),
    ({"metrics": {"latency": "sometimes"}}, "metrics.latency"),
    ({"metrics": {"made_up": "critical"}}, "metrics"),
    ({"retention_days": -1}, "retention_days"),
    ({"typo_field": 1}, "typo_field"),
    ({"group_weights": {"latnecy": 50}}, "group_weights"),
    ({"group_weights": {"latency": -1}}, "group_weights"),
    ({"group_weights": {"latency": 60, "errors": 50}}, "group_weights"),
    ({"error_rate_limit": float("nan")}, "error_rate_limit"),
    ({"latency_slo_p99_ms": float("inf")}, "latency_slo_p99_ms"),
    ({"prediction_bounds": [5, 1]}, "prediction_bounds"),
    ({"error_rate_detectable": 0.001}, "error_rate_detectable"),
    ({"gates": {"error_rate": {"detectable": 0.001}}}, "gates.error_rate.detectable"),
    ({"gates": {"extremes": {"bounds": [5, 1]}}}, "gates.extremes.bounds"),
    ({"gates": {"latency": {"slo_p99_ms": -1}}}, "gates.latency.slo_p99_ms"),
    ({"gates": {"latnecy": {}}}, "gates.latnecy"),
])
def test_policy_errors_name_the_field(data, field):
    with pytest.raises(PolicyError, match=field.replace(".", r"\.")):
        parse_policy(data, "p.yaml")


def test_policy_errors_are_one_line():
    with pytest.raises(PolicyError) as err:
        parse_policy({"group_weights": {"x": 1}, "retention_days": -1}, "p.yaml")
    assert "\n" not in str(err.value) and "group_weights" in str(err.value) and "retention_days" in str(err.value)


def test_policies_stored_by_earlier_versions_still_load():
    old = Policy().model_dump(mode="json") | {"wiring_step_min_requests": 50, "detectable_effect": 0.25,
                                              "complaint_rate_limit": 0.01}
    assert parse_policy(old) == Policy()
