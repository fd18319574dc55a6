"""The intraday guardrail: critical counts of the day so far, tested so that looking every hour stays valid.

A check repeated through the day multiplies false alarms if each look is a
fixed-sample test. Following Lindon et al. (Netflix, "Rapid Regression Detection
in Software Deployments through Sequential Testing", KDD 2022), each metric is an
*anytime-valid* sequential test: an e-value that, under the null hypothesis, is a
nonnegative martingale in the order events arrive, so by Ville's inequality the
chance it *ever* reaches 1/alpha -- at any hour, however often it is looked at --
is at most alpha.

For counts (errors, requests slower than the SLO, answers without a usable
output): condition on the day's events of both sides. With ``n_c`` and ``n_s``
requests, each new event is the candidate's with probability
``theta = n_c p_c / (n_c p_c + n_s p_s)``. The null "the candidate's rate is at most
``ratio`` times the stable's" is ``theta <= theta0 = n_c ratio / (n_c ratio + n_s)``.
The e-value is the likelihood ratio of a uniform mixture over ``theta`` in
``(theta0, 1)`` against ``theta0``; for every ``theta <= theta0`` its expectation
is at most 1, event by event, so it is a supermartingale under the whole null.

Assumptions, stated: events are conditionally independent given the rates
(Poisson), and the canary share does not change during the day. One entity
failing again and again breaks the first; ``ratio`` (2x by default) and
``min_events`` keep such clusters from tripping it, and the false-alarm rate on
clustered days is measured (rollout_pipeline_tests/domain_tests/test_guardrail.py).
It never promotes: it only rolls back, on a clear regression, before the night.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import betaln
from scipy.stats import beta as beta_dist

from rollout_pipeline.domain.policy import Policy


@dataclass(frozen=True)
class SideCounts:
    """One side's requests of the day so far and its critical events."""

    requests: int
    errors: int  # status error or timeout
    slow: int  # latency above the policy's SLO
    broken: int  # ok answers without a usable output (none, non-finite, absurd, out of bounds)


@dataclass(frozen=True)
class SequentialTest:
    """One metric's anytime-valid test: the counts, the e-value, and whether it crossed 1/alpha."""

    metric: str
    candidate_events: int
    candidate_requests: int
    stable_events: int
    stable_requests: int
    log_e: float
    threshold: float  # log(1/alpha)
    alarm: bool
    reason: str


def log_e_values(x_c, n_c: float, x_s, n_s: float, ratio: float) -> np.ndarray:
    """log of the mixture e-value against "candidate rate <= ratio x stable rate", for arrays of counts."""
    x_c, x_s = np.asarray(x_c, dtype=float), np.asarray(x_s, dtype=float)
    events = x_c + x_s
    if n_c <= 0 or n_s <= 0:
        return np.zeros_like(events)
    theta0 = n_c * ratio / (n_c * ratio + n_s)
    # integral over (theta0, 1) of theta^x (1-theta)^(N-x) dtheta / (1 - theta0), against theta0^x (1-theta0)^(N-x)
    a, b = x_c + 1, events - x_c + 1
    log_mixture = betaln(a, b) + beta_dist.logsf(theta0, a, b) - math.log1p(-theta0)
    log_null = x_c * math.log(theta0) + (events - x_c) * math.log1p(-theta0)
    return np.where(events > 0, log_mixture - log_null, 0.0)


def log_e_value(x_c: int, n_c: int, x_s: int, n_s: int, ratio: float) -> float:
    """log of the mixture e-value against "candidate rate <= ratio x stable rate" (0 without events)."""
    return float(log_e_values(x_c, n_c, x_s, n_s, ratio))


def count_test(metric: str, x_c: int, n_c: int, x_s: int, n_s: int, policy: Policy, alpha: float) -> SequentialTest:
    """The sequential test of one count; alarms once its e-value reaches 1/alpha with enough candidate events."""
    ratio = policy.guardrail_rate_ratio
    log_e = log_e_value(x_c, n_c, x_s, n_s, ratio)
    threshold = math.log(1 / alpha)
    alarm = log_e >= threshold and x_c >= policy.guardrail_min_events
    c_rate = x_c / n_c if n_c else 0.0
    s_rate = x_s / n_s if n_s else 0.0
    what = (f"{metric}: candidate {x_c} of {n_c} ({100 * c_rate:.2f}%) vs stable {x_s} of {n_s} "
            f"({100 * s_rate:.2f}%)")
    if alarm:
        reason = (f"{what}: more than {ratio:g}x the stable's rate at any-time-valid confidence "
                  f"(e-value {math.exp(min(log_e, 700)):.3g} >= {1 / alpha:.0f})")
    else:
        reason = f"{what}: e-value {math.exp(min(log_e, 700)):.3g} < {1 / alpha:.0f}"
    return SequentialTest(metric, x_c, n_c, x_s, n_s, log_e, threshold, alarm, reason)


@dataclass(frozen=True)
class GuardrailResult:
    """The tests of the day so far; ``alarms`` are the reasons of those that crossed."""

    tests: tuple[SequentialTest, ...]

    @property
    def alarms(self) -> tuple[str, ...]:
        return tuple(t.reason for t in self.tests if t.alarm)


def check(stable: SideCounts, candidate: SideCounts, policy: Policy) -> GuardrailResult:
    """The guardrail's critical tests (errors, slow requests, broken answers), alpha split among them."""
    metrics = [("errors", candidate.errors, stable.errors), ("broken answers", candidate.broken, stable.broken)]
    if policy.gates.latency.slo_p99_ms is not None:
        metrics.append((f"requests over the {policy.gates.latency.slo_p99_ms:.0f} ms SLO", candidate.slow, stable.slow))
    alpha = policy.guardrail_alpha / len(metrics)
    return GuardrailResult(tuple(count_test(name, xc, candidate.requests, xs, stable.requests, policy, alpha)
                                 for name, xc, xs in metrics))
