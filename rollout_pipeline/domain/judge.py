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

Exact order statistics on large samples, and their cost: ``domain.mannwhitney``. The
scorer (``score_metrics``): ``domain.scoring``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, get_args

import numpy as np

from rollout_pipeline.domain.mannwhitney import rank_z, scipy_stats, shift_interval

Classification = Literal["pass", "high", "low", "nodata"]
Direction = Literal["either", "increase", "decrease"]
Criticality = Literal["normal", "critical", "report-only"]

CLASSIFICATIONS: tuple[Classification, ...] = get_args(Classification)
DIRECTIONS: tuple[Direction, ...] = get_args(Direction)
CRITICALITIES: tuple[Criticality, ...] = get_args(Criticality)

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
    _check_arguments(direction, confidence, fraction, effect_size_thresholds)
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

    estimate, lower, upper = shift_interval(xs, ys, confidence)
    tolerance = fraction * abs(estimate)
    measured = replace(
        unmeasured, classification="pass", estimate=estimate, interval=(lower, upper),
        p_value=float(scipy_stats().mannwhitneyu(xs, ys, alternative="two-sided", method="asymptotic").pvalue),
        mean_ratio=mean_ratio, tolerance=tolerance,
    )
    if n == m and np.array_equal(xs, ys):
        return replace(measured, reason=f"candidate and control values are identical ({n} values)")
    return _beyond_tolerance(measured, xs, ys, direction, effect_size_thresholds, control_mean)


def _check_arguments(direction: str, confidence: float, fraction: float,
                     effect_size_thresholds: tuple[float, float]) -> None:
    _low, _high = effect_size_thresholds  # a pair, refused before any work
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), not {confidence!r}")
    if not (fraction >= 0.0 and math.isfinite(fraction)):
        raise ValueError(f"fraction must be a finite number >= 0, not {fraction!r}")


def _beyond_tolerance(measured: MetricResult, xs: np.ndarray, ys: np.ndarray, direction: Direction,
                      effect_size_thresholds: tuple[float, float], control_mean: float) -> MetricResult:
    """``measured`` classified: high or low when the rank test puts the shift beyond the tolerance, the
    direction counts it and the effect-size gate lets it through; else pass, with the reason."""
    low_ratio, high_ratio = effect_size_thresholds
    estimate, (lower, upper), tolerance = measured.estimate, measured.interval, measured.tolerance
    mean_ratio, confidence = measured.mean_ratio, measured.confidence
    shift = f"candidate shift {estimate:+.4g} ({_percent(confidence)} CI {_num(lower)}..{_num(upper)})"
    z_crit = float(scipy_stats().norm.isf((1.0 - confidence) / 2.0))
    z_up = rank_z(xs, ys, tolerance)
    z_down = z_up if tolerance == 0.0 else rank_z(xs, ys, -tolerance)
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


def _clean(side: str, values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Values as a sorted float array without NaN; infinities are an error."""
    array = np.asarray(values, dtype=float).ravel()
    array = array[~np.isnan(array)]
    if np.isinf(array).any():
        raise ValueError(f"{side} values contain infinity")
    return np.sort(array)


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
