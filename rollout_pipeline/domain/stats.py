"""The statistics behind the gates: means and rates over clustered units, bounds on quantiles.

A day's requests are not independent: one user (entity) sends many, and in canary the
candidate and the stable model serve *different* users. So every mean or rate here is
estimated with a cluster-robust (linearization) standard error over the unit that
was randomized: the entity when there is one, else the request. Pure functions, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

_N = NormalDist()


def z_of(confidence: float) -> float:
    """The one-sided normal quantile for ``confidence`` (0.98 -> 2.054)."""
    return _N.inv_cdf(confidence)


@dataclass(frozen=True)
class Estimate:
    """A mean over clustered observations: the value, its standard error, and how many units back it."""

    value: float
    se: float
    units: int  # independent units (clusters): entities, or requests when there is no entity
    observations: int

    def lower(self, z: float) -> float:
        return self.value - z * self.se

    def upper(self, z: float) -> float:
        return self.value + z * self.se


def clustered_mean(values: Iterable[tuple[Hashable | None, float]]) -> Estimate | None:
    """Mean of (cluster, value) observations with a cluster-robust standard error.

    Observations whose cluster is None are units of their own. The variance is the
    linearization (sandwich) estimate with the small-sample factor k / (k - 1):
    Var = k / (k - 1) * sum_c (sum_{i in c} (x_i - mean))^2 / N^2. With one
    observation per cluster it is the usual s^2 / N (up to (N - 1) / N).
    None without observations.
    """
    sums: dict[object, list[float]] = {}
    total, n = 0.0, 0
    for k, (cluster, x) in enumerate(values):
        key = ("_", k) if cluster is None else cluster
        acc = sums.setdefault(key, [0.0, 0])
        acc[0] += x
        acc[1] += 1
        total += x
        n += 1
    if n == 0:
        return None
    mean = total / n
    k = len(sums)
    if k < 2:
        return Estimate(mean, math.inf, k, n)
    ss = sum((s - c * mean) ** 2 for s, c in sums.values())
    var = k / (k - 1) * ss / (n * n)
    return Estimate(mean, math.sqrt(max(var, 0.0)), k, n)


def smoothed_rate_se(events: int, trials: int, units: int, design_effect: float = 1.0) -> float:
    """A floor for a rate's standard error: Agresti-Coull-style smoothing, so zero events never mean zero doubt.

    p = (events + 1) / (trials + 2); SE = sqrt(p (1 - p) * design_effect / units).
    """
    if units <= 0:
        return math.inf
    p = (events + 1) / (trials + 2)
    return math.sqrt(p * (1 - p) * max(design_effect, 1.0) / units)


def difference(candidate: Estimate, stable: Estimate, *, paired_se: float | None = None) -> Estimate:
    """candidate - stable for two independent samples (or with a paired SE when given)."""
    se = paired_se if paired_se is not None else math.hypot(candidate.se, stable.se)
    return Estimate(candidate.value - stable.value, se, min(candidate.units, stable.units),
                    min(candidate.observations, stable.observations))


def units_needed(se: float, units: int, target_se: float) -> int:
    """Units needed for the standard error to fall to ``target_se`` (SE shrinks as 1/sqrt(units))."""
    if target_se <= 0 or not math.isfinite(se):
        return 0
    return max(units, math.ceil(units * (se / target_se) ** 2))


def _lower_rank(n: int, q: float, z: float) -> int:
    """0-based rank of the order statistic below the ``q`` quantile of n values at one-sided confidence z."""
    return min(max(math.floor(n * q - z * math.sqrt(n * q * (1 - q))), 0), n - 1)


def quantile_ranks(n: int, q: float, z: float) -> tuple[int, int] | None:
    """0-based ranks (lo, hi) of the order statistics that bound the ``q`` quantile of n values.

    Distribution-free: the number of values below the true quantile is Binomial(n, q),
    so with its normal approximation the interval (x_(lo), x_(hi)) covers it with one-sided
    confidence z on each end. None when n is too small for the upper bound to exist
    (the upper rank would be past the largest value).
    """
    if n <= 0:
        return None
    hi = math.ceil(n * q + z * math.sqrt(n * q * (1 - q)))
    if hi > n - 1:
        return None
    return _lower_rank(n, q, z), hi


def min_n_for_quantile(q: float, z: float) -> int:
    """The smallest n whose ``q`` quantile has an upper bound at one-sided confidence z."""
    n = 1
    while quantile_ranks(n, q, z) is None:
        n += 1 if n < 64 else max(1, n // 32)
    while n > 1 and quantile_ranks(n - 1, q, z) is not None:
        n -= 1
    return n


@dataclass(frozen=True)
class QuantileBounds:
    """A quantile's point estimate and its distribution-free bounds."""

    q: float
    value: float
    lower: float
    upper: float
    n: int


def quantile_bounds(values: Sequence[float], q: float, z: float) -> QuantileBounds | None:
    """The ``q`` quantile of ``values`` with lower and upper bounds; None when n cannot bound it."""
    n = len(values)
    ranks = quantile_ranks(n, q, z)
    if ranks is None:
        return None
    xs = sorted(values)
    point = xs[min(n - 1, max(0, math.ceil(n * q) - 1))]
    return QuantileBounds(q, point, xs[ranks[0]], xs[ranks[1]], n)


def lower_order_statistic(values: Sequence[float], q: float, z: float) -> float:
    """The lower bound of the ``q`` quantile at one-sided confidence z (it exists for any n >= 1)."""
    return sorted(values)[_lower_rank(len(values), q, z)]


def proportion_bounds(events: int, trials: int, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion (one-sided confidence z at each end)."""
    if trials <= 0:
        return 0.0, 1.0
    p = events / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def min_trials_to_exceed(limit: float, detect: float, z: float, z_power: float) -> int:
    """Trials needed so a true share ``detect`` gives a lower bound above ``limit`` with the given power."""
    if detect <= limit:
        return 0
    a = z * math.sqrt(limit * (1 - limit)) + z_power * math.sqrt(detect * (1 - detect))
    return math.ceil((a / (detect - limit)) ** 2)
