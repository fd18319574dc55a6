"""The Mann-Whitney statistics of the judge (``domain.judge``): tie-corrected rank z, the Hodges-Lehmann shift
and its rank-test interval, computed exactly from order statistics of the pairwise differences.

Speed on large samples
    Pairwise differences are listed and partitioned directly while ``n*m`` is at most
    ``EXACT_PAIRS`` (about 2e6). Above that, each needed order statistic of
    ``x_i - y_j`` is still computed **exactly**, without listing all pairs. Both
    samples are sorted. For each ``x_i``, the pairs still bracketing the wanted rank
    form a contiguous run of ``y``. Rounds of (sample pairs uniformly from the
    bracket -> take two sample quantiles around the wanted rank as pivots -> count
    the pairs below each pivot with ``np.searchsorted``) shrink the bracket about
    30-fold per round. Once it holds at most ``EXACT_PAIRS`` pairs, they are listed
    and partitioned. A pivot whose run of equal differences contains the wanted rank
    ends the search at once, so heavy ties are cheap. The random pivots only affect
    speed, never the result (which is the exact order statistic up to the rounding of
    ``x_i - y_j``; a fixed seed keeps runs repeatable). Cost: ``O((n + m) log(n + m))``
    per round, three rounds typically. 100k against 100k values takes 0.1-0.4 s in
    all (measured on a loaded 2-core machine).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

EXACT_PAIRS = 1 << 21

_SAMPLE_PAIRS = 1 << 15
_MAX_ROUNDS = 200
_SEED = 20170101


def tie_term(sorted_values: np.ndarray) -> float:
    """Sum of t^3 - t over the runs of equal values."""
    runs = run_lengths(sorted_values).astype(float)
    return float(np.sum(runs**3 - runs))


def run_lengths(sorted_values: np.ndarray) -> np.ndarray:
    if sorted_values.size == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(sorted_values[1:] != sorted_values[:-1]) + 1
    return np.diff(np.concatenate(([0], starts, [sorted_values.size])))


def rank_sigma(n: int, m: int, ties: float) -> float:
    total = n + m
    variance = n * m / 12.0 * ((total + 1) - ties / (total * (total - 1)))
    return math.sqrt(variance) if variance > 0.0 else 0.0


def rank_z(xs: np.ndarray, ys: np.ndarray, mu: float) -> float:
    """Kayenta's ``wilcoxonDiff(mu, 0, x, y)``: continuity- and tie-corrected rank z of x - mu against y."""
    n, m = xs.size, ys.size
    shifted = xs - mu
    u = (np.searchsorted(ys, shifted, "left").sum() + np.searchsorted(ys, shifted, "right").sum()) / 2.0
    dz = float(u) - n * m / 2.0
    correction = 0.5 * float(np.sign(dz))

    # Ties of the combined sample: within each side, plus values the two sides share at this mu.
    ux, cx = uniques(shifted)
    uy, cy = uniques(ys)
    at = np.minimum(np.searchsorted(uy, ux), uy.size - 1)
    shared = uy[at] == ux
    a, b = cx[shared].astype(float), cy[at[shared]].astype(float)
    ties = tie_term(shifted) + tie_term(ys) + float(np.sum(3.0 * a * b * (a + b)))

    sigma = rank_sigma(n, m, ties)
    return (dz - correction) / sigma if sigma > 0.0 else 0.0


def uniques(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    runs = run_lengths(sorted_values)
    return sorted_values[np.cumsum(runs) - runs], runs


def scipy_stats():
    """``scipy.stats``, imported when a metric is first judged: its import takes ~1 s, which the commands that
    reach this module without judging anything (``status``, ``report``, ``history``) should not pay."""
    from scipy import stats

    return stats


def shift_interval(xs: np.ndarray, ys: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """Hodges-Lehmann estimate of x - y and the ends of its rank-test confidence interval."""
    n, m = xs.size, ys.size
    pairs = n * m
    z = float(scipy_stats().norm.isf((1.0 - confidence) / 2.0))
    z_sigma = z * rank_sigma(n, m, tie_term(xs) + tie_term(ys))
    k_lower = min(max(pairs - 1 - math.floor(pairs / 2 + 0.5 + z_sigma), 0), pairs - 1)
    k_upper = min(max(pairs - 1 - math.floor(pairs / 2 - 0.5 - z_sigma), 0), pairs - 1)
    ks = sorted({k_lower, k_upper, (pairs - 1) // 2, pairs // 2})
    value = dict(zip(ks, order_statistics(xs, ys, ks), strict=True))
    estimate = (value[(pairs - 1) // 2] + value[pairs // 2]) / 2.0
    return estimate, value[k_lower], value[k_upper]


def order_statistics(
    xs: np.ndarray, ys: np.ndarray, ks: Sequence[int], *, exact_pairs: int = EXACT_PAIRS
) -> list[float]:
    """The k-th smallest (0-based) of the differences x_i - y_j, for each k; xs and ys sorted."""
    if xs.size * ys.size <= exact_pairs:
        differences = np.subtract.outer(xs, ys).ravel()
        differences.partition(list(ks))
        return [float(differences[k]) for k in ks]
    rng = np.random.default_rng(_SEED)
    found: dict[int, float] = {}
    for k in sorted(ks):
        found[k] = _next_up(xs, ys, k, found[k - 1]) if k - 1 in found else _select(xs, ys, k, rng, exact_pairs)
    return [found[k] for k in ks]


def _next_up(xs: np.ndarray, ys: np.ndarray, k: int, previous: float) -> float:
    """The k-th smallest x_i - y_j given that the (k-1)-th is ``previous``."""
    at_most = _boundary(xs, ys, previous, strict=False)
    if k < xs.size * ys.size - int(at_most.sum()):
        return previous
    rows = np.flatnonzero(at_most > 0)  # each row's smallest difference above ``previous`` is at at_most - 1
    return float(np.min(xs[rows] - ys[at_most[rows] - 1]))


def _select(xs: np.ndarray, ys: np.ndarray, k: int, rng: np.random.Generator, budget: int) -> float:
    """Exact k-th smallest x_i - y_j by sampled pivots and counting (see the module docstring)."""
    n, m = xs.size, ys.size
    # Row i's bracket is ys[first[i]:stop[i]]; j >= stop[i] gives smaller differences, j < first[i] larger.
    first = np.zeros(n, dtype=np.int64)
    stop = np.full(n, m, dtype=np.int64)
    for _ in range(_MAX_ROUNDS):
        width = stop - first
        ends = np.cumsum(width)
        size = int(ends[-1])
        below = n * m - int(stop.sum())
        rank = min(max(k - below, 0), size - 1)
        if size <= budget:
            rows = np.repeat(np.arange(n), width)
            cols = first[rows] + (np.arange(size) - np.repeat(ends - width, width))
            bracket = xs[rows] - ys[cols]
            bracket.partition(rank)
            return float(bracket[rank])
        draws = rng.integers(0, size, size=_SAMPLE_PAIRS)
        rows = np.searchsorted(ends, draws, "right")
        cols = first[rows] + (draws - (ends[rows] - width[rows]))
        sample = np.sort(xs[rows] - ys[cols])
        centre = rank / size * _SAMPLE_PAIRS
        spread = 3.0 * math.sqrt(_SAMPLE_PAIRS)
        for position in (centre - spread, centre + spread):
            pivot = float(sample[min(max(int(position), 0), _SAMPLE_PAIRS - 1)])
            at_most = _boundary(xs, ys, pivot, strict=False)
            if k >= n * m - int(at_most.sum()):
                stop = np.maximum(np.minimum(stop, at_most), first)
                continue
            under = _boundary(xs, ys, pivot, strict=True)
            if k < n * m - int(under.sum()):
                first = np.minimum(np.maximum(first, under), stop)
                continue
            return pivot
    raise RuntimeError(f"order statistic {k} of {n}x{m} differences not found in {_MAX_ROUNDS} rounds")


def _boundary(xs: np.ndarray, ys: np.ndarray, pivot: float, *, strict: bool) -> np.ndarray:
    """Per row i, the first j with x_i - y_j <= pivot (< pivot if strict), the difference rounded as computed.

    ``searchsorted`` compares y_j with the rounded x_i - pivot, which near ties can disagree with
    the rounded x_i - y_j; stepping from its answer to where the rounded difference itself crosses
    keeps every count consistent with the values that are finally partitioned. For a fixed x_i
    the rounded difference is monotone in j, so the boundary is unique and a run or two away.
    """
    m = ys.size
    boundary = np.searchsorted(ys, xs - pivot, "right" if strict else "left")

    def inside(columns: np.ndarray) -> np.ndarray:
        differences = xs - ys[np.clip(columns, 0, m - 1)]
        return differences < pivot if strict else differences <= pivot

    # Equal y values give equal differences: step over a whole run of them at once.
    while (back := np.flatnonzero((boundary > 0) & inside(boundary - 1))).size:
        boundary[back] = np.searchsorted(ys, ys[boundary[back] - 1], "left")
    while (ahead := np.flatnonzero((boundary < m) & ~inside(boundary))).size:
        boundary[ahead] = np.searchsorted(ys, ys[boundary[ahead]], "right")
    return boundary
