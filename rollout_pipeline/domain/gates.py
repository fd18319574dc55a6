"""The gates: one small pure function per metric, each with its inputs, limits and bar.

Every gate answers one question about the candidate against the stable model and
says why in one line ("candidate p99 412 ms > SLO 250 ms: 3.1% of 5,210 answers
above it"). It reads the **pooled nights of the step** (``domain.pool``), and its
bounds stay valid however many nights are looked at (``domain.sequential``). Its
verdict is one of:

- ``high`` / ``low``: confidently past the policy's **limit** -- the anytime-valid
  bound at ``gate_confidence`` is beyond it (a false failure over all the nights of
  a step has probability at most 1 - gate_confidence);
- ``pass``: confidently within the step's **bar** -- the anytime-valid bound at
  ``pass_confidence`` is within the gate's detectable regression times the step's
  multiplier (``Policy.bar_multiplier``: looser where the next step exposes few
  users, the detectable itself before production);
- ``nodata``: neither yet, or fewer units than ``min_units`` -- more nights are
  needed; the reason names the counts and about how many units would do;
- ``n/a``: the question does not apply (no labels, no complaints in shadow, a
  constant baseline has no spread, no outcome ever arrived for the model).

Units are what was randomized. Wherever the other model answered the same request
in shadow (shadow; canary with the stable and/or the candidate mirrored; the watch
after promotion) answers are compared **pair by pair**, clustered by entity. Else,
in canary, the candidate and the stable model serve different entities: means are
compared over entities, and a rate's clustering is measured on the stable's many
entities (``_with_shared_design_effect``). Questions a count answers exactly are
answered from the whole days' counts (latency above a threshold, broken answers),
not from the sample. Integrity gates (``INTEGRITY``) check that the latest night's
logs can be judged at all; their failures hold the day.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from rollout_pipeline.domain.formatting import num, pct
from rollout_pipeline.domain.judge import classify_metric
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.domain.sequential import log_e_above, log_e_below, margin, min_radius, trials_to_show_below
from rollout_pipeline.domain.stats import (
    Estimate,
    clustered_mean,
    difference,
    proportion_bounds,
    quantile_ranks,
    smoothed_rate_se,
    units_needed,
    z_of,
)
from rollout_pipeline.domain.summary import (
    ABSURD_VALUE,
    LATENCY_BINS_PER_E,
    DaySummary,
    SampleRow,
    VariantDay,
    finite,
    latency_bucket_upper,
    quantile_from_histogram,
)

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
    required: bool = True  # whether a promotion from this step needs this gate's verdict

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


def answer_sides(summary: DaySummary, stage: str) -> tuple[tuple[tuple[str, bool], ...], tuple[str, bool]]:
    """The sides holding the candidate's own answers (served and, in canary, mirrored), and the stable reference.

    Latency, errors and outputs are the model's: in canary its shadow answers to the
    stable's requests count as much as the ones it served.
    """
    s, c = summary.stable_variant, summary.candidate_variant
    if stage == "shadow":
        return ((c, False),), (s, True)
    if stage == "production":
        return ((c, True),), (s, False)
    if summary.get(c, False) is None:  # logs without the candidate's mirrored answers
        return ((c, True),), (s, True)
    return ((c, True), (c, False)), (s, True)


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


def _answered(row: SampleRow) -> bool:
    """A row carrying the model's answer: a shadow call the mirror shed is missing evidence, not an answer."""
    return row.status != "shed"


def pairs_of(rows: tuple[SampleRow, ...], stable: str, candidate: str) -> list[Pair]:
    """Requests the two variants both answered, one served and one in shadow (first answer of each)."""
    by_id: dict[str, dict[str, SampleRow]] = {}
    for row in rows:
        if row.correlation_id and row.variant in (stable, candidate) and _answered(row):
            by_id.setdefault(row.correlation_id, {}).setdefault(row.variant, row)
    return [Pair(d[stable], d[candidate]) for d in by_id.values()
            if stable in d and candidate in d and d[stable].served != d[candidate].served]


@dataclass(frozen=True)
class GateContext:
    """Everything a gate reads: the pooled nights, the latest night, the stage, the policy, each side's rows."""

    summary: DaySummary  # the step's nights pooled (domain.pool); the latest night alone when there is one
    stage: str
    policy: Policy
    stable: VariantDay | None  # whole-day records of the compared sides (served users' sides in canary)
    candidate: VariantDay | None
    stable_served: bool
    candidate_served: bool
    pairs: tuple[Pair, ...]
    stable_rows: tuple[SampleRow, ...]  # sampled rows of the compared stable side
    candidate_rows: tuple[SampleRow, ...]
    outcome_pairs: tuple[Pair, ...]  # pairs of the accuracy day (late labels)
    outcome_stable_rows: tuple[SampleRow, ...]
    outcome_candidate_rows: tuple[SampleRow, ...]
    today: DaySummary | None = None  # the latest night (integrity gates); None: the summary is one night
    percent: int = 0  # the canary share the rollout is at (0 in shadow, 100 in production)
    outcomes_seen: bool | None = None  # whether any actual outcome ever arrived for the rollout (None: unknown)
    z: float = field(init=False)
    z_power: float = field(init=False)
    alpha_fail: float = field(init=False)
    alpha_pass: float = field(init=False)
    multiplier: float = field(init=False)
    required: frozenset[str] | None = field(init=False)

    def __post_init__(self):
        p = self.policy
        object.__setattr__(self, "z", z_of(p.gate_confidence))
        object.__setattr__(self, "z_power", z_of(p.power))
        object.__setattr__(self, "alpha_fail", 1 - p.gate_confidence)
        object.__setattr__(self, "alpha_pass", 1 - p.pass_confidence)
        object.__setattr__(self, "multiplier", p.bar_multiplier(self.stage, self.percent))
        object.__setattr__(self, "required", p.required_at(self.stage, self.percent))

    @property
    def night(self) -> DaySummary:
        """The latest night's own summary."""
        return self.today or self.summary

    @property
    def populations_differ(self) -> bool:
        """Canary: the two sides served different entities."""
        return self.stage == "canary"

    def criticality(self, name: str) -> str:
        return self.policy.metrics.get(name, "normal")

    def is_required(self, name: str) -> bool:
        return self.required is None or name in self.required

    def bar(self, detectable: float, cap: float | None = None) -> float:
        """The step's bar for a gate whose detectable regression is ``detectable`` (at most ``cap``)."""
        b = detectable * self.multiplier
        return b if cap is None else min(b, cap)

    def se_to_pass(self, bar: float, at: float = 0.0) -> float:
        """The standard error at which a candidate whose true value is ``at`` passes ``bar`` with probability power."""
        return max(bar - at, 0.0) / (min_radius(self.alpha_pass) + self.z_power)

    def fail_margin(self, se: float, bar: float, limit: float) -> float:
        """Half-width of the anytime-valid failing bound, tuned where a regression at the bar is caught."""
        ref = max(bar - limit, 1e-12) / (min_radius(self.alpha_fail) + self.z_power)
        return margin(se, self.alpha_fail, ref)

    def pass_margin(self, se: float, bar: float) -> float:
        """Half-width of the anytime-valid passing bound, tuned where a candidate equal to the stable passes."""
        return margin(se, self.alpha_pass, self.se_to_pass(bar))


def _side(rows, variant, served):
    return tuple(r for r in rows if r.variant == variant and r.served == served and _answered(r))


def context_for(summary: DaySummary, stage: str, policy: Policy, *, today: DaySummary | None = None,
                percent: int | None = None, outcomes_seen: bool | None = None) -> GateContext:
    """The gates' view of ``summary`` (one night, or a step's pooled nights with ``today`` the latest)."""
    stable, cand, _ = compared_sides(summary, stage)
    s_served, c_served = stage != "production", stage != "shadow"
    pairs = tuple(pairs_of(summary.sample, summary.stable_variant, summary.candidate_variant))
    outcome = summary.outcome_sample()
    if percent is None:
        percent = {"shadow": 0, "production": 100}.get(stage, policy.canary_steps[0])
    return GateContext(
        summary, stage, policy, stable, cand, s_served, c_served, pairs,
        _side(summary.sample, summary.stable_variant, s_served),
        _side(summary.sample, summary.candidate_variant, c_served),
        pairs if outcome is summary.sample else tuple(pairs_of(outcome, summary.stable_variant,
                                                                summary.candidate_variant)),
        _side(outcome, summary.stable_variant, s_served),
        _side(outcome, summary.candidate_variant, c_served),
        today=today, percent=percent, outcomes_seen=outcomes_seen,
    )


# --- shared shapes ----------------------------------------------------------------------------------------

def _check(ctx: GateContext, name: str, group: str, classification: str, stable, candidate, reason: str,
           units: int = 0, needed: int = 0, population: str = "") -> MetricCheck:
    required = ctx.is_required(name)
    if classification == "nodata" and not required:
        reason += " (not needed at this step)"
    return MetricCheck(name, group, ctx.criticality(name), classification, stable, candidate, reason, units, needed,
                       population, required)


def _ok(row: SampleRow) -> bool:
    return row.status == "ok"


@dataclass(frozen=True)
class Comparison:
    """candidate - stable for one quantity, with both sides' estimates, as a gate tests it."""

    diff: Estimate
    candidate: Estimate
    stable: Estimate
    paired: bool
    effective_units: int = 0  # unpaired rates: the candidate's requests over the shared design effect

    @property
    def units(self) -> int:
        return self.effective_units or self.diff.units


def compare(ctx: GateContext, value: Callable[[SampleRow], float | None], *, outcome: bool = False,
            paired: bool | None = None) -> Comparison | None:
    """Compare a per-request quantity: on pairs (same requests) or on the two populations (canary).

    ``paired`` None: pairs when the sides answered the same requests (shadow, production)
    or when canary pairs exist through mirroring (the stable's, the candidate's, or both).
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
    if comparison is not None and comparison.effective_units:
        return "candidate requests (effective)"
    return "entities, paired" if comparison is not None and comparison.paired else "entities"


def _population(comparison: Comparison | None, served_only: bool = False) -> str:
    if comparison is None:
        return ""
    if comparison.paired:
        return "paired requests"
    return "served, entities" if served_only else "entities"


def _with_shared_design_effect(comp: Comparison) -> Comparison:
    """Two populations of one randomization: the candidate's rate SE from its own counts and the stable's clustering.

    Entities were assigned at random, so how much one entity's requests cluster (the
    design effect: cluster-robust variance / binomial variance) is the same on both
    sides; measured on the stable's many entities it is steadier than on the
    candidate's few (a 1% canary may hold a dozen entities, one of them heavy). The
    candidate's requests divided by it are its effective independent units.
    """
    c, s = comp.candidate, comp.stable

    def binomial_var(est: Estimate) -> float:
        p = (est.value * est.observations + 1) / (est.observations + 2)
        return p * (1 - p) / est.observations

    deff = max(1.0, s.se ** 2 / binomial_var(s)) if s.observations and math.isfinite(s.se) else 1.0
    c_se = math.sqrt(binomial_var(c) * deff)
    c = Estimate(c.value, c_se, c.units, c.observations)
    return Comparison(difference(c, s), c, s, False, max(1, int(c.observations / deff)))


def _excess_verdict(ctx: GateContext, d_value: float, se: float, limit: float, bar: float
                    ) -> tuple[str, float, float]:
    """(verdict, lower, upper) of an excess (candidate - stable) against a limit (fail) and a bar (pass)."""
    lower = d_value - ctx.fail_margin(se, bar, limit)
    upper = d_value + ctx.pass_margin(se, bar)
    if lower > limit:
        return "high", lower, upper
    if upper <= bar:
        return "pass", lower, upper
    return "nodata", lower, upper


def _rate_gate(ctx: GateContext, name: str, group: str, what: str, value: Callable[[SampleRow], float | None],
               margin_of: Callable[[float], float], detectable: float, cap: float | None,
               served_only: bool = False) -> MetricCheck:
    """A rate (errors, complaints): fail when confidently above the stable's plus a margin (or a cap); pass when
    confidently below the stable's plus the step's bar.

    Pairs on the same requests where the other model answered them in shadow (``served_only``:
    never -- complaints follow what users were shown); else the served answers of the two
    populations, with the stable's clustering (``_with_shared_design_effect``).
    """
    p = ctx.policy
    comp = compare(ctx, value, paired=False if served_only and ctx.populations_differ else None)
    if comp is not None and not comp.paired:
        comp = _with_shared_design_effect(comp)
    population = _population(comp, served_only)
    if comp is None or comp.units < p.min_units or comp.stable.units < p.min_units:
        units = 0 if comp is None else min(comp.units, comp.stable.units)
        return _check(ctx, name, group, "nodata", None, None,
                      f"{what} not judged: {units} {_unit_word(comp)} < {p.min_units} needed",
                      units, p.min_units, population)
    c, s, d = comp.candidate, comp.stable, comp.diff
    limit = margin_of(s.value)
    bar = max(limit, ctx.bar(detectable, cap=1.0))
    trials = c.observations
    # The cluster-robust SE carries the clustering; the smoothed floor only keeps "no event yet" from
    # meaning "no doubt" (with 0 errors in 300 requests an error rate of 2% is still possible).
    se = max(d.se, smoothed_rate_se(round(c.value * trials), trials, trials))
    cls, lower, upper = _excess_verdict(ctx, d.value, se, limit, bar)
    units = comp.units
    counted = f"{units:,} {_unit_word(comp)}"
    if cls == "high":
        return _check(ctx, name, group, "high", s.value, c.value,
                      f"candidate {what} {pct(c.value)} > stable {pct(s.value)} + {pct(limit)} "
                      f"(excess at least {pct(lower)} at any-time confidence; {counted})", units,
                      population=population)
    if cap is not None and c.observations:
        x, n = round(c.value * c.observations), c.observations
        deff = max(1.0, n / units) if comp.effective_units else 1.0
        if log_e_above(x / deff, n / deff, cap) >= math.log(1 / ctx.alpha_fail):
            return _check(ctx, name, group, "high", s.value, c.value,
                          f"candidate {what} {pct(c.value)} > limit {pct(cap)} ({x:,} of {n:,} requests, "
                          "confidently above at any-time confidence)", units, population=population)
    if cls == "nodata":
        needed = units_needed(se, units, ctx.se_to_pass(bar, max(d.value, 0.0)))
        return _check(ctx, name, group, "nodata", s.value, c.value,
                      f"{what} not yet decided: candidate {pct(c.value)}, stable {pct(s.value)}; excess at most "
                      f"{pct(upper)} > bar {pct(bar)} ({counted}, ~{needed:,} needed)", units, needed, population)
    return _check(ctx, name, group, "pass", s.value, c.value,
                  f"candidate {what} {pct(c.value)} (stable {pct(s.value)}; excess at most {pct(upper)} <= bar "
                  f"{pct(bar)}; {counted})", units, population=population)


def _share_verdict(ctx: GateContext, x_fail: float, x_pass: float, n: float, limit: float, bar: float) -> str:
    """A count's share: fail when confidently above ``limit``, pass when confidently below ``bar`` (e-values)."""
    if n <= 0:
        return "nodata"
    if log_e_above(x_fail, n, limit) >= math.log(1 / ctx.alpha_fail):
        return "high"
    if log_e_below(x_pass, n, bar) >= math.log(1 / ctx.alpha_pass):
        return "pass"
    return "nodata"


def _share_needed(share: float, bar: float, ctx: GateContext, have: int) -> int:
    found = trials_to_show_below(share, bar, ctx.alpha_pass)
    return max(have, found or 0)


# --- integrity gates: can the latest night's logs be judged at all? ----------------------------------------

def shadow_coverage(ctx: GateContext) -> MetricCheck | None:
    """Shadow: the share of the stable's served requests that have a candidate answer (ok, error or timeout)."""
    if ctx.stage != "shadow":
        return None
    night = ctx.night
    s, c = night.stable_variant, night.candidate_variant
    served = {r.correlation_id for r in night.sample if r.variant == s and r.served and r.correlation_id}
    twins = {r.correlation_id for r in night.sample if r.variant == c and not r.served and r.correlation_id
             and _answered(r)}
    shed = {r.correlation_id for r in night.sample if r.variant == c and not r.served and r.correlation_id
            and not _answered(r)}
    served -= shed  # shed by the mirror: missing evidence, not a missing answer of the candidate's
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
    night = ctx.night
    served = night.get(night.candidate_variant, True)
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
    sample = ctx.night.sample
    for r in sample:
        if r.correlation_id:
            key = (r.correlation_id, r.variant, r.served)
            dup += key in seen
            seen.add(key)
    limit = ctx.policy.max_duplicate_rows
    cls = "high" if dup > limit else "pass"
    return MetricCheck("duplicate_rows", "integrity", "critical", cls, None, float(dup),
                       f"{dup} duplicate rows (same correlation id, variant and served) in the "
                       f"{len(sample)}-row sample" + (f" > {limit} allowed" if cls == "high" else ""),
                       len(sample))


def null_outputs(ctx: GateContext) -> MetricCheck | None:
    """The stable's answers with status ok but no output (whole night): the comparison has nothing to stand on.

    The candidate's own empty answers are not a logging problem but the candidate's: ``broken_answers``.
    """
    night = ctx.night
    side = night.get(night.stable_variant, ctx.stage != "production")
    if side is None or not side.ok:
        return None
    share = side.null_outputs / side.ok
    limit = ctx.policy.max_null_output_share
    cls = "high" if share > limit else "pass"
    return MetricCheck("null_outputs", "integrity", "critical", cls, None, share,
                       f"{side.null_outputs} of {side.ok} ok stable answers ({pct(share)}) carry no output"
                       + (f" > {pct(limit)} allowed" if cls == "high" else ""), side.ok)


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


# --- latency: whole-day counts above a threshold ---------------------------------------------------------

def merged_histogram(days: Sequence[VariantDay | None]) -> dict[int, int]:
    """The latency histograms of several sides added up."""
    out: dict[int, int] = {}
    for d in days:
        if d is not None:
            for bucket, count in d.latency_histogram:
                out[bucket] = out.get(bucket, 0) + count
    return out


def count_above(hist: Mapping[int, int], threshold: float, *, surely: bool) -> int:
    """Requests above ``threshold`` ms: ``surely`` counts whole buckets above it (a lower bound of the count),
    else every bucket reaching past it (an upper bound); the two differ by one 2%-wide bucket."""
    if surely:
        return sum(n for b, n in hist.items() if math.expm1(b / LATENCY_BINS_PER_E) >= threshold)
    return sum(n for b, n in hist.items() if latency_bucket_upper(b) > threshold)


def histogram_quantile_bounds(hist: Mapping[int, int], q: float, z: float) -> tuple[float, float] | None:
    """Distribution-free (lower, upper) bounds of the ``q`` quantile from a histogram (bucket edges of the
    bounding order statistics); None when there are too few values for an upper bound."""
    n = sum(hist.values())
    ranks = quantile_ranks(n, q, z)
    if ranks is None:
        return None
    lo_rank, hi_rank = ranks
    seen, lower, upper = 0, None, None
    for b in sorted(hist):
        if lower is None and seen + hist[b] > lo_rank:
            lower = math.expm1(b / LATENCY_BINS_PER_E)
        if seen + hist[b] > hi_rank:
            upper = latency_bucket_upper(b)
            break
        seen += hist[b]
    return lower, upper


def latency(ctx: GateContext) -> MetricCheck | None:
    """p99 latency: "p99 <= T" is "at most 1% of answers above T", a count of the whole days' histograms.

    T is the SLO and, when the policy compares, the stable's p99 (bounded from its own
    histogram) plus the allowed regression. Fails when the share above T is
    confidently over 1%; passes when it is confidently under the step's bar
    (``latency_tail_detectable`` times the step's multiplier: a blow-up at the first
    step, the p97 before production). Latency is judged per request (the serving
    host, not the user, drives it), on every answer of the candidate's, mirrored ones
    included.
    """
    p = ctx.policy
    if p.latency_slo_p99_ms is None and p.latency_regression_allowed is None:
        return _check(ctx, "latency", "latency", "n/a", None, None, "latency: no SLO and no regression limit set")
    s = ctx.summary
    cand_sides, stable_side = answer_sides(s, ctx.stage)
    cand = merged_histogram([s.get(*k) for k in cand_sides])
    stable = merged_histogram([s.get(*stable_side)])
    n = sum(cand.values())
    population = "answers" + (" served+mirrored" if len(cand_sides) > 1 else "") + ", whole days"
    if n < p.min_units:
        return _check(ctx, "latency", "latency", "nodata", None, None,
                      f"p99 latency not judged: {n} candidate answers < {p.min_units}", n, p.min_units, population)
    c_p99 = quantile_from_histogram(cand, LATENCY_QUANTILE)
    s_p99 = quantile_from_histogram(stable, LATENCY_QUANTILE)
    limits_fail: list[tuple[float, str]] = []
    limits_pass: list[tuple[float, str]] = []
    if p.latency_slo_p99_ms is not None:
        limits_fail.append((p.latency_slo_p99_ms, f"SLO {p.latency_slo_p99_ms:,.0f} ms"))
        limits_pass.append((p.latency_slo_p99_ms, f"SLO {p.latency_slo_p99_ms:,.0f} ms"))
    if p.latency_regression_allowed is not None:
        bounds = histogram_quantile_bounds(stable, LATENCY_QUANTILE, ctx.z)
        if bounds is not None:
            lo, hi = bounds
            f = 1 + p.latency_regression_allowed
            limits_fail.append((hi * f, f"stable p99 {num(s_p99, ' ms')} (at most {hi:,.0f}) + "
                                        f"{p.latency_regression_allowed:.0%} = {hi * f:,.0f} ms"))
            limits_pass.append((lo * f, f"stable p99 {num(s_p99, ' ms')} (at least {lo:,.0f}) + "
                                        f"{p.latency_regression_allowed:.0%} = {lo * f:,.0f} ms"))
        elif p.latency_slo_p99_ms is None:
            return _check(ctx, "latency", "latency", "nodata", s_p99, c_p99,
                          f"p99 latency not judged: {sum(stable.values())} stable answers bound no p99",
                          n, 0, population)
    limit_share = 1 - LATENCY_QUANTILE
    bar = ctx.bar(p.latency_tail_detectable, cap=0.5)
    for threshold, says in limits_fail:
        above = count_above(cand, threshold, surely=True)
        if log_e_above(above, n, limit_share) >= math.log(1 / ctx.alpha_fail):
            return _check(ctx, "latency", "latency", "high", s_p99, c_p99,
                          f"candidate p99 {num(c_p99, ' ms')} > {says}: {above:,} of {n:,} answers above it "
                          f"({pct(above / n)}), confidently more than 1%", n, population=population)
    threshold, says = min(limits_pass)
    above = count_above(cand, threshold, surely=False)
    verdict = _share_verdict(ctx, 0.0, above, n, limit_share, bar)
    if verdict != "pass":
        needed = _share_needed(above / n, bar, ctx, n)
        return _check(ctx, "latency", "latency", "nodata", s_p99, c_p99,
                      f"p99 latency not yet decided: {above:,} of {n:,} candidate answers above {says} "
                      f"({pct(above / n)}); showing under the bar {pct(bar)} needs ~{needed:,}", n, needed, population)
    return _check(ctx, "latency", "latency", "pass", s_p99, c_p99,
                  f"candidate p99 {num(c_p99, ' ms')} within {says}: {above:,} of {n:,} answers above it "
                  f"({pct(above / n)}, confidently under the bar {pct(bar)})", n, population=population)


def latency_distribution(ctx: GateContext) -> MetricCheck | None:
    """Kayenta's Mann-Whitney on latency, on the same requests: pairs, or shadow's two samples of one traffic.

    Kayenta's rule is a fixed-sample one; what keeps it from failing a healthy candidate
    when it is looked at night after night is its effect-size gate: it only fails a
    candidate whose mean latency is at least ``1 + latency_regression_allowed`` times
    the stable's. Between the two populations of a canary that is not mirrored it does
    not apply: a rank test of one side's users against the other's reads which users
    landed in a small canary (a handful of entities, or only anonymous requests, each of
    them one unit against the stable's many-request users) as a latency difference --
    the p99 gate judges latency there, per answer, on the whole days.
    """
    p = ctx.policy
    if len(ctx.pairs) >= p.min_units:
        obs = [(pr.stable.latency_ms, pr.candidate.latency_ms) for pr in ctx.pairs
               if _ok(pr.stable) and _ok(pr.candidate) and finite(pr.stable.latency_ms)
               and finite(pr.candidate.latency_ms) and pr.stable.latency_ms >= 0 and pr.candidate.latency_ms >= 0]
        s_vals, c_vals = [a for a, _ in obs], [b for _, b in obs]
        unit, population = "paired requests", "paired requests"
    elif not ctx.populations_differ:
        s_vals, c_vals = ok_values(ctx.stable_rows, "latency_ms"), ok_values(ctx.candidate_rows, "latency_ms")
        unit, population = "requests", "sampled requests"
    else:
        return _check(ctx, "latency_distribution", "latency", "n/a", None, None,
                      "latency distribution compared on the same requests only: no mirrored answers (the p99 "
                      "gate judges latency per answer on the whole days)")
    n = min(len(s_vals), len(c_vals))
    if n < p.min_units:
        return _check(ctx, "latency_distribution", "latency", "nodata", None, None,
                      f"latency distribution not judged: {n} {unit} < {p.min_units}", n, p.min_units, population)
    if p.latency_regression_allowed is None:
        return _check(ctx, "latency_distribution", "latency", "n/a", None, None,
                      "latency distribution not compared (no regression limit: a baseline)")
    result = classify_metric(s_vals, c_vals, direction="increase", fraction=p.judge.tolerance_fraction,
                             confidence=p.judge.confidence,
                             effect_size_thresholds=(1.0, 1.0 + p.latency_regression_allowed))
    s_med, c_med = sorted(s_vals)[len(s_vals) // 2], sorted(c_vals)[len(c_vals) // 2]
    why = f"candidate median latency {c_med:.1f} ms vs stable {s_med:.1f} ms ({n:,} {unit})"
    cls = result.classification if result.classification in ("pass", "high", "low") else "nodata"
    return _check(ctx, "latency_distribution", "latency", cls, s_med, c_med,
                  why + (" (Mann-Whitney: higher, mean ratio past the allowed regression)" if cls == "high" else ""),
                  n, population=population)


# --- errors and answers --------------------------------------------------------------------------------

def _is_error(row: SampleRow) -> float | None:
    if not _answered(row):
        return None
    return 0.0 if row.status == "ok" else 1.0


def error_rate(ctx: GateContext) -> MetricCheck | None:
    """Errors and timeouts: candidate rate against the stable's plus a margin, and against a cap."""
    p = ctx.policy
    return _rate_gate(ctx, "error_rate", "errors", "error rate", _is_error, lambda s: p.error_rate_margin,
                      p.error_rate_detectable, p.error_rate_limit)


def broken_answers(ctx: GateContext) -> MetricCheck | None:
    """The candidate's ok answers that say nothing usable (empty, non-finite, absurd), from the whole days' counts.

    These are the candidate's own answers, so they are judged, not held as a logging
    problem: a single non-finite or absurd prediction fails it (that is certain, not a
    matter of chance), and empty answers confidently above ``max_null_output_share`` do
    (critical: a rollback), whatever stage it is at.
    """
    p = ctx.policy
    s = ctx.summary
    cand_sides, _ = answer_sides(s, ctx.stage)
    days = [d for k in cand_sides if (d := s.get(*k)) is not None]
    ok = sum(d.ok for d in days)
    broken = min(ok, sum(d.broken for d in days))
    population = "ok answers, whole days"
    if ok < p.min_units:
        return _check(ctx, "broken_answers", "predictions", "nodata", None, None,
                      f"broken answers not judged: {ok} ok candidate answers < {p.min_units}", ok, p.min_units,
                      population)
    share = broken / ok
    bar = ctx.bar(p.broken_answers_detectable, cap=0.5)
    said = f"{broken:,} of {ok:,} ok candidate answers ({pct(share)}) empty, non-finite or absurd"
    absurd = sum(d.nonfinite_predictions for d in days)
    if absurd:  # not a matter of chance: a model that answered NaN, an infinity or 1e15 once is broken
        return _check(ctx, "broken_answers", "predictions", "high", None, share,
                      f"{said}: {absurd:,} of them non-finite or absurd (NaN, an infinity or |x| >= "
                      f"{ABSURD_VALUE:.0e}), which a model must never answer", ok, population=population)
    verdict = _share_verdict(ctx, broken, broken, ok, p.max_null_output_share, bar)
    if verdict == "high":
        return _check(ctx, "broken_answers", "predictions", "high", None, share,
                      f"{said}: confidently more than {pct(p.max_null_output_share)}", ok, population=population)
    if verdict == "nodata":
        needed = _share_needed(share, bar, ctx, ok)
        return _check(ctx, "broken_answers", "predictions", "nodata", None, share,
                      f"broken answers not yet decided: {said}; showing under the bar {pct(bar)} needs ~{needed:,}",
                      ok, needed, population)
    return _check(ctx, "broken_answers", "predictions", "pass", None, share,
                  f"{said}, confidently under the bar {pct(bar)}", ok, population=population)


def complaints(ctx: GateContext) -> MetricCheck | None:
    """Complaints per served request, candidate against stable (only served answers reach users)."""
    if ctx.stage != "canary":
        return None
    p = ctx.policy

    def value(row: SampleRow) -> float:
        return float(row.complaints > 0)

    return _rate_gate(ctx, "complaints", "feedback", "complaint rate", value,
                      lambda s: max(p.complaint_margin, p.complaint_regression_allowed * s), p.complaint_detectable,
                      None, served_only=True)


def _candidate_answer_rows(ctx: GateContext) -> list[SampleRow]:
    """The candidate's sampled answers of the sides that carry them (served and mirrored in canary)."""
    sides, _ = answer_sides(ctx.summary, ctx.stage)
    wanted = set(sides)
    return [r for r in ctx.summary.sample if (r.variant, r.served) in wanted and _answered(r)]


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
    """The labels the stable model gives (sample and the days' most frequent), or None for item lists."""
    known = {r.label for r in ctx.stable_rows if r.label is not None}
    if ctx.stable is not None:
        known |= {label for label, _ in ctx.stable.label_counts}
    if not known or any(label.startswith("[") for label in known):
        return None
    return known


def extremes(ctx: GateContext) -> MetricCheck | None:
    """Candidate outputs outside plausible bounds (numbers), or labels the stable model never gives (classes):
    fail when their share is confidently above the limit, pass when confidently under the step's bar."""
    p = ctx.policy
    rows = _candidate_answer_rows(ctx)
    c_vals = [r.prediction for r in rows if _ok(r) and r.prediction is not None]
    c_labels = [r.label for r in rows if _ok(r) and r.prediction is None and r.label is not None]
    population = "sampled answers"
    if not c_vals and not c_labels:
        return None if rows else _check(ctx, "extremes", "predictions", "nodata", None, None,
                                        "extremes not judged: no candidate answers", 0, p.min_units, population)
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
    bar = ctx.bar(p.extreme_share_detectable, cap=0.5)
    verdict = _share_verdict(ctx, outside, outside, n, p.extreme_share_limit, bar) if n >= p.min_units else "nodata"
    said = f"candidate answers {where}: {outside:,} of {n:,} sampled ({pct(share)})"
    if verdict == "high":
        return _check(ctx, "extremes", "predictions", "high", None, share,
                      f"{said}, confidently more than the limit {pct(p.extreme_share_limit)}", n,
                      population=population)
    if verdict == "nodata":
        needed = max(p.min_units, _share_needed(share, bar, ctx, n))
        return _check(ctx, "extremes", "predictions", "nodata", None, share,
                      f"extremes not yet decided: {said}; showing under the bar {pct(bar)} needs ~{needed:,}",
                      n, needed, population)
    return _check(ctx, "extremes", "predictions", "pass", None, share,
                  f"{said}, confidently under the bar {pct(bar)}", n, population=population)


# --- outputs against the stable's ---------------------------------------------------------------------

def _prediction(row: SampleRow) -> float | None:
    return row.prediction if _ok(row) and finite(row.prediction) and abs(row.prediction) < ABSURD_VALUE else None


def _two_sided(ctx: GateContext, d: Estimate, limit: float, bar: float) -> tuple[str, float, float]:
    """(verdict, lower, upper) of |difference| against a limit (fail) and a bar (pass), both directions."""
    f = ctx.fail_margin(d.se, bar, limit)
    g = ctx.pass_margin(d.se, bar)
    if d.value - f > limit:
        return "high", d.value - f, d.value + g
    if d.value + f < -limit:
        return "low", d.value - f, d.value + g
    if d.value + g <= bar and d.value - g >= -bar:
        return "pass", d.value - g, d.value + g
    return "nodata", d.value - g, d.value + g


def prediction_shift(ctx: GateContext) -> MetricCheck | None:
    """The candidate's mean output against the stable's, in stable standard deviations."""
    p = ctx.policy
    sd = ctx.stable.prediction_std if ctx.stable is not None else None
    comp = compare(ctx, _prediction)
    if comp is None:
        return None
    population = _population(comp)
    if not sd or sd <= 1e-9 * max(1.0, abs(comp.stable.value)):
        return _check(ctx, "prediction_shift", "predictions", "n/a", comp.stable.value, comp.candidate.value,
                      "prediction shift not judged: the stable predictions have no spread (a constant baseline)")
    d = comp.diff
    shift = d.value / sd
    unit = _unit_word(comp)
    detail = f"mean {comp.stable.value:.4g} -> {comp.candidate.value:.4g} ({shift:+.2f} sd; {d.units:,} {unit})"
    if d.units < p.min_units:
        return _check(ctx, "prediction_shift", "predictions", "nodata", comp.stable.value, comp.candidate.value,
                      f"prediction shift not judged: {d.units} {unit} < {p.min_units}", d.units, p.min_units,
                      population)
    limit, bar = p.prediction_shift_limit * sd, ctx.bar(p.prediction_shift_detectable) * sd
    cls, lower, upper = _two_sided(ctx, d, limit, bar)
    if cls in ("high", "low"):
        return _check(ctx, "prediction_shift", "predictions", cls, comp.stable.value, comp.candidate.value,
                      f"predictions shifted {'up' if cls == 'high' else 'down'}: {detail}, confidently beyond "
                      f"{p.prediction_shift_limit} sd", d.units, population=population)
    if cls == "nodata":
        needed = units_needed(d.se, d.units, ctx.se_to_pass(bar, abs(d.value)))
        return _check(ctx, "prediction_shift", "predictions", "nodata", comp.stable.value, comp.candidate.value,
                      f"prediction shift not yet decided: {detail}; within +-{bar / sd:.2g} sd not yet shown "
                      f"(~{needed:,} {unit} needed)", d.units, needed, population)
    return _check(ctx, "prediction_shift", "predictions", "pass", comp.stable.value, comp.candidate.value,
                  f"predictions {detail}, confidently within +-{bar / sd:.2g} sd", d.units, population=population)


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
    population = "paired requests"
    if est.units < p.min_units:
        return _check(ctx, "disagreement", "predictions", "nodata", None, est.value,
                      f"disagreement not judged: {est.units} paired entities < {p.min_units}", est.units,
                      p.min_units, population)
    se = max(est.se, smoothed_rate_se(round(est.value * len(obs)), len(obs), est.units))
    limit = p.disagreement_limit
    bar = ctx.bar(p.disagreement_detectable, cap=1.0)
    lower = est.value - ctx.fail_margin(se, bar, limit)
    upper = est.value + ctx.pass_margin(se, bar)
    said = f"paired answers disagree on {pct(est.value)} ({len(obs):,} pairs, {est.units:,} entities)"
    if lower > limit:
        return _check(ctx, "disagreement", "predictions", "high", None, est.value,
                      f"{said}: at least {pct(lower)} > limit {pct(limit)}", est.units, population=population)
    if upper > bar:
        needed = units_needed(se, est.units, ctx.se_to_pass(bar, est.value))
        return _check(ctx, "disagreement", "predictions", "nodata", None, est.value,
                      f"disagreement not yet decided: {said}; at most {pct(upper)} > bar {pct(bar)} "
                      f"(~{needed:,} entities needed)", est.units, needed, population)
    return _check(ctx, "disagreement", "predictions", "pass", None, est.value,
                  f"{said}; at most {pct(upper)} <= bar {pct(bar)}", est.units, population=population)


def accuracy(ctx: GateContext) -> MetricCheck | None:
    """Quality once actual outcomes arrived: per-request error on the same requests, or per entity in canary."""
    p = ctx.policy
    rows = (*ctx.outcome_stable_rows, *ctx.outcome_candidate_rows)
    numeric = any(finite(r.actual) for r in rows)
    labelled = any(r.actual_label is not None for r in rows)
    if not numeric and not labelled:
        if ctx.outcomes_seen is False:
            if p.require_outcomes:
                return _check(ctx, "accuracy", "quality", "nodata", None, None,
                              "accuracy not judged: no outcomes for this model yet (require_outcomes holds the "
                              "rollout until actual outcomes arrive)", 0, p.min_units)
            return _check(ctx, "accuracy", "quality", "n/a", None, None,
                          "accuracy not judged: no outcomes for this model (no actual outcome ever arrived for "
                          "this rollout; the other gates decide)")
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
    population = _population(comp)
    awaiting = sum(1 for r in ctx.outcome_candidate_rows if r.actual is None and r.actual_label is None)
    waiting_note = f"; {awaiting} sampled candidate requests still await their outcome" if awaiting else ""
    if comp is None or comp.diff.units < p.min_units:
        units = 0 if comp is None else comp.diff.units
        return _check(ctx, "accuracy", "quality", "nodata", None, None,
                      f"accuracy not judged: outcomes for {units} {_unit_word(comp)} < {p.min_units}{waiting_note}",
                      units, p.min_units, population)
    d, s, c = comp.diff, comp.stable, comp.candidate
    unit = _unit_word(comp)
    if numeric:
        # Growth of the mean absolute error, as a share of the stable's: larger is worse.
        scale = max(abs(s.value), 1e-12)
        growth = Estimate(d.value / scale, d.se / scale, d.units, d.observations)
        limit, bar = p.accuracy_regression_allowed, ctx.bar(p.accuracy_detectable)
        what = f"mean absolute error {c.value:.4g} vs stable {s.value:.4g} ({growth.value:+.1%})"
        said_limit = f"+{p.accuracy_regression_allowed:.0%}"
        worse_cls = "high"
    else:
        # Drop of the share right, in points: larger is worse.
        growth = Estimate(-d.value, d.se, d.units, d.observations)
        limit, bar = p.accuracy_drop_allowed, ctx.bar(p.accuracy_drop_detectable, cap=1.0)
        what = f"accuracy {pct(c.value)} vs stable {pct(s.value)}"
        said_limit = f"-{pct(p.accuracy_drop_allowed)}"
        worse_cls = "low"
    cls, lower, upper = _excess_verdict(ctx, growth.value, growth.se, limit, bar)
    if cls == "high":
        return _check(ctx, "accuracy", "quality", worse_cls, s.value, c.value,
                      f"{what}: confidently worse than the stable's {said_limit} ({d.units:,} {unit}){waiting_note}",
                      d.units, population=population)
    if cls == "nodata":
        needed = units_needed(growth.se, d.units, ctx.se_to_pass(bar, max(growth.value, 0.0)))
        return _check(ctx, "accuracy", "quality", "nodata", s.value, c.value,
                      f"accuracy not yet decided: {what}, {d.units:,} {unit}, ~{needed:,} needed{waiting_note}",
                      d.units, needed, population)
    return _check(ctx, "accuracy", "quality", "pass", s.value, c.value,
                  f"{what} ({d.units:,} {unit}; worse by at most {upper:.1%} <= bar {bar:.1%}){waiting_note}"
                  if numeric else f"{what} ({d.units:,} {unit}; down at most {pct(upper)} <= bar {pct(bar)})"
                  f"{waiting_note}", d.units, population=population)


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
    "broken_answers": broken_answers,
    "extremes": extremes,
    "latency_distribution": latency_distribution,
    "prediction_shift": prediction_shift,
    "disagreement": disagreement,
    "complaints": complaints,
    "accuracy": accuracy,
}
