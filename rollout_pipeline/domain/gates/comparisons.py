"""The statistics the gates share: a quantity compared between the two models (pairs, or two populations), a
rate's verdict, a count's share against a limit and a bar."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from rollout_pipeline.domain.formatting import pct
from rollout_pipeline.domain.gates.context import GateContext, MetricCheck, check
from rollout_pipeline.domain.sequential import log_e_above, log_e_below, trials_to_show_below
from rollout_pipeline.domain.stats import Estimate, clustered_mean, difference, smoothed_rate_se, units_needed
from rollout_pipeline.domain.summary import SampleRow


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


def unit_word(comparison: Comparison | None) -> str:
    """The independent units behind a comparison: entities (requests of one entity are one cluster)."""
    if comparison is not None and comparison.effective_units:
        return "candidate requests (effective)"
    return "entities, paired" if comparison is not None and comparison.paired else "entities"


def population_of(comparison: Comparison | None, served_only: bool = False) -> str:
    """What the two numbers of a comparison count: paired requests, or entities (served ones for complaints)."""
    if comparison is None:
        return ""
    if comparison.paired:
        return "paired requests"
    return "served, entities" if served_only else "entities"


def with_shared_design_effect(comp: Comparison) -> Comparison:
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


def excess_verdict(ctx: GateContext, d_value: float, se: float, limit: float, bar: float
                   ) -> tuple[str, float, float]:
    """(verdict, lower, upper) of an excess (candidate - stable) against a limit (fail) and a bar (pass)."""
    lower = d_value - ctx.fail_margin(se, bar, limit)
    upper = d_value + ctx.pass_margin(se, bar)
    if lower > limit:
        return "high", lower, upper
    if upper <= bar:
        return "pass", lower, upper
    return "nodata", lower, upper


def rate_gate(ctx: GateContext, name: str, group: str, what: str, value: Callable[[SampleRow], float | None],
              margin_of: Callable[[float], float], detectable: float, cap: float | None,
              served_only: bool = False) -> MetricCheck:
    """A rate (errors, complaints): fail when confidently above the stable's plus a margin (or a cap); pass when
    confidently below the stable's plus the step's bar.

    Pairs on the same requests where the other model answered them in shadow (``served_only``:
    never -- complaints follow what users were shown); else the served answers of the two
    populations, with the stable's clustering (``with_shared_design_effect``).
    """
    p = ctx.policy
    comp = compare(ctx, value, paired=False if served_only and ctx.populations_differ else None)
    if comp is not None and not comp.paired:
        comp = with_shared_design_effect(comp)
    population = population_of(comp, served_only)
    if comp is None or comp.units < p.min_units or comp.stable.units < p.min_units:
        units = 0 if comp is None else min(comp.units, comp.stable.units)
        return check(ctx, name, group, "nodata", None, None,
                     f"{what} not judged: {units} {unit_word(comp)} < {p.min_units} needed",
                     units, p.min_units, population)
    c, s, d = comp.candidate, comp.stable, comp.diff
    limit = margin_of(s.value)
    bar = max(limit, ctx.bar(detectable, cap=1.0))
    trials = c.observations
    # The cluster-robust SE carries the clustering; the smoothed floor only keeps "no event yet" from
    # meaning "no doubt" (with 0 errors in 300 requests an error rate of 2% is still possible).
    se = max(d.se, smoothed_rate_se(round(c.value * trials), trials, trials))
    cls, lower, upper = excess_verdict(ctx, d.value, se, limit, bar)
    units = comp.units
    counted = f"{units:,} {unit_word(comp)}"
    if cls == "high":
        return check(ctx, name, group, "high", s.value, c.value,
                     f"candidate {what} {pct(c.value)} > stable {pct(s.value)} + {pct(limit)} "
                     f"(excess at least {pct(lower)} at any-time confidence; {counted})", units,
                     population=population)
    if cap is not None and c.observations:
        x, n = round(c.value * c.observations), c.observations
        deff = max(1.0, n / units) if comp.effective_units else 1.0
        if log_e_above(x / deff, n / deff, cap) >= math.log(1 / ctx.alpha_fail):
            return check(ctx, name, group, "high", s.value, c.value,
                         f"candidate {what} {pct(c.value)} > limit {pct(cap)} ({x:,} of {n:,} requests, "
                         "confidently above at any-time confidence)", units, population=population)
    if cls == "nodata":
        needed = units_needed(se, units, ctx.se_to_pass(bar, max(d.value, 0.0)))
        return check(ctx, name, group, "nodata", s.value, c.value,
                     f"{what} not yet decided: candidate {pct(c.value)}, stable {pct(s.value)}; excess at most "
                     f"{pct(upper)} > bar {pct(bar)} ({counted}, ~{needed:,} needed)", units, needed, population)
    return check(ctx, name, group, "pass", s.value, c.value,
                 f"candidate {what} {pct(c.value)} (stable {pct(s.value)}; excess at most {pct(upper)} <= bar "
                 f"{pct(bar)}; {counted})", units, population=population)


def share_verdict(ctx: GateContext, x_fail: float, x_pass: float, n: float, limit: float, bar: float) -> str:
    """A count's share: fail when confidently above ``limit``, pass when confidently below ``bar`` (e-values)."""
    if n <= 0:
        return "nodata"
    if log_e_above(x_fail, n, limit) >= math.log(1 / ctx.alpha_fail):
        return "high"
    if log_e_below(x_pass, n, bar) >= math.log(1 / ctx.alpha_pass):
        return "pass"
    return "nodata"


def share_needed(share: float, bar: float, ctx: GateContext, have: int) -> int:
    """About how many units would show ``share`` under ``bar`` (at least the ones already seen)."""
    found = trials_to_show_below(share, bar, ctx.alpha_pass)
    return max(have, found or 0)


def two_sided(ctx: GateContext, d: Estimate, limit: float, bar: float) -> tuple[str, float, float]:
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
