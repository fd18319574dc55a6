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
        # The 1% step only checks the wiring: fewer requests suffice.
        (RolloutState("canary", 1), Evidence((), 60, (), 100.0), "promote", ("canary", 20)),
        # Bad data holds even with a perfect score.
        (RolloutState("canary", 20), Evidence(("log_quality: x",), 1000, (), 100.0), "hold", ("canary", 20)),
        # Critical failures roll back.
        (RolloutState("canary", 50), Evidence((), 1000, ("candidate p99 412 ms > SLO 250 ms",), 0.0), "rollback",
         ("rolled_back", 0)),
        # Kayenta thresholds: marginal holds, below marginal rolls back.
        (RolloutState("canary", 20), Evidence((), 1000, (), 80.0), "hold", ("canary", 20)),
        (RolloutState("canary", 20), Evidence((), 1000, (), 50.0), "rollback", ("rolled_back", 0)),
        (RolloutState("canary", 20), Evidence((), 1000, (), None), "hold", ("canary", 20)),
        # After promotion, while the old model shadows: hold when the new one holds up, roll back when it fails.
        (RolloutState("production", 100), GOOD, "hold", ("production", 100)),
        (RolloutState("production", 100), Evidence((), 1000, ("candidate p99 412 ms > SLO 250 ms",), 0.0),
         "rollback", ("rolled_back", 0)),
        (RolloutState("production", 100), Evidence((), 1000, (), 50.0), "rollback", ("rolled_back", 0)),
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


@pytest.mark.parametrize("data, field", [
    ({"canary_steps": [1, 20, 50]}, "canary_steps"),
    ({"canary_steps": [20, 1, 100]}, "canary_steps"),
    ({"judge": {"pass_score": 50, "marginal_score": 90}}, "judge"),
    ({"metrics": {"latency": "sometimes"}}, "metrics.latency"),
    ({"metrics": {"made_up": "critical"}}, "metrics"),
    ({"retention_days": -1}, "retention_days"),
    ({"typo_field": 1}, "typo_field"),
])
def test_policy_errors_name_the_field(data, field):
    with pytest.raises(PolicyError, match=field.replace(".", r"\.")):
        parse_policy(data, "p.yaml")


def test_power_based_minimum():
    # n = 2 (z_0.99 + z_0.8)^2 / 0.25^2 with the default 98% confidence.
    assert Policy().required_requests == 322
    assert Policy(detectable_effect=0.5).required_requests < Policy().required_requests
