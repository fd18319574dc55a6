"""The intraday guardrail's sequential tests: valid at every hourly look on clustered healthy days, quick on bursts.

Days come from the decision-quality generator (users sending many requests each); the
counts of the day so far are taken at each hour, as the hourly schedule would.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from rollout_pipeline.domain.guardrail import SideCounts, check, log_e_value, log_e_values
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.quality.traffic import DaySpec, generate

P = Policy()


def _hourly_counts(rows, variant: str, served: bool, slo: float) -> list[SideCounts]:
    """The side's counts of the day so far at the end of each hour (index h: before hour h + 1)."""
    per_hour = [[0, 0, 0, 0] for _ in range(24)]
    for r in rows:
        if r.variant == variant and r.served == served:
            c = per_hour[r.ts.hour]
            c[0] += 1
            c[1] += r.status != "ok"
            c[2] += r.latency_ms is not None and r.latency_ms > slo
            c[3] += r.status == "ok" and (r.prediction is None and r.label is None
                                          or r.prediction is not None and not abs(r.prediction) < 1e15)
    out, total = [], [0, 0, 0, 0]
    for c in per_hour:
        total = [a + b for a, b in zip(total, c)]
        out.append(SideCounts(*total))
    return out


def _first_alarm_hour(spec: DaySpec) -> int | None:
    rows, _, _ = generate(spec, "m")
    stable, candidate = _hourly_counts(rows, "v1", True, 250.0), _hourly_counts(rows, "v2", True, 250.0)
    for hour in range(24):
        if check(stable[hour], candidate[hour], P).alarms:
            return hour + 1
    return None


def test_the_e_value_is_one_without_events_and_grows_with_evidence():
    assert log_e_value(0, 100, 0, 9900, 2.0) == 0.0
    assert log_e_value(0, 100, 50, 9900, 2.0) < 0  # the candidate is better: evidence for the null
    assert log_e_value(20, 1000, 20, 9000, 2.0) < log_e_value(60, 1000, 20, 9000, 2.0)


@pytest.mark.parametrize("ratio, share", [(2.0, 0.05), (2.0, 0.2), (1.0, 0.5)])
def test_under_the_null_the_e_value_rarely_ever_crosses(ratio, share):
    """Ville's inequality, checked by simulation: 1,000 days of events at exactly the null's boundary, the e-value
    looked at after every single event; the share of days on which it ever crossed 1/alpha stays below alpha."""
    rng = np.random.default_rng(1)
    theta0 = share * ratio / (share * ratio + 1 - share)
    alpha, days, events = 0.01, 1000, 400
    candidate = rng.random((days, events)) < theta0
    x_c = candidate.cumsum(axis=1)
    x_s = np.arange(1, events + 1) - x_c
    crossed = (log_e_values(x_c, share * 1e6, x_s, (1 - share) * 1e6, ratio) >= math.log(1 / alpha)).any(axis=1)
    assert crossed.mean() <= alpha + 2 * math.sqrt(alpha / days), crossed.mean()  # alpha, with sampling slack
    fixed = x_c / np.arange(1, events + 1)  # a fixed-sample test looked at as often would cross far more often
    z = (fixed - theta0) / np.sqrt(theta0 * (1 - theta0) / np.arange(1, events + 1))
    assert (z[:, 20:] > 2.326).any(axis=1).mean() > 3 * alpha


def test_clustered_healthy_days_never_trip_it_at_any_hour():
    """Thirty healthy canary days of users who send many requests, looked at every hour: no alarm."""
    alarms = [s for s in range(30) if _first_alarm_hour(DaySpec("canary-20", 6000, 100 + s)) is not None]
    assert alarms == []


@pytest.mark.parametrize("fault, within_hours", [("errors", 3), ("null", 3)])
def test_a_regression_is_caught_within_hours_not_the_next_night(fault, within_hours):
    hour = _first_alarm_hour(DaySpec("canary-20", 6000, 7, fault))
    assert hour is not None and hour <= within_hours


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_an_error_burst_is_caught_within_two_hourly_looks_of_its_start(seed):
    spec = DaySpec("canary-20", 6000, seed, "error_burst")
    _, _, drawn = generate(spec, "m")
    hour = _first_alarm_hour(spec)
    assert hour is not None and hour - drawn["start_hour"] <= 2, (hour, drawn)


def test_a_slower_model_within_its_slo_is_left_to_the_nightly_analysis():
    """The guardrail acts on clear breaches (errors, broken answers, requests over the SLO), not on a relative
    slowdown inside the SLO: that is the nightly latency gate's question."""
    assert _first_alarm_hour(DaySpec("canary-20", 6000, 7, "latency")) is None
