"""Ordered outcomes: ``worst()`` over promote < hold < rollback, and the state machine's precedence read as the
worst outcome that applies, with the one deliberate exception (a data-quality hold before a critical rollback)."""

import itertools

import pytest

from rollout_pipeline.domain.decide import ACTIONS, Evidence, Outcome, RolloutState, decide, worst
from rollout_pipeline.domain.policy import Policy

PROMOTE, HOLD, ROLLBACK = Outcome.PROMOTE, Outcome.HOLD, Outcome.ROLLBACK


@pytest.mark.parametrize("outcomes, expected", [
    ((PROMOTE,), PROMOTE),
    ((PROMOTE, HOLD), HOLD),
    ((HOLD, PROMOTE), HOLD),
    ((ROLLBACK, HOLD), ROLLBACK),
    ((PROMOTE, ROLLBACK, HOLD), ROLLBACK),
    ((HOLD, HOLD), HOLD),
])
def test_worst_takes_the_most_stopping_outcome(outcomes, expected):
    assert worst(*outcomes) is expected


def test_outcomes_are_the_stored_action_names_in_order():
    assert ACTIONS == ("promote", "hold", "rollback")
    assert [Outcome.of(a) for a in ACTIONS] == [PROMOTE, HOLD, ROLLBACK]
    with pytest.raises(ValueError, match="unknown action 'pause': use one of promote, hold, rollback"):
        Outcome.of("pause")


POLICY = Policy(min_requests=100, min_days_per_step=2, min_shadow_days=2)
# One reason at a time to stop or step back, and the outcome it has on its own (canary, shadow).
FLAGS = {
    "critical": ({"critical_failures": ("p99 412 ms > 250 ms",)}, ROLLBACK, ROLLBACK),
    "worse": ({"normal_failures": ("complaint rate 5x",)}, ROLLBACK, HOLD),
    "undecided": ({"insufficient": ("p99 latency not judged: 60 < 700",)}, HOLD, HOLD),
    "few requests": ({"candidate_requests": 50}, HOLD, HOLD),
    "no score": ({"score": None}, HOLD, HOLD),
}


@pytest.mark.parametrize("stage, days", [("canary", 0), ("canary", 1), ("shadow", 0), ("shadow", 1)])
def test_the_decision_is_the_worst_outcome_that_applies(stage, days):
    state = RolloutState(stage, 20 if stage == "canary" else 0, days_in_step=days)
    alone = 0 if stage == "canary" else 1
    for n in range(len(FLAGS) + 1):
        for names in itertools.combinations(FLAGS, n):
            fields = {"data_quality_failures": (), "candidate_requests": 1000, "critical_failures": (),
                      "score": 100.0}
            for name in names:
                fields.update(FLAGS[name][0])
            expected = worst(PROMOTE if days + 1 >= 2 else HOLD, *(FLAGS[name][1 + alone] for name in names))
            assert decide(state, Evidence(**fields), POLICY).outcome is expected, (stage, days, names)


def test_a_data_quality_hold_comes_before_a_critical_rollback():
    # The exception to the worst outcome, on purpose: broken logs make every verdict untrustworthy.
    evidence = Evidence(("log_quality: 3% of rows without a variant",), 1000, ("p99 412 ms > 250 ms",), 0.0)
    for state in (RolloutState("canary", 20), RolloutState("shadow", 0), RolloutState("production", 100)):
        decision = decide(state, evidence, POLICY)
        assert decision.outcome is HOLD
        assert decision.reasons[0] == "data quality failed, so the day cannot be judged:"
