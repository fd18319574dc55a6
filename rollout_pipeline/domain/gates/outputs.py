"""Gates on the candidate's outputs: implausible answers (extremes), the mean shift against the stable's, and how
often the two models' labels disagree on the same request."""

from __future__ import annotations

import json
import math

from pydantic import Field, field_validator

from rollout_pipeline.domain.formatting import pct
from rollout_pipeline.domain.gates.comparisons import (
    compare,
    population_of,
    share_needed,
    share_verdict,
    two_sided,
    unit_word,
)
from rollout_pipeline.domain.gates.context import GateContext, MetricCheck, answer_sides, answered, check, is_ok
from rollout_pipeline.domain.gates.registry import Limits, gate
from rollout_pipeline.domain.ranges import MAX_FACTOR, MAX_PREDICTION
from rollout_pipeline.domain.stats import clustered_mean, smoothed_rate_se, units_needed
from rollout_pipeline.domain.summary import ABSURD_VALUE, SampleRow, finite

# Without policy bounds, plausible outputs are the stable's sampled range between these quantiles (robust to a
# stray outlier of its own), widened by its width on each side (docs/policy.md, "extremes").
STABLE_RANGE = (0.001, 0.999)


class ExtremesLimits(Limits):
    """``gates.extremes``: the share of the candidate's outputs outside plausible bounds."""

    bounds: tuple[float, float] | None = Field(None, description="[low, high] plausible outputs; None: the "
                                               "stable's sampled range, widened")
    limit: float = Field(0.001, ge=0, le=1, description="share of outputs out of bounds allowed")
    detectable: float = Field(0.01, gt=0, le=1, description="share of extremes the minimum sample must catch")

    flat_names = {"prediction_bounds": "bounds", "extreme_share_limit": "limit",
                  "extreme_share_detectable": "detectable"}
    beyond = (("detectable", "limit"),)

    @field_validator("bounds")
    @classmethod
    def _ordered(cls, bounds: tuple[float, float] | None) -> tuple[float, float] | None:
        if bounds is not None and not bounds[0] < bounds[1]:
            raise ValueError("must be [low, high] with low < high")
        if bounds is not None and any(abs(b) >= MAX_PREDICTION for b in bounds):
            raise ValueError(f"must lie within (-{MAX_PREDICTION:g}, {MAX_PREDICTION:g})")
        return bounds


class PredictionShiftLimits(Limits):
    """``gates.prediction_shift``: the candidate's mean output against the stable's, in stable sd."""

    limit: float = Field(0.5, ge=0, le=MAX_FACTOR,
                         description="|mean shift| allowed, in standard deviations of the stable predictions")
    detectable: float = Field(1.0, gt=0, le=MAX_FACTOR, description="shift (stable sd) the minimum sample must catch")

    flat_names = {"prediction_shift_limit": "limit", "prediction_shift_detectable": "detectable"}
    beyond = (("detectable", "limit"),)


class DisagreementLimits(Limits):
    """``gates.disagreement``: labels, the share of paired answers that differ."""

    limit: float = Field(0.3, ge=0, le=1, description="labels: share of paired answers that disagree")
    detectable: float = Field(0.45, gt=0, le=1,
                              description="share of disagreeing answers the minimum sample must catch")

    flat_names = {"disagreement_limit": "limit", "disagreement_detectable": "detectable"}
    beyond = (("detectable", "limit"),)


EXTREMES_DOC = (
    "| `extremes` (critical) | share of the candidate's sampled outputs outside plausible bounds: "
    "`gates.extremes.bounds`, else the stable's 0.1–99.9% range widened by its width; for classes, labels the stable "
    "never gives | > `gates.extremes.limit` 0.1% | < `gates.extremes.detectable` 1% | "
    "`test_gate_verdicts[extremes-*]` |")
PREDICTION_SHIFT_DOC = (
    "| `prediction_shift` (normal) | mean output, candidate − stable, in the stable's standard deviations: pairs, or "
    "over entities | \\|shift\\| > `gates.prediction_shift.limit` 0.5 sd | \\|shift\\| < "
    "`gates.prediction_shift.detectable` 1.0 sd | `test_gate_verdicts[prediction_shift-*]` |")
DISAGREEMENT_DOC = (
    "| `disagreement` (normal) | labels: share of paired answers that differ (1 − Jaccard overlap for item lists) | > "
    "`gates.disagreement.limit` 30% | < `gates.disagreement.detectable` 45% | `test_gate_verdicts[disagreement-*]` |")


def _candidate_answer_rows(ctx: GateContext) -> list[SampleRow]:
    """The candidate's sampled answers of the sides that carry them (served and mirrored in canary)."""
    sides, _ = answer_sides(ctx.summary, ctx.stage)
    wanted = set(sides)
    return [r for r in ctx.summary.sample if (r.variant, r.served) in wanted and answered(r)]


def _bounds(ctx: GateContext) -> tuple[float, float] | None:
    """Plausible outputs: the policy's bounds, else the stable's sampled 0.1%-99.9% range widened by its width."""
    if ctx.policy.gates.extremes.bounds is not None:
        return ctx.policy.gates.extremes.bounds
    vals = sorted(v for r in ctx.stable_rows if is_ok(r) and finite(v := r.prediction))
    if len(vals) < ctx.policy.min_units:
        return None
    lo, hi = vals[int(STABLE_RANGE[0] * (len(vals) - 1))], vals[math.ceil(STABLE_RANGE[1] * (len(vals) - 1))]
    width = hi - lo
    if width <= 0:
        return None  # a constant baseline: no spread to derive bounds from
    return lo - width, hi + width


def _known_labels(ctx: GateContext) -> set[str] | None:
    """The labels the stable model gives (sample and the days' most frequent), or None for item lists."""
    known = {r.label for r in ctx.stable_rows if r.label is not None}
    if ctx.stable is not None:
        known |= {label for label, _ in ctx.stable.label_counts}
    if not known or any(label.startswith("[") for label in known):
        return None
    return known


@gate("extremes", group="predictions", criticality="critical", limits=ExtremesLimits, order=40, doc=EXTREMES_DOC)
def extremes(ctx: GateContext) -> MetricCheck | None:
    """Candidate outputs outside plausible bounds (numbers), or labels the stable model never gives (classes):
    fail when their share is confidently above the limit, pass when confidently under the step's bar."""
    p, lim = ctx.policy, ctx.policy.gates.extremes
    rows = _candidate_answer_rows(ctx)
    c_vals = [r.prediction for r in rows if is_ok(r) and r.prediction is not None]
    c_labels = [r.label for r in rows if is_ok(r) and r.prediction is None and r.label is not None]
    population = "sampled answers"
    if not c_vals and not c_labels:
        return None if rows else check(ctx, "extremes", "predictions", "nodata", None, None,
                                       "extremes not judged: no candidate answers", 0, p.min_units, population)
    if c_vals:
        bounds = _bounds(ctx)
        if bounds is None:
            return check(ctx, "extremes", "predictions", "n/a", None, None,
                         "extremes not judged: no bounds (the stable model is a constant; set prediction_bounds)")
        outside = sum(1 for v in c_vals if not (math.isfinite(v) and bounds[0] <= v <= bounds[1]))
        n = len(c_vals)
        where = f"outside [{bounds[0]:.4g}, {bounds[1]:.4g}]"
    else:
        known = _known_labels(ctx)
        if known is None:
            return check(ctx, "extremes", "predictions", "n/a", None, None,
                         "extremes not judged: item lists have no fixed set of labels")
        outside = sum(1 for label in c_labels if label not in known)
        n = len(c_labels)
        shown = ", ".join(sorted(known)[:5]) + (", ..." if len(known) > 5 else "")
        where = f"outside the stable's labels {{{shown}}}"
    share = outside / n
    bar = ctx.bar(lim.detectable, cap=0.5)
    verdict = share_verdict(ctx, outside, outside, n, lim.limit, bar) if n >= p.min_units else "nodata"
    said = f"candidate answers {where}: {outside:,} of {n:,} sampled ({pct(share)})"
    if verdict == "high":
        return check(ctx, "extremes", "predictions", "high", None, share,
                     f"{said}, confidently more than the limit {pct(lim.limit)}", n,
                     population=population)
    if verdict == "nodata":
        needed = max(p.min_units, share_needed(share, bar, ctx, n))
        return check(ctx, "extremes", "predictions", "nodata", None, share,
                     f"extremes not yet decided: {said}; showing under the bar {pct(bar)} needs ~{needed:,}",
                     n, needed, population)
    return check(ctx, "extremes", "predictions", "pass", None, share,
                 f"{said}, confidently under the bar {pct(bar)}", n, population=population)


# --- outputs against the stable's ---------------------------------------------------------------------

def prediction_value(row: SampleRow) -> float | None:
    """An ok answer's prediction, when it is a usable number (finite, not absurd)."""
    return row.prediction if is_ok(row) and finite(row.prediction) and abs(row.prediction) < ABSURD_VALUE else None


@gate("prediction_shift", group="predictions", limits=PredictionShiftLimits, order=60,
      doc=PREDICTION_SHIFT_DOC)
def prediction_shift(ctx: GateContext) -> MetricCheck | None:
    """The candidate's mean output against the stable's, in stable standard deviations."""
    p, lim = ctx.policy, ctx.policy.gates.prediction_shift
    sd = ctx.stable.prediction_std if ctx.stable is not None else None
    comp = compare(ctx, prediction_value)
    if comp is None:
        return None
    population = population_of(comp)
    if not sd or sd <= 1e-9 * max(1.0, abs(comp.stable.value)):
        return check(ctx, "prediction_shift", "predictions", "n/a", comp.stable.value, comp.candidate.value,
                     "prediction shift not judged: the stable predictions have no spread (a constant baseline)")
    d = comp.diff
    shift = d.value / sd
    unit = unit_word(comp)
    detail = f"mean {comp.stable.value:.4g} -> {comp.candidate.value:.4g} ({shift:+.2f} sd; {d.units:,} {unit})"
    if d.units < p.min_units:
        return check(ctx, "prediction_shift", "predictions", "nodata", comp.stable.value, comp.candidate.value,
                     f"prediction shift not judged: {d.units} {unit} < {p.min_units}", d.units, p.min_units,
                     population)
    limit, bar = lim.limit * sd, ctx.bar(lim.detectable) * sd
    cls, lower, upper = two_sided(ctx, d, limit, bar)
    if cls in ("high", "low"):
        return check(ctx, "prediction_shift", "predictions", cls, comp.stable.value, comp.candidate.value,
                     f"predictions shifted {'up' if cls == 'high' else 'down'}: {detail}, confidently beyond "
                     f"{lim.limit} sd", d.units, population=population)
    if cls == "nodata":
        needed = units_needed(d.se, d.units, ctx.se_to_pass(bar, abs(d.value)))
        return check(ctx, "prediction_shift", "predictions", "nodata", comp.stable.value, comp.candidate.value,
                     f"prediction shift not yet decided: {detail}; within +-{bar / sd:.2g} sd not yet shown "
                     f"(~{needed:,} {unit} needed)", d.units, needed, population)
    return check(ctx, "prediction_shift", "predictions", "pass", comp.stable.value, comp.candidate.value,
                 f"predictions {detail}, confidently within +-{bar / sd:.2g} sd", d.units, population=population)


def label_distance(a: str, b: str) -> float:
    """0 when two labels agree, 1 when they differ; for item lists (JSON arrays) 1 - Jaccard overlap."""
    x, y = items_of(a), items_of(b)
    if x is None or y is None:
        return float(a != b)
    union = x | y
    return 1 - len(x & y) / len(union) if union else 0.0


def items_of(text: str) -> set[str] | None:
    """The items of an item list (a JSON array), or None for a plain label."""
    if not text.startswith("["):
        return None
    try:
        return set(map(str, json.loads(text)))
    except ValueError:
        return None


@gate("disagreement", group="predictions", limits=DisagreementLimits, order=70, doc=DISAGREEMENT_DOC)
def disagreement(ctx: GateContext) -> MetricCheck | None:
    """Labels: how often the two models' answers to the same request differ (1 - overlap for item lists)."""
    p, lim = ctx.policy, ctx.policy.gates.disagreement
    obs = [(pr.entity, label_distance(pr.stable.label, pr.candidate.label)) for pr in ctx.pairs
           if is_ok(pr.stable) and is_ok(pr.candidate) and pr.stable.label is not None
           and pr.candidate.label is not None]
    if not obs:
        return None
    est = clustered_mean(obs)
    population = "paired requests"
    if est.units < p.min_units:
        return check(ctx, "disagreement", "predictions", "nodata", None, est.value,
                     f"disagreement not judged: {est.units} paired entities < {p.min_units}", est.units,
                     p.min_units, population)
    se = max(est.se, smoothed_rate_se(round(est.value * len(obs)), len(obs), est.units))
    limit = lim.limit
    bar = ctx.bar(lim.detectable, cap=1.0)
    lower = est.value - ctx.fail_margin(se, bar, limit)
    upper = est.value + ctx.pass_margin(se, bar)
    said = f"paired answers disagree on {pct(est.value)} ({len(obs):,} pairs, {est.units:,} entities)"
    if lower > limit:
        return check(ctx, "disagreement", "predictions", "high", None, est.value,
                     f"{said}: at least {pct(lower)} > limit {pct(limit)}", est.units, population=population)
    if upper > bar:
        needed = units_needed(se, est.units, ctx.se_to_pass(bar, est.value))
        return check(ctx, "disagreement", "predictions", "nodata", None, est.value,
                     f"disagreement not yet decided: {said}; at most {pct(upper)} > bar {pct(bar)} "
                     f"(~{needed:,} entities needed)", est.units, needed, population)
    return check(ctx, "disagreement", "predictions", "pass", None, est.value,
                 f"{said}; at most {pct(upper)} <= bar {pct(bar)}", est.units, population=population)
