"""A rollout's plan from its traffic: nights per step, the gate that decides each, and the warning that says what
would help when a step cannot decide within a week."""

import pytest

from rollout_pipeline.domain.plan import TrafficProfile, plan_rollout, total_nights
from rollout_pipeline.domain.policy import Policy

P = Policy()


def _plan(requests: int, mirrored: bool, policy: Policy = P, outcomes: bool = True):
    return plan_rollout(TrafficProfile(requests, requests / 8, 7, mirrored=mirrored, outcomes=outcomes), policy)


@pytest.mark.parametrize("requests, mirrored, most", [
    (10_000, True, 4), (10_000, False, 5), (200_000, False, 4), (16_000, True, 4), (2_000, True, 6),
])
def test_the_seeds_pace_at_the_traffic_it_gets(requests, mirrored, most):
    steps = _plan(requests, mirrored)
    assert [s.step for s in steps] == ["shadow", "canary 1%", "canary 20%", "canary 50%"]
    assert 4 <= total_nights(steps) <= most
    assert not any(s.warning for s in steps)


def test_the_first_step_asks_only_the_gross_questions():
    first = {g.gate for g in _plan(10_000, False)[1].gates}
    assert first == {"latency", "error_rate", "broken_answers", "extremes"}
    assert "prediction_shift" in {g.gate for g in _plan(10_000, False)[2].gates}


def test_a_first_step_of_a_handful_of_users_is_warned_even_when_its_average_decides_in_a_week():
    # 2,000 requests a day from 250 users, no mirrored rows: the 1% step's average (20 answers a night) decides
    # in days, but it holds about 2.5 users, routed whole: what it serves depends on which ones.
    steps = _plan(2_000, False)
    first = steps[1]
    assert first.nights is not None and first.nights <= 7
    assert "serves about 2.5 of the model's 250 users" in first.warning and "a larger first step" in first.warning
    assert not steps[2].warning  # 20%: about 50 users
    assert not _plan(2_000, True)[1].warning  # mirrored: the model's answers are the whole day's


def test_a_small_service_without_mirroring_is_warned_and_told_what_would_help():
    steps = _plan(300, False)
    first = steps[1]
    assert first.nights is None or first.nights > 7
    assert "canary 1% cannot decide within a week" in first.warning
    assert "a larger first step" in first.warning and "mirrored rows" in first.warning
    # With the candidate shadowing the rest of the traffic the same service decides its first step sooner.
    assert (_plan(300, True)[1].nights or 999) < (first.nights or 999)


def test_the_plan_follows_the_policy():
    steps = _plan(10_000, True, Policy(canary_steps=(5, 100), min_days_per_step=2))
    assert [s.step for s in steps] == ["shadow", "canary 5%"]
    assert steps[1].nights >= 2
    assert "accuracy" not in {g.gate for s in _plan(10_000, True, outcomes=False) for g in s.gates}


def test_the_reviews_plan_line_reads_a_nights_summary_and_counts_the_steps_left():
    from rollout_pipeline.domain.plan import plan_line, profile_of_day
    from rollout_pipeline_tests.domain_tests.test_gates import summary_of, traffic

    summary = summary_of(traffic("canary", 6000, seed=3, share=0.2, cand_shadow=True))
    profile = profile_of_day(summary, outcomes=True)
    assert profile.requests == 6000 and profile.mirrored and 500 < profile.entities < 800
    steps = plan_rollout(profile, P)
    assert plan_line(profile, steps, "canary", 20).startswith("~2 more night(s) to production at ~6,000 requests")
    assert plan_line(profile, steps, "production", 100) == ""
    tiny = profile_of_day(summary_of(traffic("canary", 300, seed=3, share=0.2)), outcomes=False)
    assert "cannot decide within a week" in plan_line(tiny, plan_rollout(tiny, P), "shadow", 0)
