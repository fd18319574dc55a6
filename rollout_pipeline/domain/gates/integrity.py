"""Integrity gates: can the latest night's logs be judged at all? Their failures hold the day."""

from __future__ import annotations

import math

from pydantic import Field

from rollout_pipeline.domain.formatting import pct
from rollout_pipeline.domain.gates.context import GateContext, MetricCheck, answered
from rollout_pipeline.domain.gates.registry import Limits, gate
from rollout_pipeline.domain.ranges import MAX_COUNT
from rollout_pipeline.domain.stats import proportion_bounds
from rollout_pipeline.domain.summary import ABSURD_VALUE


class ShadowCoverageLimits(Limits):
    """``gates.shadow_coverage``: shadow, the share of served requests with a candidate twin."""

    min_share: float = Field(0.95, ge=0, le=1, description="shadow: share of served requests with a candidate twin")

    flat_names = {"min_shadow_coverage": "min_share"}


class OrphanRowsLimits(Limits):
    """``gates.orphan_rows``: shadow, candidate rows marked served."""

    max_rows: int = Field(0, ge=0, le=MAX_COUNT, description="shadow: candidate rows served=true (no request should "
                          "reach it)")

    flat_names = {"max_orphan_rows": "max_rows"}


class DuplicateRowsLimits(Limits):
    """``gates.duplicate_rows``: rows of the sample repeating (correlation id, variant, served)."""

    max_rows: int = Field(0, ge=0, le=MAX_COUNT, description="rows of the sample repeating (correlation id, variant, "
                          "served)")

    flat_names = {"max_duplicate_rows": "max_rows"}


SHADOW_COVERAGE_DOC = (
    "| `shadow_coverage` | shadow: share of the stable's served requests (sample) with a candidate answer — ok, error "
    "or timeout; shed calls (the mirror's pool was full) are missing evidence, not missing answers | upper bound < "
    "`gates.shadow_coverage.min_share` 95% fails | `test_gates.py::test_gate_verdicts[shadow_coverage-*]` |")
ORPHAN_ROWS_DOC = (
    "| `orphan_rows` | shadow: candidate rows `served=true` — whole day | > `gates.orphan_rows.max_rows` 0 | "
    "`test_integrity_gates_fail_and_name_the_count` |")
DUPLICATE_ROWS_DOC = (
    "| `duplicate_rows` | rows repeating (correlation id, variant, served) in the sample (exact there: the sample "
    "keeps "
    "every row of a sampled id) | > `gates.duplicate_rows.max_rows` 0 | same |")
NULL_OUTPUTS_DOC = (
    "| `null_outputs` | the **stable**'s `ok` answers with neither a prediction nor a label — whole day | > "
    "`gates.broken_answers.limit` 0.1% | "
    "`test_empty_answers_are_the_candidates_failure_and_the_stables_logging_problem` |")
FEEDBACK_VALUES_DOC = (
    "| `feedback_values` | sampled actual outcomes that are not finite numbers (\\|x\\| < 1e15) | any | "
    "`test_integrity_gates_fail_and_name_the_count` |")


@gate("shadow_coverage", group="integrity", integrity=True, limits=ShadowCoverageLimits, order=10,
      doc=SHADOW_COVERAGE_DOC)
def shadow_coverage(ctx: GateContext) -> MetricCheck | None:
    """Shadow: the share of the stable's served requests that have a candidate answer (ok, error or timeout)."""
    if ctx.stage != "shadow":
        return None
    night = ctx.night
    s, c = night.stable_variant, night.candidate_variant
    served = {r.correlation_id for r in night.sample if r.variant == s and r.served and r.correlation_id}
    twins = {r.correlation_id for r in night.sample if r.variant == c and not r.served and r.correlation_id
             and answered(r)}
    shed = {r.correlation_id for r in night.sample if r.variant == c and not r.served and r.correlation_id
            and not answered(r)}
    served -= shed  # shed by the mirror: missing evidence, not a missing answer of the candidate's
    n = len(served)
    name = "shadow_coverage"
    if n < ctx.policy.min_units:
        return MetricCheck(name, "integrity", "critical", "nodata", None, None,
                           f"shadow coverage not judged: {n} sampled served requests", n, ctx.policy.min_units)
    covered = len(served & twins)
    share = covered / n
    _, upper = proportion_bounds(covered, n, ctx.z)
    limit = ctx.policy.gates.shadow_coverage.min_share
    if upper < limit:
        return MetricCheck(name, "integrity", "critical", "low", None, share,
                           f"the candidate answered only {pct(share)} of the mirrored requests "
                           f"({covered} of {n} sampled; at most {pct(upper)}) < {pct(limit)} required", n)
    return MetricCheck(name, "integrity", "critical", "pass", None, share,
                       f"the candidate answered {pct(share)} of the mirrored requests ({covered} of {n} sampled)", n)


@gate("orphan_rows", group="integrity", integrity=True, limits=OrphanRowsLimits, order=20, doc=ORPHAN_ROWS_DOC)
def orphan_rows(ctx: GateContext) -> MetricCheck | None:
    """Shadow: candidate rows marked served (no request is routed to it yet)."""
    if ctx.stage != "shadow":
        return None
    night = ctx.night
    served = night.get(night.candidate_variant, True)
    n = served.requests if served else 0
    limit = ctx.policy.gates.orphan_rows.max_rows
    cls = "high" if n > limit else "pass"
    return MetricCheck("orphan_rows", "integrity", "critical", cls, None, float(n),
                       f"{n} candidate rows served=true during shadow"
                       + (f" > {limit} allowed" if cls == "high" else ""),
                       n)


@gate("duplicate_rows", group="integrity", integrity=True, limits=DuplicateRowsLimits, order=30,
      doc=DUPLICATE_ROWS_DOC)
def duplicate_rows(ctx: GateContext) -> MetricCheck | None:
    """Rows repeating (correlation id, variant, served): a retried or double-logged answer."""
    seen: set[tuple] = set()
    dup = 0
    sample = ctx.night.sample
    for r in sample:
        if r.correlation_id:
            key = (r.correlation_id, r.variant, r.served)
            dup += key in seen
            seen.add(key)
    limit = ctx.policy.gates.duplicate_rows.max_rows
    cls = "high" if dup > limit else "pass"
    return MetricCheck("duplicate_rows", "integrity", "critical", cls, None, float(dup),
                       f"{dup} duplicate rows (same correlation id, variant and served) in the "
                       f"{len(sample)}-row sample" + (f" > {limit} allowed" if cls == "high" else ""),
                       len(sample))


@gate("null_outputs", group="integrity", integrity=True, order=40, doc=NULL_OUTPUTS_DOC)
def null_outputs(ctx: GateContext) -> MetricCheck | None:
    """The stable's answers with status ok but no output (whole night): the comparison has nothing to stand on.

    The candidate's own empty answers are not a logging problem but the candidate's: ``broken_answers``.
    """
    night = ctx.night
    side = night.get(night.stable_variant, ctx.stage != "production")
    if side is None or not side.ok:
        return None
    share = side.null_outputs / side.ok
    limit = ctx.policy.gates.broken_answers.limit  # one limit: empty ok answers
    cls = "high" if share > limit else "pass"
    return MetricCheck("null_outputs", "integrity", "critical", cls, None, share,
                       f"{side.null_outputs} of {side.ok} ok stable answers ({pct(share)}) carry no output"
                       + (f" > {pct(limit)} allowed" if cls == "high" else ""), side.ok)


@gate("feedback_values", group="integrity", integrity=True, order=50, doc=FEEDBACK_VALUES_DOC)
def feedback_values(ctx: GateContext) -> MetricCheck | None:
    """Actual outcomes that are not finite numbers cannot be scored: the night's feedback is broken."""
    night = ctx.night
    rows = [r for r in (*night.sample, *night.accuracy_sample) if r.actual is not None]
    if not rows:
        return None
    bad = sum(1 for r in rows if not math.isfinite(r.actual) or abs(r.actual) >= ABSURD_VALUE)
    cls = "high" if bad else "pass"
    return MetricCheck("feedback_values", "integrity", "critical", cls, None, float(bad),
                       f"{bad} of {len(rows)} sampled actual outcomes are not finite numbers" if bad
                       else f"{len(rows)} sampled actual outcomes, all finite", len(rows))
