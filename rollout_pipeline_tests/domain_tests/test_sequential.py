"""Anytime-valid bounds: looked at after every night, they are crossed by chance at most as often as they say.

Simulated: runs of growing evidence under the null, the bound checked at every look. A fixed-sample bound
looked at as often is crossed several times more often (the reason the nights of a step need these).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from rollout_pipeline.domain.sequential import (
    log_e_above,
    log_e_below,
    margin,
    min_radius,
    radius,
    trials_to_show_below,
    tuned_info,
)
from rollout_pipeline.domain.stats import z_of

RUNS, LOOKS, BATCH = 2000, 30, 40


def test_the_boundary_is_tightest_at_its_tuning_point_and_wider_than_a_fixed_bound():
    alpha = 0.001
    u = tuned_info(alpha)
    assert radius(alpha, u) == pytest.approx(min_radius(alpha))
    assert radius(alpha, u / 10) > min_radius(alpha) < radius(alpha, u * 10)
    assert min_radius(alpha) > z_of(1 - alpha / 2)  # the price of looking at every night
    assert margin(0.0, alpha, 1.0) == 0.0 and margin(math.inf, alpha, 1.0) == math.inf


@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_a_mean_is_ever_outside_its_confidence_sequence_at_most_alpha_of_the_time(alpha):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((RUNS, LOOKS * BATCH))
    n = np.arange(1, LOOKS + 1) * BATCH
    means = np.cumsum(x, axis=1)[:, n - 1] / n
    se = 1 / np.sqrt(n)
    se_ref = 1 / math.sqrt(10 * BATCH)  # tuned for the 10th look
    widths = np.array([margin(float(s), alpha, se_ref) for s in se])
    ever = (np.abs(means) > widths).any(axis=1).mean()
    fixed = (np.abs(means) > z_of(1 - alpha / 2) * se).any(axis=1).mean()
    assert ever <= alpha
    assert fixed > 2 * alpha  # the same looks with a fixed-sample bound


@pytest.mark.parametrize("p0", [0.01, 0.05])
def test_a_share_at_the_nulls_boundary_rarely_ever_shows_above_or_below(p0):
    rng = np.random.default_rng(11)
    alpha = 0.05
    threshold = math.log(1 / alpha)
    events = rng.random((RUNS // 4, LOOKS * BATCH * 2)) < p0
    counts = np.cumsum(events, axis=1)
    above = below = 0
    for run in counts:
        looks = [(int(run[k - 1]), k) for k in range(BATCH * 2, LOOKS * BATCH * 2 + 1, BATCH * 2)]
        above += any(log_e_above(x, k, p0) >= threshold for x, k in looks)
        below += any(log_e_below(x, k, p0) >= threshold for x, k in looks)
    assert above / len(counts) <= alpha and below / len(counts) <= alpha


def test_a_share_well_under_the_bar_shows_below_it_and_the_plan_says_when():
    needed = trials_to_show_below(0.0, 0.05, 0.05)
    assert 59 <= needed <= 100  # an exact fixed-sample answer would take 59 ("rule of three")
    assert log_e_below(0, needed, 0.05) >= math.log(20) > log_e_below(0, needed - 5, 0.05)
    assert trials_to_show_below(0.06, 0.05, 0.05) is None
    assert log_e_above(40, 1000, 0.01) > math.log(1000)  # 4% observed against 1%: confidently above
