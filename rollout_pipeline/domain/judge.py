"""Kayenta-style judge: classify each metric, candidate against control, then score them.

The rules are those of Netflix Kayenta's judge (``spinnaker/kayenta``, now also in
``spinnaker/spinnaker``), ``MannWhitneyClassifier.scala``, the Mann-Whitney
estimating equations of ``kayenta-mannwhitney/.../MannWhitney.scala`` (a port of
R's ``wilcox.test(conf.int=TRUE, exact=FALSE, correct=TRUE)``) and
``WeightedSumScorer.scala``; the defaults (tolerance 0.25, confidence 0.98) are
those of ``NetflixACAJudge.scala``.

Metric classification (``classify_metric``)
    NaNs are removed first. Either side empty: ``nodata``. Identical samples, or one
    single value on both sides: ``pass``. Otherwise the shift is experiment - control:
    its Hodges-Lehmann estimate is the median of the pairwise differences, its
    confidence interval that of the Wilcoxon rank-sum test (normal approximation
    with continuity and tie corrections). With ``tolerance = fraction * |estimate|``:

    - ``high`` when the interval lies above ``+tolerance``, the direction allows an
      increase and the mean ratio (experiment mean / control mean) is at least
      ``effect_size_thresholds[1]``;
    - ``low`` when it lies below ``-tolerance``, the direction allows a decrease and
      the mean ratio is at most ``effect_size_thresholds[0]``;
    - ``pass`` otherwise.

    The mean ratio counts as 1.0 when the control mean is 0 (Kayenta's rule).

How Kayenta's numbers are computed here, and where this differs
    Kayenta finds the interval's ends and the estimate with a Brent root finder
    (absolute tolerance 1e-4) on the standardised rank statistic ``z(mu)`` of
    ``experiment - mu`` against ``control``. That statistic is a step function of
    ``mu``, so its roots are pairwise differences. Here they are computed exactly:

    - With ``sigma`` the tie-corrected standard deviation of the statistic and ``z``
      the normal quantile, the interval is ``(d[k], d[N-1-k])``, ``d`` being the
      ``N = n*m`` sorted pairwise differences and
      ``k = N - 1 - floor(N/2 + 0.5 + z*sigma)``. The estimate, the median of ``d``,
      is a root of ``z(mu) = 0``; Kayenta's solver returns some point of that root
      interval.
    - "Interval above +tolerance" is decided by the rank test itself:
      ``z(+tolerance) > z_crit``, evaluated at the tolerance with ties counted half,
      as Kayenta's statistic counts them ("below -tolerance" is
      ``z(-tolerance) < -z_crit``). This is Kayenta's rule with an exact root finder.
      The two only differ when many pairwise differences equal the tolerance, as
      with zero-inflated metrics. There the interval collapses onto that value,
      Kayenta's answer depends on where its solver stops within 1e-4, and the test
      gives the answer Kayenta's own suite expects ("High Metric (Large Input)").
    - Degenerate samples (one value per side) need none of Kayenta's added Gaussian
      noise: the interval is then exactly that one difference.
    - Kayenta reports no p-value. Here it comes from ``scipy.stats.mannwhitneyu``
      (asymptotic, continuity-corrected), for information; it does not decide.
    - When the control mean is negative, a mean ratio would point the wrong way and
      Kayenta's effect-size gate would reverse its meaning. Here that gate is then
      not applied, and the reason says so.
    - Not modelled: Kayenta's per-metric critical thresholds (here a ``critical``
      metric that is not ``pass`` zeroes the score, which is Kayenta's behaviour
      with its default thresholds), ``NaNStrategy.Replace`` and ``NodataFailMetric``.

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

Scoring (``score_metrics``)
    ``report-only`` metrics are ignored. Per group, score = pass / (pass + high + low)
    x 100. A group with only ``nodata`` metrics has score 0, but the weighted sum
    counts it as 100 (Kayenta), so it costs nothing. Missing data is caught by the
    next rule instead: if at least half of the scored metrics are ``nodata``, the
    score is 0. Any ``critical`` metric that is not ``pass`` also makes the score 0.
    Weighted groups keep their weight. Groups without one share what the weights
    leave of 100 equally. The weight of a group with no metrics is lost. The sum is
    rounded half-up to 2 decimals.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal, get_args

import numpy as np

Classification = Literal["pass", "high", "low", "nodata"]
Direction = Literal["either", "increase", "decrease"]
Criticality = Literal["normal", "critical", "report-only"]

CLASSIFICATIONS: tuple[Classification, ...] = get_args(Classification)
DIRECTIONS: tuple[Direction, ...] = get_args(Direction)
CRITICALITIES: tuple[Criticality, ...] = get_args(Criticality)

NODATA_LIMIT_PERCENT = 50.0
EXACT_PAIRS = 1 << 21

_SAMPLE_PAIRS = 1 << 15
_MAX_ROUNDS = 200
_SEED = 20170101


@dataclass(frozen=True)
class MetricResult:
    """Outcome of comparing one metric, candidate (experiment) against control."""

    classification: Classification
    reason: str
    estimate: float | None
    """Hodges-Lehmann estimate of the shift experiment - control (None without data)."""
    interval: tuple[float, float] | None
    """(lower, upper) confidence interval of the shift at ``confidence``."""
    p_value: float | None
    """Two-sided Mann-Whitney U p-value (asymptotic); informative, not used to decide."""
    mean_ratio: float | None
    """Experiment mean / control mean; None when the control mean is 0 or data is missing."""
    tolerance: float | None
    """fraction x |estimate|: the interval must clear +/- this to be high/low."""
    confidence: float
    control_count: int
    experiment_count: int


@dataclass(frozen=True)
class GroupScore:
    """One group's share of the score: pass / (pass + high + low) x 100, with its counts."""

    name: str
    score: float
    weight: float
    no_data: bool
    passed: int
    high: int
    low: int
    nodata: int


@dataclass(frozen=True)
class ScoreResult:
    """Weighted-sum score (0-100) of a set of metric classifications, with reasons."""

    score: float
    groups: tuple[GroupScore, ...]
    reasons: tuple[str, ...]

    @property
    def group_scores(self) -> dict[str, float]:
        """Score of each group by name."""
        return {group.name: group.score for group in self.groups}


def classify_metric(
    control: Sequence[float] | np.ndarray,
    experiment: Sequence[float] | np.ndarray,
    direction: Direction = "either",
    fraction: float = 0.25,
    confidence: float = 0.98,
    *,
    effect_size_thresholds: tuple[float, float] = (1.0, 1.0),
) -> MetricResult:
    """Classify experiment against control as pass/high/low/nodata by Kayenta's Mann-Whitney rule."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), not {confidence!r}")
    if not (fraction >= 0.0 and math.isfinite(fraction)):
        raise ValueError(f"fraction must be a finite number >= 0, not {fraction!r}")
    low_ratio, high_ratio = effect_size_thresholds

    ys = _clean("control", control)
    xs = _clean("experiment", experiment)
    n, m = xs.size, ys.size
    unmeasured = MetricResult(
        classification="nodata", reason="", estimate=None, interval=None, p_value=None, mean_ratio=None,
        tolerance=None, confidence=confidence, control_count=m, experiment_count=n,
    )
    if n == 0 or m == 0:
        missing = " and ".join(side for side, size in (("candidate", n), ("control", m)) if size == 0)
        return replace(unmeasured, reason=f"no data for {missing} (candidate {n} values, control {m}, NaN removed)")

    control_mean = float(ys.mean())
    mean_ratio = float(xs.mean()) / control_mean if control_mean != 0.0 else None
    if xs[0] == xs[-1] == ys[0] == ys[-1]:
        return replace(
            unmeasured, classification="pass",
            reason=f"all {n + m} candidate and control values equal {_num(float(xs[0]))}",
            estimate=0.0, interval=(0.0, 0.0), p_value=1.0, mean_ratio=mean_ratio, tolerance=0.0,
        )

    estimate, lower, upper = _shift(xs, ys, confidence)
    tolerance = fraction * abs(estimate)
    measured = replace(
        unmeasured, classification="pass", estimate=estimate, interval=(lower, upper),
        p_value=float(_stats().mannwhitneyu(xs, ys, alternative="two-sided", method="asymptotic").pvalue),
        mean_ratio=mean_ratio, tolerance=tolerance,
    )
    if n == m and np.array_equal(xs, ys):
        return replace(measured, reason=f"candidate and control values are identical ({n} values)")

    shift = f"candidate shift {estimate:+.4g} ({_percent(confidence)} CI {_num(lower)}..{_num(upper)})"
    z_crit = float(_stats().norm.isf((1.0 - confidence) / 2.0))
    z_up = _rank_z(xs, ys, tolerance)
    z_down = z_up if tolerance == 0.0 else _rank_z(xs, ys, -tolerance)
    # Kayenta's deviation: the mean ratio, 1.0 when the control mean is 0.
    deviation = 1.0 if mean_ratio is None else mean_ratio
    gated = control_mean >= 0.0

    if z_up > z_crit:
        where = f"{shift} is above tolerance {_num(tolerance)} (rank z {z_up:.2f} > {z_crit:.2f})"
        if direction == "decrease":
            return replace(measured, reason=f"{where}, but only a decrease counts for this metric")
        if gated and deviation < high_ratio:
            return replace(
                measured, reason=f"{where}, but mean ratio {deviation:.4g} < effect-size threshold {high_ratio:g}"
            )
        return replace(measured, classification="high", reason=where + _ratio_note(mean_ratio, gated))
    if z_down < -z_crit:
        where = f"{shift} is below tolerance -{_num(tolerance)} (rank z {z_down:.2f} < -{z_crit:.2f})"
        if direction == "increase":
            return replace(measured, reason=f"{where}, but only an increase counts for this metric")
        if gated and deviation > low_ratio:
            return replace(
                measured, reason=f"{where}, but mean ratio {deviation:.4g} > effect-size threshold {low_ratio:g}"
            )
        return replace(measured, classification="low", reason=where + _ratio_note(mean_ratio, gated))
    return replace(measured, reason=f"{shift} is within tolerance +/-{_num(tolerance)}")


def score_metrics(
    results: Iterable[Mapping[str, object] | tuple[str, str, str]],
    group_weights: Mapping[str, float] | None = None,
) -> ScoreResult:
    """Kayenta's weighted-sum score (0-100) of classified metrics; critical failures or >=50% no-data give 0."""
    weights = dict(group_weights or {})
    for group, weight in weights.items():
        if not (math.isfinite(weight) and weight >= 0.0):
            raise ValueError(f"weight of group {group!r} must be a finite number >= 0, not {weight!r}")
    if sum(weights.values()) > 100.0 + 1e-9:
        raise ValueError(f"group weights sum to {sum(weights.values()):g}, more than 100")

    metrics = [_scored_metric(item, index) for index, item in enumerate(results)]
    ignored = sum(1 for metric in metrics if metric.criticality == "report-only")
    scored = [metric for metric in metrics if metric.criticality != "report-only"]

    counts: dict[str, dict[str, int]] = {}
    for metric in scored:
        counts.setdefault(metric.group, dict.fromkeys(CLASSIFICATIONS, 0))[metric.classification] += 1
    unweighted = [group for group in counts if group not in weights]
    shared_weight = (100.0 - sum(weights.values())) / len(unweighted) if unweighted else 0.0

    groups: list[GroupScore] = []
    reasons: list[str] = []
    for name, count in counts.items():
        judged = count["pass"] + count["high"] + count["low"]
        weight = weights.get(name, shared_weight)
        group = GroupScore(
            name=name,
            score=count["pass"] / judged * 100.0 if judged else 0.0,
            weight=weight,
            no_data=judged == 0,
            passed=count["pass"],
            high=count["high"],
            low=count["low"],
            nodata=count["nodata"],
        )
        groups.append(group)
        if group.no_data:
            reasons.append(
                f"group {name!r}: all {count['nodata']} metrics have no data: score 0, counted as 100 in the sum"
                f" (weight {weight:g})"
            )
        else:
            reasons.append(
                f"group {name!r}: {count['pass']} of {judged} metrics pass ({count['high']} high, {count['low']} low,"
                f" {count['nodata']} no data) -> {group.score:.2f} (weight {weight:g})"
            )
    for name in weights:
        if name not in counts:
            reasons.append(f"group {name!r} has weight {weights[name]:g} but no scored metrics: that share is lost")
    if ignored:
        reasons.append(f"{ignored} report-only metric(s) not scored")

    critical = [metric for metric in scored if metric.criticality == "critical" and metric.classification != "pass"]
    nodata = sum(1 for metric in scored if metric.classification == "nodata")
    if critical:
        reasons.extend(
            f"critical metric {metric.name} (group {metric.group!r}) is {metric.classification} -> score 0"
            for metric in critical
        )
        total = 0.0
    elif not scored:
        reasons.append("no metrics to score -> score 0")
        total = 0.0
    elif nodata / len(scored) * 100.0 >= NODATA_LIMIT_PERCENT:
        reasons.append(
            f"{nodata} of {len(scored)} metrics have no data, at least {NODATA_LIMIT_PERCENT:g}% -> score 0"
        )
        total = 0.0
    else:
        weighted = sum((100.0 if group.no_data else group.score) * group.weight / 100.0 for group in groups)
        total = _round_half_up(weighted, 2)
        reasons.append(f"score {total:.2f}: weighted sum of the group scores")
    return ScoreResult(score=total, groups=tuple(groups), reasons=tuple(reasons))


# --- internals ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scored:
    name: str
    classification: Classification
    group: str
    criticality: Criticality


def _scored_metric(item: Mapping[str, object] | tuple[str, str, str], index: int) -> _Scored:
    if isinstance(item, Mapping):
        missing = [key for key in ("classification", "group") if key not in item]
        if missing:
            raise ValueError(f"metric result #{index} lacks {', '.join(missing)}: {dict(item)!r}")
        classification, group = item["classification"], item["group"]
        criticality = item.get("criticality", "normal")
        name = repr(item["name"]) if item.get("name") else f"#{index}"
    else:
        try:
            classification, group, criticality = item
        except (TypeError, ValueError):
            raise ValueError(f"metric result #{index} is not (classification, group, criticality): {item!r}") from None
        name = f"#{index}"
    if classification not in CLASSIFICATIONS:
        raise ValueError(
            f"metric result {name}: classification must be one of {CLASSIFICATIONS}, not {classification!r}"
        )
    if criticality not in CRITICALITIES:
        raise ValueError(f"metric result {name}: criticality must be one of {CRITICALITIES}, not {criticality!r}")
    if not isinstance(group, str) or not group:
        raise ValueError(f"metric result {name}: group must be a non-empty string, not {group!r}")
    return _Scored(name, classification, group, criticality)  # type: ignore[arg-type]


def _clean(side: str, values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Values as a sorted float array without NaN; infinities are an error."""
    array = np.asarray(values, dtype=float).ravel()
    array = array[~np.isnan(array)]
    if np.isinf(array).any():
        raise ValueError(f"{side} values contain infinity")
    return np.sort(array)


def _tie_term(sorted_values: np.ndarray) -> float:
    """Sum of t^3 - t over the runs of equal values."""
    runs = _run_lengths(sorted_values).astype(float)
    return float(np.sum(runs**3 - runs))


def _run_lengths(sorted_values: np.ndarray) -> np.ndarray:
    if sorted_values.size == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(sorted_values[1:] != sorted_values[:-1]) + 1
    return np.diff(np.concatenate(([0], starts, [sorted_values.size])))


def _sigma(n: int, m: int, ties: float) -> float:
    total = n + m
    variance = n * m / 12.0 * ((total + 1) - ties / (total * (total - 1)))
    return math.sqrt(variance) if variance > 0.0 else 0.0


def _rank_z(xs: np.ndarray, ys: np.ndarray, mu: float) -> float:
    """Kayenta's ``wilcoxonDiff(mu, 0, x, y)``: continuity- and tie-corrected rank z of x - mu against y."""
    n, m = xs.size, ys.size
    shifted = xs - mu
    u = (np.searchsorted(ys, shifted, "left").sum() + np.searchsorted(ys, shifted, "right").sum()) / 2.0
    dz = float(u) - n * m / 2.0
    correction = 0.5 * float(np.sign(dz))

    # Ties of the combined sample: within each side, plus values the two sides share at this mu.
    ux, cx = _uniques(shifted)
    uy, cy = _uniques(ys)
    at = np.minimum(np.searchsorted(uy, ux), uy.size - 1)
    shared = uy[at] == ux
    a, b = cx[shared].astype(float), cy[at[shared]].astype(float)
    ties = _tie_term(shifted) + _tie_term(ys) + float(np.sum(3.0 * a * b * (a + b)))

    sigma = _sigma(n, m, ties)
    return (dz - correction) / sigma if sigma > 0.0 else 0.0


def _uniques(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    runs = _run_lengths(sorted_values)
    return sorted_values[np.cumsum(runs) - runs], runs


def _stats():
    """``scipy.stats``, imported when a metric is first judged: its import takes ~1 s, which the commands that
    reach this module without judging anything (``status``, ``report``, ``history``) should not pay."""
    from scipy import stats

    return stats


def _shift(xs: np.ndarray, ys: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """Hodges-Lehmann estimate of x - y and the ends of its rank-test confidence interval."""
    n, m = xs.size, ys.size
    pairs = n * m
    z = float(_stats().norm.isf((1.0 - confidence) / 2.0))
    z_sigma = z * _sigma(n, m, _tie_term(xs) + _tie_term(ys))
    k_lower = min(max(pairs - 1 - math.floor(pairs / 2 + 0.5 + z_sigma), 0), pairs - 1)
    k_upper = min(max(pairs - 1 - math.floor(pairs / 2 - 0.5 - z_sigma), 0), pairs - 1)
    ks = sorted({k_lower, k_upper, (pairs - 1) // 2, pairs // 2})
    value = dict(zip(ks, _order_statistics(xs, ys, ks), strict=True))
    estimate = (value[(pairs - 1) // 2] + value[pairs // 2]) / 2.0
    return estimate, value[k_lower], value[k_upper]


def _order_statistics(
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


def _ratio_note(mean_ratio: float | None, gated: bool) -> str:
    if mean_ratio is None:
        return ", control mean 0"
    if not gated:
        return f", mean ratio {mean_ratio:.4g} (negative control mean: effect-size gate not applied)"
    return f", mean ratio {mean_ratio:.4g}"


def _num(value: float) -> str:
    return f"{value:.4g}"


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.4g}%"


def _round_half_up(value: float, places: int) -> float:
    """Round like commons-math ``MathUtils.round`` (BigDecimal of the decimal string, HALF_UP)."""
    return float(Decimal(repr(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))
