"""Anytime-valid bounds: confidence sequences and e-values that stay valid however often they are looked at.

The nights of a canary step are pooled, and the gates look at the pooled evidence
every night. A fixed-sample bound (estimate +- z * se) looked at night after night
is crossed by chance more often than its confidence says. The bounds here hold at
every look at once (Lindon, Sanden & Shirikian, "Rapid Regression Detection in
Software Deployments through Sequential Testing", KDD 2022, take the same road for
Netflix's canaries; our intraday guardrail, ``domain.guardrail``, too):

- **Means and differences of means** (error-rate excess, prediction shift,
  complaint excess, accuracy): the normal-mixture confidence sequence (Robbins;
  Howard, Ramdas, McAuliffe & Sekhon, "Time-uniform, nonparametric, nonasymptotic
  confidence sequences", Ann. Statist. 2021, the normal mixture boundary), used as
  Waudby-Smith et al. ("Time-uniform central limit theory", 2021) use it with a
  plug-in standard error: with probability at least 1 - alpha,
  ``|estimate - truth| <= se * radius(u)`` at every look, where
  ``radius(u) = sqrt((1 + 1/u) * (log(1 + u) + 2 log(1/alpha)))`` and ``u`` is the
  information gathered relative to the mixture's tuning point. The tuning point is
  fixed by the policy (the standard error at which a gate expects to decide), never
  by the data, so the bound stays valid; it only decides where the bound is tightest.
- **Shares of a count** (requests above a latency threshold, broken or absurd
  answers): exact e-values of a binomial count -- the likelihood of a mixture of
  alternatives on the far side of the null's boundary against that boundary. Each
  ratio is a nonnegative supermartingale under the whole one-sided null, so is their
  mean, and by Ville's inequality it ever reaches 1/alpha with probability at most
  alpha. Clustered counts enter as effective counts (count and
  trials divided by the design effect).

Pure functions, no I/O.
"""

from __future__ import annotations

import functools
import math



def radius(alpha: float, info: float) -> float:
    """The normal-mixture boundary in standard errors at information ``info`` (> 0) and error ``alpha``."""
    u = max(info, 1e-12)
    return math.sqrt((1.0 + 1.0 / u) * (math.log1p(u) + 2.0 * math.log(1.0 / alpha)))


@functools.lru_cache(maxsize=64)
def tuned_info(alpha: float) -> float:
    """The information at which the boundary for ``alpha`` is tightest (golden-section search on log u)."""
    lo, hi = math.log(0.01), math.log(1e6)
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    for _ in range(80):
        if radius(alpha, math.exp(a)) < radius(alpha, math.exp(b)):
            hi = b
        else:
            lo = a
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    return math.exp((lo + hi) / 2)


def margin(se: float, alpha: float, se_ref: float) -> float:
    """Half-width of the anytime-valid bound of an estimate with standard error ``se``.

    The mixture is tuned so that the bound is tightest when ``se`` has fallen to
    ``se_ref`` (a policy-derived constant: where the gate expects to decide);
    before that it is wider, after it widens again slowly (as sqrt(log n)).
    """
    if not math.isfinite(se) or se_ref <= 0 or not math.isfinite(se_ref):
        return math.inf
    if se <= 0:
        return 0.0
    return se * radius(alpha, tuned_info(alpha) * (se_ref / se) ** 2)


def min_radius(alpha: float) -> float:
    """The narrowest the boundary gets, in standard errors (at its tuning point)."""
    return radius(alpha, tuned_info(alpha))


# The alternatives each share e-value mixes over, as multiples of the null's boundary: equal weights on a
# geometric grid, so that the e-value grows about as fast as the best of them whatever the true share's scale
# (a uniform mixture over (p0, 1), fine for the guardrail's shares of 5-50%, wastes almost all its mass far
# above a boundary of 1%).
ABOVE = (1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
BELOW = (0.9, 0.75, 0.5, 0.25, 0.1, 0.0)


def _log_binomial(x: float, n: float, p: float) -> float:
    """log of p^x (1-p)^(n-x), with 0 log 0 = 0 (and -inf for an impossible count)."""
    out = 0.0
    if x > 0:
        out += x * math.log(p) if p > 0 else -math.inf
    if n - x > 0:
        out += (n - x) * math.log1p(-p) if p < 1 else -math.inf
    return out


def _log_mean_ratio(x: float, n: float, p_null: float, alternatives) -> float:
    null = _log_binomial(x, n, p_null)
    logs = [_log_binomial(x, n, p) - null for p in alternatives]
    top = max(logs)
    if top == -math.inf:
        return -math.inf
    return top + math.log(sum(math.exp(v - top) for v in logs) / len(logs))


def log_e_above(x: float, n: float, p0: float) -> float:
    """log e-value against "share <= p0", from x events in n trials (a mixture of alternatives above p0).

    Real-valued x and n (effective counts) are allowed; 0 without trials.
    """
    if n <= 0 or p0 >= 1:
        return 0.0
    if p0 <= 0:
        return math.inf if x > 0 else 0.0
    alternatives = sorted({min(p0 * k, (1 + p0) / 2) for k in ABOVE})
    return _log_mean_ratio(x, n, p0, alternatives)


def log_e_below(x: float, n: float, p1: float) -> float:
    """log e-value against "share >= p1", from x events in n trials (a mixture of alternatives below p1).

    Real-valued x and n (effective counts) are allowed; 0 without trials.
    """
    if n <= 0 or p1 <= 0:
        return 0.0
    if p1 >= 1:
        return math.inf if x < n else 0.0
    return _log_mean_ratio(x, n, p1, [p1 * k for k in BELOW])


def trials_to_show_below(share: float, p1: float, alpha: float, limit: int = 10_000_000) -> int | None:
    """Trials after which a true ``share`` (observed exactly) shows "share < p1" at ``alpha``; None past ``limit``.

    The planning estimate of a count gate's minimum sample: the events are taken at
    their expected number, so about half of the time it takes a little longer.
    """
    if share >= p1:
        return None
    threshold = math.log(1.0 / alpha)
    n = 1.0
    while n <= limit:
        if log_e_below(share * n, n, p1) >= threshold:
            break
        n *= 1.25
    else:
        return None
    lo, hi = n / 1.25, n
    for _ in range(40):
        mid = (lo + hi) / 2
        if log_e_below(share * mid, mid, p1) >= threshold:
            hi = mid
        else:
            lo = mid
    return math.ceil(hi)
