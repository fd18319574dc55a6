"""The gates: one small pure function per metric, each with its inputs, limits and minimum sample.

Every gate answers one question about the candidate against the stable model and
says why in one line ("candidate p99 >= 412 ms (lower bound) > SLO 250 ms"). Its
verdict is one of:

- ``pass``: enough data, and not confidently worse than the policy allows;
- ``high`` / ``low``: confidently worse (the one-sided bound at ``gate_confidence``
  is past the limit);
- ``nodata``: too little data to tell -- fewer units than the smallest sample that
  would catch the regression the gate is sized for (``*_detectable``) with
  probability ``power``; the reason names the counts;
- ``n/a``: the question does not apply (no labels, no complaints in shadow, a
  constant baseline has no spread).

Units are what was randomized: in canary the candidate and the stable model serve
different *entities*, so rates and means are compared over entities (cluster-robust
standard errors, ``domain.stats``); in shadow, and wherever the other model answers
the same request in shadow (canary with ``shadow_stable_during_canary``, the watch
after promotion), outputs are compared pair by pair on the same requests, clustered
by entity. Integrity gates (``INTEGRITY``) check that the day's logs can be judged
at all; their failures hold the day.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from rollout_pipeline.domain.formatting import num, pct
from rollout_pipeline.domain.judge import classify_metric
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.domain.stats import (
    Estimate,
    QuantileBounds,
    lower_order_statistic,
    clustered_mean,
    difference,
    min_n_for_quantile,
    min_trials_to_exceed,
    proportion_bounds,
    quantile_bounds,
    smoothed_rate_se,
    units_needed,
    z_of,
)
from rollout_pipeline.domain.summary import ABSURD_VALUE, DaySummary, SampleRow, VariantDay, finite

LATENCY_QUANTILE = 0.99
# Without policy bounds, plausible outputs are the stable's sampled range between these quantiles (robust to a
# stray outlier of its own), widened by its width on each side (docs/policy.md, "extremes").
STABLE_RANGE = (0.001, 0.999)


@dataclass(frozen=True)
class MetricCheck:
    """One gate's verdict: classification, group, criticality, the two values, why, and what backs it."""

    name: str
    group: str
    criticality: str
    classification: str  # pass | high | low | nodata | n/a
    stable: float | None
    candidate: float | None
    reason: str
    units: int = 0  # independent units behind the verdict
    needed: int = 0  # units the gate needs (its minimum sample), when it knows
    population: str = ""  # what the two numbers count, e.g. "paired requests" or "candidate-served entities"

    @property
    def failed(self) -> bool:
        return self.classification in ("high", "low")

    @property
    def insufficient(self) -> bool:
        return self.classification == "nodata"


# --- what the gates read --------------------------------------------------------------------------------

def compared_sides(summary: DaySummary, stage: str) -> tuple[VariantDay | None, VariantDay | None, str]:
    """The stable and candidate sides a stage compares (served or shadow answers), and how to say it."""
    if stage == "production":
        # After promotion the new model serves and the old one shadows it during the retention window.
        return (summary.get(summary.stable_variant, False), summary.get(summary.candidate_variant, True),
                "old stable shadow vs new stable (candidate) served")
    stable = summary.get(summary.stable_variant, True)
    if stage == "shadow":
        return stable, summary.get(summary.candidate_variant, False), "stable served vs candidate shadow"
    return stable, summary.get(summary.candidate_variant, True), "stable served vs candidate served"


def ok_values(rows, field_name: str) -> list[float]:
    """The finite values of ``field_name`` in the rows answered ``ok`` (latencies >= 0)."""
    return [v for r in rows if r.status == "ok" and finite(v := getattr(r, field_name))
            and (field_name != "latency_ms" or v >= 0)]


def sample_values(summary: DaySummary, variant: str, served: bool, field_name: str) -> list[float]:
    """The finite values of ``field_name`` in the day's sample for one side (answered ``ok``; latencies >= 0)."""
    return ok_values((r for r in summary.sample if r.variant == variant and r.served == served), field_name)


@dataclass(frozen=True)
class Pair:
    """The stable and the candidate answer to one request (one served, the other in shadow)."""

    stable: SampleRow
    candidate: SampleRow

    @property
    def entity(self) -> str | None:
        served = self.stable if self.stable.served else self.candidate
        return served.entity_id


def pairs_of(rows: tuple[SampleRow, ...], stable: str, candidate: str) -> list[Pair]:
    """Requests the two variants both answered, one served and one in shadow (first answer of each)."""
    by_id: dict[str, dict[str, SampleRow]] = {}
    for row in rows:
        if row.correlation_id and row.variant in (stable, candidate):
            by_id.setdefault(row.correlation_id, {}).setdefault(row.variant, row)
    return [Pair(d[stable], d[candidate]) for d in by_id.values()
            if stable in d and candidate in d and d[stable].served != d[candidate].served]


@dataclass(frozen=True)
class GateContext:
    """Everything a gate reads: the day, the stage, the policy, and the rows of each side."""

    summary: DaySummary
    stage: str
    policy: Policy
    stable: VariantDay | None
    candidate: VariantDay | None
    stable_served: bool
    candidate_served: bool
    pairs: tuple[Pair, ...]
    stable_rows: tuple[SampleRow, ...]  # sampled rows of the compared stable side
    candidate_rows: tuple[SampleRow, ...]
    outcome_pairs: tuple[Pair, ...]  # pairs of the accuracy day (late labels)
    outcome_stable_rows: tuple[SampleRow, ...]
    outcome_candidate_rows: tuple[SampleRow, ...]
    z: float = field(init=False)
    z_power: float = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "z", z_of(self.policy.gate_confidence))
        object.__setattr__(self, "z_power", z_of(self.policy.power))

    @property
    def populations_differ(self) -> bool:
        """Canary: the two sides served different entities."""
        return self.stage == "canary"

    def criticality(self, name: str) -> str:
        return self.policy.metrics.get(name, "normal")

    def target_se(self, detectable: float, limit: float) -> float:
        """The standard error at which a true value ``detectable`` (vs a limit ``limit``) is caught with ``power``."""
        return (detectable - limit) / (self.z + self.z_power)


def context_for(summary: DaySummary, stage: str, policy: Policy) -> GateContext:
    stable, cand, _ = compared_sides(summary, stage)
    s_served, c_served = stage != "production", stage != "shadow"

    def side(rows, variant, served):
        return tuple(r for r in rows if r.variant == variant and r.served == served)

    pairs = tuple(pairs_of(summary.sample, summary.stable_variant, summary.candidate_variant))
    outcome = summary.outcome_sample()
    return GateContext(
        summary, stage, policy, stable, cand, s_served, c_served, pairs,
        side(summary.sample, summary.stable_variant, s_served),
        side(summary.sample, summary.candidate_variant, c_served),
        pairs if outcome is summary.sample else tuple(pairs_of(outcome, summary.stable_variant,
                                                                summary.candidate_variant)),
        side(outcome, summary.stable_variant, s_served),
        side(outcome, summary.candidate_variant, c_served),
    )


# --- shared shapes ----------------------------------------------------------------------------------------

def _check(ctx: GateContext, name: str, group: str, classification: str, stable, candidate, reason: str,
           units: int = 0, needed: int = 0) -> MetricCheck:
    return MetricCheck(name, group, ctx.criticality(name), classification, stable, candidate, reason, units, needed)


def _ok(row: SampleRow) -> bool:
    return row.status == "ok"


@dataclass(frozen=True)
class Comparison:
    """candidate - stable for one quantity, with both sides' estimates, as a gate tests it."""

    diff: Estimate
    candidate: Estimate
    stable: Estimate
    paired: bool


def compare(ctx: GateContext, value: Callable[[SampleRow], float | None], *, outcome: bool = False,
            paired: bool | None = None) -> Comparison | None:
    """Compare a per-request quantity: on pairs (same requests) or on the two populations (canary).

    ``paired`` None: pairs when the sides answered the same requests (shadow, production)
    or when canary pairs exist through the stable model's shadow; else populations.
    """
    pairs = ctx.outcome_pairs if outcome else ctx.pairs
    use_pairs = paired if paired is not None else (not ctx.populations_differ or len(pairs) >= ctx.policy.min_units)
    if use_pairs:
        obs = [(p.entity, value(p.candidate), value(p.stable)) for p in pairs]
        obs = [(e, c, s) for e, c, s in obs if c is not None and s is not None]
        d = clustered_mean((e, c - s) for e, c, s in obs)
        c = clustered_mean((e, c) for e, c, _ in obs)
        s = clustered_mean((e, s) for e, _, s in obs)
        if d is None:
            return None
        return Comparison(d, c, s, True)
    c_rows = ctx.outcome_candidate_rows if outcome else ctx.candidate_rows
    s_rows = ctx.outcome_stable_rows if outcome else ctx.stable_rows
    c = clustered_mean((r.entity_id, v) for r in c_rows if (v := value(r)) is not None)
    s = clustered_mean((r.entity_id, v) for r in s_rows if (v := value(r)) is not None)
    if c is None or s is None:
        return None
    return Comparison(difference(c, s), c, s, False)


def _unit_word(comparison: Comparison | None) -> str:
    """The independent units behind a comparison: entities (requests of one entity are one cluster)."""
    return "entities, paired" if comparison is not None and comparison.paired else "entities"


def _with_shared_design_effect(comp: Comparison) -> Comparison:
    """Two populations of one randomization: the candidate's rate SE from its own counts and the stable's clustering.

    Entities were assigned at random, so how much one entity's requests cluster (the
    design effect: cluster-robust variance / binomial variance) is the same on both
    sides; measured on the stable's many entities it is steadier than on the
    candidate's few (a 5% canary may hold 150 entities, a handful of them heavy).
    """
    c, s = comp.candidate, comp.stable

    def binomial_var(est: Estimate) -> float:
        p = (est.value * est.observations + 1) / (est.observations + 2)
        return p * (1 - p) / est.observations

    deff = max(1.0, s.se ** 2 / binomial_var(s)) if s.observations and math.isfinite(s.se) else 1.0
    c_se = math.sqrt(binomial_var(c) * deff)
    c = Estimate(c.value, c_se, c.units, c.observations)
    return Comparison(difference(c, s), c, s, False)


def _rate_gate(ctx: GateContext, name: str, group: str, what: str, value: Callable[[SampleRow], float | None],
               margin_of: Callable[[float], float], detectable: float, cap: float | None) -> MetricCheck:
    """A rate (errors, complaints): fail when confidently above the stable's plus a margin (or a cap).

    Pairs on the same requests where both sides answered them; in canary the served answers of the two
    populations (a shadow call's errors and timeouts say nothing about the stable model serving).
    """
    comp = compare(ctx, value, paired=not ctx.populations_differ)
    if comp is None or comp.candidate.units < ctx.policy.min_units or comp.stable.units < ctx.policy.min_units:
        units = 0 if comp is None else min(comp.candidate.units, comp.stable.units)
        return _check(ctx, name, group, "nodata", None, None,
                      f"{what} not judged: {units} {_unit_word(comp)} < {ctx.policy.min_units} needed",
                      units, ctx.policy.min_units)
    if not comp.paired:
        comp = _with_shared_design_effect(comp)
    c, s, d = comp.candidate, comp.stable, comp.diff
    margin = margin_of(s.value)
    trials = c.observations
    # The cluster-robust SE carries the clustering; the smoothed floor only keeps "no event yet" from
    # meaning "no doubt" (with 0 errors in 300 requests an error rate of 2% is still possible).
    se = max(d.se, smoothed_rate_se(round(c.value * trials), trials, trials))
    target = ctx.target_se(detectable, 0.0)  # an excess of `detectable` beyond the margin is caught with `power`
    z = ctx.z
    if d.lower(z) > margin:
        return _check(ctx, name, group, "high", s.value, c.value,
                      f"candidate {what} {pct(c.value)} > stable {pct(s.value)} + {pct(margin)} "
                      f"(lower bound of the excess {pct(d.lower(z))}, {d.units} {_unit_word(comp)})", d.units)
    if cap is not None and c.lower(z) > cap:
        return _check(ctx, name, group, "high", s.value, c.value,
                      f"candidate {what} {pct(c.value)} > limit {pct(cap)} (lower bound {pct(c.lower(z))})", c.units)
    if se > target:
        needed = units_needed(se, d.units, target)
        return _check(ctx, name, group, "nodata", s.value, c.value,
                      f"{what} not judged: {d.units} {_unit_word(comp)}, ~{needed} needed to catch "
                      f"+{pct(detectable)} (candidate {pct(c.value)}, stable {pct(s.value)})", d.units, needed)
    return _check(ctx, name, group, "pass", s.value, c.value,
                  f"candidate {what} {pct(c.value)} (stable {pct(s.value)}; excess at most {pct(d.upper(z))}, "
                  f"{d.units} {_unit_word(comp)})", d.units)


# --- integrity gates: can the day be judged at all? -----------------------------------------------------

def shadow_coverage(ctx: GateContext) -> MetricCheck | None:
    """Shadow: the share of the stable's served requests that have a candidate answer (ok, error or timeout)."""
    if ctx.stage != "shadow":
        return None
    s, c = ctx.summary.stable_variant, ctx.summary.candidate_variant
    served = {r.correlation_id for r in ctx.summary.sample if r.variant == s and r.served and r.correlation_id}
    twins = {r.correlation_id for r in ctx.summary.sample if r.variant == c and not r.served and r.correlation_id}
    n = len(served)
    name = "shadow_coverage"
    if n < ctx.policy.min_units:
        return MetricCheck(name, "integrity", "critical", "nodata", None, None,
                           f"shadow coverage not judged: {n} sampled served requests", n, ctx.policy.min_units)
    covered = len(served & twins)
    share = covered / n
    _, upper = proportion_bounds(covered, n, ctx.z)
    limit = ctx.policy.min_shadow_coverage
    if upper < limit:
        return MetricCheck(name, "integrity", "critical", "low", None, share,
                           f"the candidate answered only {pct(share)} of the mirrored requests "
                           f"({covered} of {n} sampled; at most {pct(upper)}) < {pct(limit)} required", n)
    return MetricCheck(name, "integrity", "critical", "pass", None, share,
                       f"the candidate answered {pct(share)} of the mirrored requests ({covered} of {n} sampled)", n)


def orphan_rows(ctx: GateContext) -> MetricCheck | None:
    """Shadow: candidate rows marked served (no request is routed to it yet)."""
    if ctx.stage != "shadow":
        return None
    served = ctx.summary.get(ctx.summary.candidate_variant, True)
    n = served.requests if served else 0
    limit = ctx.policy.max_orphan_rows
    cls = "high" if n > limit else "pass"
    return MetricCheck("orphan_rows", "integrity", "critical", cls, None, float(n),
                       f"{n} candidate rows served=true during shadow" + (f" > {limit} allowed" if cls == "high" else ""),
                       n)


def duplicate_rows(ctx: GateContext) -> MetricCheck | None:
    """Rows repeating (correlation id, variant, served): a retried or double-logged answer."""
    seen: set[tuple] = set()
    dup = 0
    for r in ctx.summary.sample:
        if r.correlation_id:
            key = (r.correlation_id, r.variant, r.served)
            dup += key in seen
            seen.add(key)
    limit = ctx.policy.max_duplicate_rows
    cls = "high" if dup > limit else "pass"
    return MetricCheck("duplicate_rows", "integrity", "critical", cls, None, float(dup),
                       f"{dup} duplicate rows (same correlation id, variant and served) in the "
                       f"{len(ctx.summary.sample)}-row sample" + (f" > {limit} allowed" if cls == "high" else ""),
                       len(ctx.summary.sample))


def null_outputs(ctx: GateContext) -> MetricCheck | None:
    """Answers with status ok but neither a prediction nor a label, on either compared side (whole day)."""
    worst = None
    for label, side in (("candidate", ctx.candidate), ("stable", ctx.stable)):
        if side is None or not side.ok:
            continue
        share = side.null_outputs / side.ok
        if worst is None or share > worst[1]:
            worst = (label, share, side)
    if worst is None:
        return None
    label, share, side = worst
    limit = ctx.policy.max_null_output_share
    cls = "high" if share > limit else "pass"
    return MetricCheck("null_outputs", "integrity", "critical", cls, None, share,
                       f"{side.null_outputs} of {side.ok} ok {label} answers ({pct(share)}) carry no output"
                       + (f" > {pct(limit)} allowed" if cls == "high" else ""), side.ok)


def feedback_values(ctx: GateContext) -> MetricCheck | None:
    """Actual outcomes that are not finite numbers cannot be scored: the day's feedback is broken."""
    rows = [r for r in (*ctx.summary.sample, *ctx.summary.accuracy_sample) if r.actual is not None]
    if not rows:
        return None
    bad = sum(1 for r in rows if not math.isfinite(r.actual) or abs(r.actual) >= ABSURD_VALUE)
    cls = "high" if bad else "pass"
    return MetricCheck("feedback_values", "integrity", "critical", cls, None, float(bad),
                       f"{bad} of {len(rows)} sampled actual outcomes are not finite numbers" if bad
                       else f"{len(rows)} sampled actual outcomes, all finite", len(rows))


# --- metric gates ------------------------------------------------------------------------------------

def latency(ctx: GateContext) -> MetricCheck | None:
    """p99 latency: a distribution-free bound on the candidate's p99 against the SLO and the stable's p99."""
    p = ctx.policy
    s_vals, c_vals = ok_values(ctx.stable_rows, "latency_ms"), ok_values(ctx.candidate_rows, "latency_ms")
    if p.latency_slo_p99_ms is None and p.latency_regression_allowed is None:
        return _check(ctx, "latency", "latency", "n/a", None, None, "latency: no SLO and no regression limit set")
    # Enough requests to bound the p99 from above at latency_bound_confidence; the verdict uses the gate's
    # own, stricter lower bound (which exists for any sample), and its upper bound when the sample has one.
    z_bound = z_of(p.latency_bound_confidence)
    needed = max(min_n_for_quantile(LATENCY_QUANTILE, z_bound), p.min_units)
    if len(c_vals) < needed:
        return _check(ctx, "latency", "latency", "nodata", None, None,
                      f"p99 latency not judged: {len(c_vals)} candidate requests < {needed} needed to bound a p99",
                      len(c_vals), needed)
    cb = quantile_bounds(c_vals, LATENCY_QUANTILE, ctx.z) or quantile_bounds(c_vals, LATENCY_QUANTILE, z_bound)
    cb = QuantileBounds(cb.q, cb.value, lower_order_statistic(c_vals, LATENCY_QUANTILE, ctx.z), cb.upper, cb.n)
    sb = quantile_bounds(s_vals, LATENCY_QUANTILE, ctx.z)
    s_p99 = sb.value if sb else None
    if p.latency_slo_p99_ms is not None and cb.lower > p.latency_slo_p99_ms:
        return _check(ctx, "latency", "latency", "high", s_p99, cb.value,
                      f"candidate p99 {cb.value:.0f} ms (at least {cb.lower:.0f} ms) > SLO {p.latency_slo_p99_ms:.0f} ms",
                      cb.n)
    if p.latency_regression_allowed is not None and sb is not None:
        limit = sb.upper * (1 + p.latency_regression_allowed)
        if cb.lower > limit:
            return _check(ctx, "latency", "latency", "high", s_p99, cb.value,
                          f"candidate p99 {cb.value:.0f} ms (at least {cb.lower:.0f} ms) > stable p99 {sb.value:.0f} ms "
                          f"(at most {sb.upper:.0f}) + {p.latency_regression_allowed:.0%} = {limit:.0f} ms", cb.n)
    slo = f"SLO {p.latency_slo_p99_ms:.0f} ms" if p.latency_slo_p99_ms is not None else "no SLO"
    return _check(ctx, "latency", "latency", "pass", s_p99, cb.value,
                  f"candidate p99 {cb.value:.0f} ms (bounds {cb.lower:.0f}-{cb.upper:.0f}) within {slo} "
                  f"(stable {num(s_p99, ' ms')}; {cb.n} requests)", cb.n)


def latency_distribution(ctx: GateContext) -> MetricCheck | None:
    """Kayenta's Mann-Whitney on latency: per request on the same requests, per entity mean in canary."""
    p = ctx.policy
    if ctx.populations_differ:
        def means(rows):
            acc: dict[object, list[float]] = {}
            for k, r in enumerate(rows):
                if _ok(r) and finite(r.latency_ms) and r.latency_ms >= 0:
                    acc.setdefault(r.entity_id or ("_", k), []).append(r.latency_ms)
            return [sum(v) / len(v) for v in acc.values()]
        s_vals, c_vals, unit = means(ctx.stable_rows), means(ctx.candidate_rows), "entities"
    else:
        s_vals, c_vals = ok_values(ctx.stable_rows, "latency_ms"), ok_values(ctx.candidate_rows, "latency_ms")
        unit = "requests"
    n = min(len(s_vals), len(c_vals))
    if n < p.min_units:
        return _check(ctx, "latency_distribution", "latency", "nodata", None, None,
                      f"latency distribution not judged: {n} {unit} < {p.min_units}", n, p.min_units)
    if p.latency_regression_allowed is None:
        return _check(ctx, "latency_distribution", "latency", "n/a", None, None,
                      "latency distribution not compared (no regression limit: a baseline)")
    result = classify_metric(s_vals, c_vals, direction="increase", fraction=p.judge.tolerance_fraction,
                             confidence=p.judge.confidence,
                             effect_size_thresholds=(1.0, 1.0 + p.latency_regression_allowed))
    s_med, c_med = sorted(s_vals)[len(s_vals) // 2], sorted(c_vals)[len(c_vals) // 2]
    why = f"candidate median latency {c_med:.1f} ms vs stable {s_med:.1f} ms ({n} {unit})"
    cls = result.classification if result.classification in ("pass", "high", "low") else "nodata"
    return _check(ctx, "latency_distribution", "latency", cls, s_med, c_med,
                  why + (" (Mann-Whitney: higher)" if cls == "high" else ""), n)


def _is_error(row: SampleRow) -> float:
    return 0.0 if row.status == "ok" else 1.0


def error_rate(ctx: GateContext) -> MetricCheck | None:
    """Errors and timeouts: candidate rate against the stable's plus a margin, and against a cap."""
    p = ctx.policy
    return _rate_gate(ctx, "error_rate", "errors", "error rate", _is_error, lambda s: p.error_rate_margin,
                      p.error_rate_detectable, p.error_rate_limit)


def complaints(ctx: GateContext) -> MetricCheck | None:
    """Complaints per served request, candidate against stable (only served answers reach users)."""
    if ctx.stage != "canary":
        return None
    p = ctx.policy

    def value(row: SampleRow) -> float:
        return float(row.complaints > 0)

    return _rate_gate(ctx, "complaints", "feedback", "complaint rate", value,
                      lambda s: max(p.complaint_margin, p.complaint_regression_allowed * s), p.complaint_detectable,
                      None)


def _bounds(ctx: GateContext) -> tuple[float, float] | None:
    """Plausible outputs: the policy's bounds, else the stable's sampled 0.1%-99.9% range widened by its width."""
    if ctx.policy.prediction_bounds is not None:
        return ctx.policy.prediction_bounds
    vals = sorted(v for r in ctx.stable_rows if _ok(r) and finite(v := r.prediction))
    if len(vals) < ctx.policy.min_units:
        return None
    lo, hi = vals[int(STABLE_RANGE[0] * (len(vals) - 1))], vals[math.ceil(STABLE_RANGE[1] * (len(vals) - 1))]
    width = hi - lo
    if width <= 0:
        return None  # a constant baseline: no spread to derive bounds from
    return lo - width, hi + width


def _known_labels(ctx: GateContext) -> set[str] | None:
    """The labels the stable model gives (sample and the day's most frequent), or None for item lists."""
    known = {r.label for r in ctx.stable_rows if r.label is not None}
    if ctx.stable is not None:
        known |= {label for label, _ in ctx.stable.label_counts}
    if not known or any(label.startswith("[") for label in known):
        return None
    return known


def extremes(ctx: GateContext) -> MetricCheck | None:
    """Candidate outputs outside plausible bounds (numbers), or labels the stable model never gives (classes):
    fail when their share is confidently above the limit."""
    p = ctx.policy
    c_vals = [r.prediction for r in ctx.candidate_rows if _ok(r) and r.prediction is not None]
    c_labels = [r.label for r in ctx.candidate_rows if _ok(r) and r.prediction is None and r.label is not None]
    if not c_vals and not c_labels:
        return None if ctx.candidate_rows else _check(ctx, "extremes", "predictions", "nodata", None, None,
                                                      "extremes not judged: no candidate answers", 0, p.min_units)
    if c_vals:
        bounds = _bounds(ctx)
        if bounds is None:
            return _check(ctx, "extremes", "predictions", "n/a", None, None,
                          "extremes not judged: no bounds (the stable model is a constant; set prediction_bounds)")
        outside = sum(1 for v in c_vals if not (math.isfinite(v) and bounds[0] <= v <= bounds[1]))
        n = len(c_vals)
        where = f"outside [{bounds[0]:.4g}, {bounds[1]:.4g}]"
    else:
        known = _known_labels(ctx)
        if known is None:
            return _check(ctx, "extremes", "predictions", "n/a", None, None,
                          "extremes not judged: item lists have no fixed set of labels")
        outside = sum(1 for label in c_labels if label not in known)
        n = len(c_labels)
        shown = ", ".join(sorted(known)[:5]) + (", ..." if len(known) > 5 else "")
        where = f"outside the stable's labels {{{shown}}}"
    share = outside / n
    lower, upper = proportion_bounds(outside, n, ctx.z)
    if lower > p.extreme_share_limit:
        return _check(ctx, "extremes", "predictions", "high", None, share,
                      f"candidate answers {where}: {pct(share)} of {n} sampled (at least {pct(lower)}) "
                      f"> limit {pct(p.extreme_share_limit)}", n)
    needed = max(p.min_units, min_trials_to_exceed(p.extreme_share_limit, p.extreme_share_detectable, ctx.z,
                                                   ctx.z_power))
    if n < needed:
        return _check(ctx, "extremes", "predictions", "nodata", None, share,
                      f"extremes not judged: {n} candidate answers < {needed} needed to catch "
                      f"{pct(p.extreme_share_detectable)} {where}", n, needed)
    return _check(ctx, "extremes", "predictions", "pass", None, share,
                  f"candidate answers {where}: {pct(share)} of {n} sampled", n)


def _prediction(row: SampleRow) -> float | None:
    return row.prediction if _ok(row) and finite(row.prediction) and abs(row.prediction) < ABSURD_VALUE else None


def prediction_shift(ctx: GateContext) -> MetricCheck | None:
    """The candidate's mean output against the stable's, in stable standard deviations."""
    p = ctx.policy
    sd = ctx.stable.prediction_std if ctx.stable is not None else None
    comp = compare(ctx, _prediction)
    if comp is None:
        return None
    if not sd or sd <= 1e-9 * max(1.0, abs(comp.stable.value)):
        return _check(ctx, "prediction_shift", "predictions", "n/a", comp.stable.value, comp.candidate.value,
                      "prediction shift not judged: the stable predictions have no spread (a constant baseline)")
    d = comp.diff
    shift = d.value / sd
    unit = _unit_word(comp)
    detail = f"mean {comp.stable.value:.4g} -> {comp.candidate.value:.4g} ({shift:+.2f} sd; {d.units} {unit})"
    if d.units < p.min_units:
        return _check(ctx, "prediction_shift", "predictions", "nodata", comp.stable.value, comp.candidate.value,
                      f"prediction shift not judged: {d.units} {unit} < {p.min_units}", d.units, p.min_units)
    limit = p.prediction_shift_limit * sd
    if d.lower(ctx.z) > limit or d.upper(ctx.z) < -limit:
        cls = "high" if shift > 0 else "low"
        return _check(ctx, "prediction_shift", "predictions", cls, comp.stable.value, comp.candidate.value,
                      f"predictions shifted {'up' if cls == 'high' else 'down'}: {detail} beyond "
                      f"{p.prediction_shift_limit} sd", d.units)
    target = ctx.target_se(p.prediction_shift_detectable * sd, limit)
    if d.se > target:
        needed = units_needed(d.se, d.units, target)
        return _check(ctx, "prediction_shift", "predictions", "nodata", comp.stable.value, comp.candidate.value,
                      f"prediction shift not judged: {detail}, ~{needed} {unit} needed", d.units, needed)
    return _check(ctx, "prediction_shift", "predictions", "pass", comp.stable.value, comp.candidate.value,
                  f"predictions {detail}, within {p.prediction_shift_limit} sd", d.units)


def _label_distance(a: str, b: str) -> float:
    """0 when two labels agree, 1 when they differ; for item lists (JSON arrays) 1 - Jaccard overlap."""
    x, y = _items(a), _items(b)
    if x is None or y is None:
        return float(a != b)
    union = x | y
    return 1 - len(x & y) / len(union) if union else 0.0


def _items(text: str) -> set[str] | None:
    if not text.startswith("["):
        return None
    try:
        return set(map(str, json.loads(text)))
    except ValueError:
        return None


def _label_score(predicted: str, actual: str) -> float:
    """1 for a right class; for item lists the share of the actual items that were recommended (recall)."""
    items = _items(predicted)
    if items is None:
        return float(predicted == actual)
    truth = _items(actual) or {actual}
    return len(items & truth) / len(truth) if truth else 1.0


def disagreement(ctx: GateContext) -> MetricCheck | None:
    """Labels: how often the two models' answers to the same request differ (1 - overlap for item lists)."""
    p = ctx.policy
    obs = [(pr.entity, _label_distance(pr.stable.label, pr.candidate.label)) for pr in ctx.pairs
           if _ok(pr.stable) and _ok(pr.candidate) and pr.stable.label is not None and pr.candidate.label is not None]
    if not obs:
        return None
    est = clustered_mean(obs)
    if est.units < p.min_units:
        return _check(ctx, "disagreement", "predictions", "nodata", None, est.value,
                      f"disagreement not judged: {est.units} paired entities < {p.min_units}", est.units, p.min_units)
    if est.lower(ctx.z) > p.disagreement_limit:
        return _check(ctx, "disagreement", "predictions", "high", None, est.value,
                      f"paired answers disagree on {pct(est.value)} (at least {pct(est.lower(ctx.z))}) > limit "
                      f"{pct(p.disagreement_limit)}", est.units)
    target = ctx.target_se(p.disagreement_detectable, p.disagreement_limit)
    se = max(est.se, smoothed_rate_se(round(est.value * len(obs)), len(obs), est.units))
    if se > target:
        needed = units_needed(se, est.units, target)
        return _check(ctx, "disagreement", "predictions", "nodata", None, est.value,
                      f"disagreement not judged: {est.units} paired entities, ~{needed} needed", est.units, needed)
    return _check(ctx, "disagreement", "predictions", "pass", None, est.value,
                  f"paired answers disagree on {pct(est.value)} ({len(obs)} pairs)", est.units)


def accuracy(ctx: GateContext) -> MetricCheck | None:
    """Quality once actual outcomes arrived: per-request error on the same requests, or per entity in canary."""
    p = ctx.policy
    rows = (*ctx.outcome_stable_rows, *ctx.outcome_candidate_rows)
    numeric = any(finite(r.actual) for r in rows)
    labelled = any(r.actual_label is not None for r in rows)
    if not numeric and not labelled:
        waiting = sum(1 for r in ctx.outcome_candidate_rows if r.served)
        if ctx.summary.accuracy_day not in (None, ctx.summary.day) or waiting:
            return _check(ctx, "accuracy", "quality", "nodata", None, None,
                          f"accuracy not judged: no actual outcomes yet for {ctx.summary.accuracy_day or ctx.summary.day}",
                          0, p.min_units)
        return None

    if numeric:
        def value(r: SampleRow) -> float | None:
            if not (_ok(r) and finite(r.actual) and abs(r.actual) < ABSURD_VALUE and (pv := _prediction(r)) is not None):
                return None
            return abs(pv - r.actual)
    else:
        def value(r: SampleRow) -> float | None:
            if not (_ok(r) and r.actual_label is not None and r.label is not None):
                return None
            return _label_score(r.label, r.actual_label)

    comp = compare(ctx, value, outcome=True)
    awaiting = sum(1 for r in ctx.outcome_candidate_rows if r.actual is None and r.actual_label is None)
    waiting_note = f"; {awaiting} sampled candidate requests still await their outcome" if awaiting else ""
    if comp is None or comp.diff.units < p.min_units:
        units = 0 if comp is None else comp.diff.units
        return _check(ctx, "accuracy", "quality", "nodata", None, None,
                      f"accuracy not judged: outcomes for {units} {_unit_word(comp)} < {p.min_units}{waiting_note}",
                      units, p.min_units)
    d, s, c = comp.diff, comp.stable, comp.candidate
    unit = _unit_word(comp)
    if numeric:
        margin = p.accuracy_regression_allowed * s.value
        target = ctx.target_se(p.accuracy_detectable * s.value, margin)
        what = f"mean absolute error {c.value:.4g} vs stable {s.value:.4g}"
        worse = d.lower(ctx.z) > margin
        cls_worse = "high"
    else:
        margin = p.accuracy_drop_allowed
        target = ctx.target_se(p.accuracy_drop_detectable, margin)
        what = f"accuracy {pct(c.value)} vs stable {pct(s.value)}"
        worse = d.upper(ctx.z) < -margin
        cls_worse = "low"
    if worse:
        limit = f"+{p.accuracy_regression_allowed:.0%}" if numeric else f"-{pct(p.accuracy_drop_allowed)}"
        return _check(ctx, "accuracy", "quality", cls_worse, s.value, c.value,
                      f"{what}: confidently worse than the stable's {limit} ({d.units} {unit}){waiting_note}", d.units)
    if target <= 0 or d.se > target:
        needed = units_needed(d.se, d.units, target) if target > 0 else 0
        return _check(ctx, "accuracy", "quality", "nodata", s.value, c.value,
                      f"accuracy not judged: {what}, {d.units} {unit}"
                      + (f", ~{needed} needed" if needed else "") + waiting_note, d.units, needed)
    return _check(ctx, "accuracy", "quality", "pass", s.value, c.value, f"{what} ({d.units} {unit}){waiting_note}",
                  d.units)


Gate = Callable[[GateContext], MetricCheck | None]

# The registry: integrity gates first (a failure holds the day), then the metric gates, whose names are
# Policy.metrics' keys (criticality per policy).
INTEGRITY: dict[str, Gate] = {
    "shadow_coverage": shadow_coverage,
    "orphan_rows": orphan_rows,
    "duplicate_rows": duplicate_rows,
    "null_outputs": null_outputs,
    "feedback_values": feedback_values,
}
GATES: dict[str, Gate] = {
    "latency": latency,
    "error_rate": error_rate,
    "extremes": extremes,
    "latency_distribution": latency_distribution,
    "prediction_shift": prediction_shift,
    "disagreement": disagreement,
    "complaints": complaints,
    "accuracy": accuracy,
}
