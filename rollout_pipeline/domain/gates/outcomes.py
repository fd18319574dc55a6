"""The accuracy gate: the candidate's error (numbers) or share right (labels) on actual outcomes, against the
stable's on the same requests where the other model answered them, else over entities."""

from __future__ import annotations

from pydantic import Field

from rollout_pipeline.domain.formatting import pct
from rollout_pipeline.domain.gates.comparisons import Comparison, compare, excess_verdict, population_of, unit_word
from rollout_pipeline.domain.gates.context import GateContext, MetricCheck, check, is_ok
from rollout_pipeline.domain.gates.outputs import items_of, prediction_value
from rollout_pipeline.domain.gates.registry import Limits, gate
from rollout_pipeline.domain.ranges import MAX_FACTOR
from rollout_pipeline.domain.stats import Estimate, units_needed
from rollout_pipeline.domain.summary import ABSURD_VALUE, SampleRow, finite


class AccuracyLimits(Limits):
    """``gates.accuracy``: growth of the error (numbers) or drop of the share right (labels), and late labels."""

    regression_allowed: float = Field(0.1, ge=0, le=MAX_FACTOR,
                                      description="numbers: mean absolute error may grow by this fraction")
    detectable: float = Field(0.5, gt=0, le=MAX_FACTOR,
                              description="numbers: growth of the error the minimum sample must catch")
    drop_allowed: float = Field(0.02, ge=0, le=1, description="labels: accuracy may drop by this many points")
    drop_detectable: float = Field(0.1, gt=0, le=1, description="labels: drop the minimum sample must catch")
    label_delay_days: int = Field(0, ge=0, le=60, description="days actual outcomes need to arrive; accuracy is judged "
                                  "on the requests of that many days before the analysed day")

    flat_names = {"accuracy_regression_allowed": "regression_allowed", "accuracy_detectable": "detectable",
                  "accuracy_drop_allowed": "drop_allowed", "accuracy_drop_detectable": "drop_detectable",
                  "label_delay_days": "label_delay_days"}
    beyond = (("detectable", "regression_allowed"), ("drop_detectable", "drop_allowed"))


ACCURACY_DOC = (
    "| `accuracy` (normal; critical in `first-model`) | on actual outcomes: growth of the mean absolute error "
    "(numbers) "
    "or drop of the share right (labels), pair by pair where the other model answered the same request, else over "
    "entities | growth > `gates.accuracy.regression_allowed` 10%; drop > `gates.accuracy.drop_allowed` 2 points | "
    "growth < `gates.accuracy.detectable` 50%; drop < `gates.accuracy.drop_detectable` 10 points | "
    "`test_gate_verdicts[accuracy-*]`, `test_no_outcome_ever_is_not_a_lack_of_data` |")


def label_score(predicted: str, actual: str) -> float:
    """1 for a right class; for item lists the share of the actual items that were recommended (recall)."""
    items = items_of(predicted)
    if items is None:
        return float(predicted == actual)
    truth = items_of(actual) or {actual}
    return len(items & truth) / len(truth) if truth else 1.0


def _error(r: SampleRow) -> float | None:
    """Numbers: the absolute error of an ok answer with a usable prediction and outcome."""
    if not (is_ok(r) and finite(r.actual) and abs(r.actual) < ABSURD_VALUE and (pv := prediction_value(r)) is not None):
        return None
    return abs(pv - r.actual)


def _score(r: SampleRow) -> float | None:
    """Labels: how right an ok answer was (1 or 0; recall for item lists)."""
    if not (is_ok(r) and r.actual_label is not None and r.label is not None):
        return None
    return label_score(r.label, r.actual_label)


def _without_outcomes(ctx: GateContext) -> MetricCheck | None:
    """No outcome in the rows: none ever (n/a, or a hold under require_outcomes), not yet, or nothing to judge."""
    p = ctx.policy
    if ctx.outcomes_seen is False:
        if p.require_outcomes:
            return check(ctx, "accuracy", "quality", "nodata", None, None,
                         "accuracy not judged: no outcomes for this model yet (require_outcomes holds the "
                         "rollout until actual outcomes arrive)", 0, p.min_units)
        return check(ctx, "accuracy", "quality", "n/a", None, None,
                     "accuracy not judged: no outcomes for this model (no actual outcome ever arrived for "
                     "this rollout; the other gates decide)")
    waiting = sum(1 for r in ctx.outcome_candidate_rows if r.served)
    if ctx.summary.accuracy_day not in (None, ctx.summary.day) or waiting:
        return check(ctx, "accuracy", "quality", "nodata", None, None,
                     f"accuracy not judged: no actual outcomes yet for {ctx.summary.accuracy_day or ctx.summary.day}",
                     0, p.min_units)
    return None


@gate("accuracy", group="quality", limits=AccuracyLimits, order=90, doc=ACCURACY_DOC)
def accuracy(ctx: GateContext) -> MetricCheck | None:
    """Quality once actual outcomes arrived: per-request error on the same requests, or per entity in canary."""
    p = ctx.policy
    rows = (*ctx.outcome_stable_rows, *ctx.outcome_candidate_rows)
    numeric = any(finite(r.actual) for r in rows)
    labelled = any(r.actual_label is not None for r in rows)
    if not numeric and not labelled:
        return _without_outcomes(ctx)
    comp = compare(ctx, _error if numeric else _score, outcome=True)
    population = population_of(comp)
    awaiting = sum(1 for r in ctx.outcome_candidate_rows if r.actual is None and r.actual_label is None)
    waiting_note = f"; {awaiting} sampled candidate requests still await their outcome" if awaiting else ""
    if comp is None or comp.diff.units < p.min_units:
        units = 0 if comp is None else comp.diff.units
        return check(ctx, "accuracy", "quality", "nodata", None, None,
                     f"accuracy not judged: outcomes for {units} {unit_word(comp)} < {p.min_units}{waiting_note}",
                     units, p.min_units, population)
    return _verdict(ctx, comp, numeric, waiting_note, population)


def _verdict(ctx: GateContext, comp: Comparison, numeric: bool, waiting_note: str, population: str) -> MetricCheck:
    """Growth of the error (numbers) or drop of the share right (labels) against the limit and the step's bar."""
    lim = ctx.policy.gates.accuracy
    d, s, c = comp.diff, comp.stable, comp.candidate
    unit = unit_word(comp)
    if numeric:
        # Growth of the mean absolute error, as a share of the stable's: larger is worse.
        scale = max(abs(s.value), 1e-12)
        growth = Estimate(d.value / scale, d.se / scale, d.units, d.observations)
        limit, bar = lim.regression_allowed, ctx.bar(lim.detectable)
        what = f"mean absolute error {c.value:.4g} vs stable {s.value:.4g} ({growth.value:+.1%})"
        said_limit = f"+{lim.regression_allowed:.0%}"
        worse_cls = "high"
    else:
        # Drop of the share right, in points: larger is worse.
        growth = Estimate(-d.value, d.se, d.units, d.observations)
        limit, bar = lim.drop_allowed, ctx.bar(lim.drop_detectable, cap=1.0)
        what = f"accuracy {pct(c.value)} vs stable {pct(s.value)}"
        said_limit = f"-{pct(lim.drop_allowed)}"
        worse_cls = "low"
    cls, lower, upper = excess_verdict(ctx, growth.value, growth.se, limit, bar)
    if cls == "high":
        return check(ctx, "accuracy", "quality", worse_cls, s.value, c.value,
                     f"{what}: confidently worse than the stable's {said_limit} ({d.units:,} {unit}){waiting_note}",
                     d.units, population=population)
    if cls == "nodata":
        needed = units_needed(growth.se, d.units, ctx.se_to_pass(bar, max(growth.value, 0.0)))
        return check(ctx, "accuracy", "quality", "nodata", s.value, c.value,
                     f"accuracy not yet decided: {what}, {d.units:,} {unit}, ~{needed:,} needed{waiting_note}",
                     d.units, needed, population)
    return check(ctx, "accuracy", "quality", "pass", s.value, c.value,
                 f"{what} ({d.units:,} {unit}; worse by at most {upper:.1%} <= bar {bar:.1%}){waiting_note}"
                 if numeric else f"{what} ({d.units:,} {unit}; down at most {pct(upper)} <= bar {pct(bar)})"
                 f"{waiting_note}", d.units, population=population)
