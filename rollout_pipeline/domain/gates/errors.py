"""Gates on the candidate's failures to answer: errors and timeouts, and answers that say nothing usable."""

from __future__ import annotations

from pydantic import Field

from rollout_pipeline.domain.formatting import pct
from rollout_pipeline.domain.gates.comparisons import rate_gate, share_needed, share_verdict
from rollout_pipeline.domain.gates.context import GateContext, MetricCheck, answer_sides, answered, check
from rollout_pipeline.domain.gates.registry import Limits, gate
from rollout_pipeline.domain.summary import ABSURD_VALUE, SampleRow


class ErrorRateLimits(Limits):
    """``gates.error_rate``: (errors + timeouts) per answer, against the stable's and a cap."""

    limit: float = Field(0.02, ge=0, le=1, description="candidate (errors + timeouts) rate cap")
    margin: float = Field(0.01, ge=0, le=1, description="candidate error rate may exceed the stable's by this")
    detectable: float = Field(0.03, gt=0, le=1, description="excess error rate the minimum sample must catch")

    flat_names = {"error_rate_limit": "limit", "error_rate_margin": "margin", "error_rate_detectable": "detectable"}
    beyond = (("detectable", "margin"),)


class BrokenAnswersLimits(Limits):
    """``gates.broken_answers``: ok answers without a usable output (the stable's: ``null_outputs`` integrity)."""

    limit: float = Field(0.001, ge=0, le=1, description="ok answers without a usable output: the stable's hold the "
                         "day (integrity), the candidate's are broken_answers")
    detectable: float = Field(0.01, gt=0, le=1, description="share of broken candidate answers the rollout must stop "
                              "(empty, non-finite or absurd)")

    flat_names = {"max_null_output_share": "limit", "broken_answers_detectable": "detectable"}
    beyond = (("detectable", "limit"),)


ERROR_RATE_DOC = (
    "| `error_rate` (critical) | (errors + timeouts) / answers, candidate − stable: pair by pair where mirrored, else "
    "served vs served | excess > `gates.error_rate.margin` 1 point, or the candidate's rate > "
    "`gates.error_rate.limit` 2% | excess < `gates.error_rate.detectable` 3 points | "
    "`test_gate_verdicts[error_rate-*]` |")
BROKEN_ANSWERS_DOC = (
    "| `broken_answers` (critical) | the candidate's `ok` answers that are empty, non-finite or absurd (whole days) | "
    "any non-finite or absurd one; empty ones > `gates.broken_answers.limit` 0.1% | < "
    "`gates.broken_answers.detectable` 1% | `test_gate_verdicts[broken_answers-*]`, `test_bad_input.py` |")


def _is_error(row: SampleRow) -> float | None:
    """1 for an error or a timeout, 0 for an answer; None for a shadow call the mirror shed."""
    if not answered(row):
        return None
    return 0.0 if row.status == "ok" else 1.0


@gate("error_rate", group="errors", criticality="critical", limits=ErrorRateLimits, order=20, doc=ERROR_RATE_DOC)
def error_rate(ctx: GateContext) -> MetricCheck | None:
    """Errors and timeouts: candidate rate against the stable's plus a margin, and against a cap."""
    lim = ctx.policy.gates.error_rate
    return rate_gate(ctx, "error_rate", "errors", "error rate", _is_error, lambda s: lim.margin, lim.detectable,
                     lim.limit)


@gate("broken_answers", group="predictions", criticality="critical", limits=BrokenAnswersLimits, order=30,
      doc=BROKEN_ANSWERS_DOC)
def broken_answers(ctx: GateContext) -> MetricCheck | None:
    """The candidate's ok answers that say nothing usable (empty, non-finite, absurd), from the whole days' counts.

    These are the candidate's own answers, so they are judged, not held as a logging
    problem: a single non-finite or absurd prediction fails it (that is certain, not a
    matter of chance), and empty answers confidently above ``gates.broken_answers.limit`` do
    (critical: a rollback), whatever stage it is at.
    """
    p, lim = ctx.policy, ctx.policy.gates.broken_answers
    s = ctx.summary
    cand_sides, _ = answer_sides(s, ctx.stage)
    days = [d for k in cand_sides if (d := s.get(*k)) is not None]
    ok = sum(d.ok for d in days)
    broken = min(ok, sum(d.broken for d in days))
    population = "ok answers, whole days"
    if ok < p.min_units:
        return check(ctx, "broken_answers", "predictions", "nodata", None, None,
                     f"broken answers not judged: {ok} ok candidate answers < {p.min_units}", ok, p.min_units,
                     population)
    share = broken / ok
    bar = ctx.bar(lim.detectable, cap=0.5)
    said = f"{broken:,} of {ok:,} ok candidate answers ({pct(share)}) empty, non-finite or absurd"
    absurd = sum(d.nonfinite_predictions for d in days)
    if absurd:  # not a matter of chance: a model that answered NaN, an infinity or 1e15 once is broken
        return check(ctx, "broken_answers", "predictions", "high", None, share,
                     f"{said}: {absurd:,} of them non-finite or absurd (NaN, an infinity or |x| >= "
                     f"{ABSURD_VALUE:.0e}), which a model must never answer", ok, population=population)
    verdict = share_verdict(ctx, broken, broken, ok, lim.limit, bar)
    if verdict == "high":
        return check(ctx, "broken_answers", "predictions", "high", None, share,
                     f"{said}: confidently more than {pct(lim.limit)}", ok, population=population)
    if verdict == "nodata":
        needed = share_needed(share, bar, ctx, ok)
        return check(ctx, "broken_answers", "predictions", "nodata", None, share,
                     f"broken answers not yet decided: {said}; showing under the bar {pct(bar)} needs ~{needed:,}",
                     ok, needed, population)
    return check(ctx, "broken_answers", "predictions", "pass", None, share,
                 f"{said}, confidently under the bar {pct(bar)}", ok, population=population)
