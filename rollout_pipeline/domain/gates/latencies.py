"""Latency gates: the candidate's p99 from the whole days' histograms, and Kayenta's rank test on the same requests."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from pydantic import Field

from rollout_pipeline.domain.formatting import num, pct
from rollout_pipeline.domain.gates.comparisons import share_needed, share_verdict
from rollout_pipeline.domain.gates.context import GateContext, MetricCheck, answer_sides, check, is_ok, ok_values
from rollout_pipeline.domain.gates.registry import Limits, gate
from rollout_pipeline.domain.judge import classify_metric
from rollout_pipeline.domain.ranges import MAX_FACTOR, MAX_LATENCY_MS
from rollout_pipeline.domain.sequential import log_e_above
from rollout_pipeline.domain.stats import quantile_ranks
from rollout_pipeline.domain.summary import (
    LATENCY_BINS_PER_E,
    VariantDay,
    finite,
    latency_bucket_upper,
    quantile_from_histogram,
)

LATENCY_QUANTILE = 0.99


class LatencyLimits(Limits):
    """``gates.latency``: the candidate's p99 against the SLO and the stable's p99."""

    slo_p99_ms: float | None = Field(250.0, gt=0, le=MAX_LATENCY_MS,
                                     description="candidate p99 bound above this fails; None: no SLO")
    bound_confidence: float = Field(
        0.95, gt=0.5, lt=1, description="the candidate's p99 is judged once the sample bounds it from above at this")
    regression_allowed: float | None = Field(
        0.2, ge=0, le=MAX_FACTOR,
        description="candidate p99 may exceed stable p99 by this fraction; None: not compared (baselines)")
    tail_detectable: float = Field(
        0.03, gt=0.01, lt=1, description="share of requests above the latency limit the rollout must stop (the p97)")

    flat_names = {"latency_slo_p99_ms": "slo_p99_ms", "latency_bound_confidence": "bound_confidence",
                  "latency_regression_allowed": "regression_allowed", "latency_tail_detectable": "tail_detectable"}


LATENCY_DOC = (
    "| `latency` (critical) | share of the candidate's answers (served and mirrored; whole days) above T = the SLO "
    "and the stable's p99 × (1 + `gates.latency.regression_allowed`), from the day's histograms | share above T "
    "confidently > 1% (the p99 is past T) | share above T confidently < `gates.latency.tail_detectable` 3% | "
    "`test_gate_verdicts[latency-*]`, `test_latency_check.py` |")
LATENCY_DISTRIBUTION_DOC = (
    "| `latency_distribution` (normal) | Kayenta's Mann-Whitney (exact Hodges–Lehmann, `judge.*`) on the same "
    "requests: pairs (shadow, mirrored canary, the watch). Between the populations of a canary that is not mirrored "
    "it is n/a: a rank test of the canary's few users against the stable's many reads who landed in the canary as a "
    "latency difference (it failed a healthy candidate once in the rollout benchmark); the p99 gate judges latency "
    "there | Kayenta's rule with the mean-ratio gate at 1 + `gates.latency.regression_allowed` (its effect-size gate "
    "keeps repeated looks from failing a healthy candidate) | Kayenta's pass (≥ `min_units` units) | "
    "`test_judge.py` (Kayenta's published cases) |")


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


@gate("latency", group="latency", criticality="critical", limits=LatencyLimits, order=10, doc=LATENCY_DOC)
def latency(ctx: GateContext) -> MetricCheck | None:
    """p99 latency: "p99 <= T" is "at most 1% of answers above T", a count of the whole days' histograms.

    T is the SLO and, when the policy compares, the stable's p99 (bounded from its own
    histogram) plus the allowed regression. Fails when the share above T is
    confidently over 1%; passes when it is confidently under the step's bar
    (``gates.latency.tail_detectable`` times the step's multiplier: a blow-up at the
    first step, the p97 before production). Latency is judged per request (the serving
    host, not the user, drives it), on every answer of the candidate's, mirrored ones
    included.
    """
    p, lim = ctx.policy, ctx.policy.gates.latency
    if lim.slo_p99_ms is None and lim.regression_allowed is None:
        return check(ctx, "latency", "latency", "n/a", None, None, "latency: no SLO and no regression limit set")
    s = ctx.summary
    cand_sides, stable_side = answer_sides(s, ctx.stage)
    cand = merged_histogram([s.get(*k) for k in cand_sides])
    stable = merged_histogram([s.get(*stable_side)])
    n = sum(cand.values())
    population = "answers" + (" served+mirrored" if len(cand_sides) > 1 else "") + ", whole days"
    if n < p.min_units:
        return check(ctx, "latency", "latency", "nodata", None, None,
                     f"p99 latency not judged: {n} candidate answers < {p.min_units}", n, p.min_units, population)
    c_p99 = quantile_from_histogram(cand, LATENCY_QUANTILE)
    s_p99 = quantile_from_histogram(stable, LATENCY_QUANTILE)
    limits = _latency_limits(ctx, stable, s_p99)
    if limits is None:
        return check(ctx, "latency", "latency", "nodata", s_p99, c_p99,
                     f"p99 latency not judged: {sum(stable.values())} stable answers bound no p99",
                     n, 0, population)
    limits_fail, limits_pass = limits
    limit_share = 1 - LATENCY_QUANTILE
    bar = ctx.bar(lim.tail_detectable, cap=0.5)
    for threshold, says in limits_fail:
        above = count_above(cand, threshold, surely=True)
        if log_e_above(above, n, limit_share) >= math.log(1 / ctx.alpha_fail):
            return check(ctx, "latency", "latency", "high", s_p99, c_p99,
                         f"candidate p99 {num(c_p99, ' ms')} > {says}: {above:,} of {n:,} answers above it "
                         f"({pct(above / n)}), confidently more than 1%", n, population=population)
    threshold, says = min(limits_pass)
    above = count_above(cand, threshold, surely=False)
    verdict = share_verdict(ctx, 0.0, above, n, limit_share, bar)
    if verdict != "pass":
        needed = share_needed(above / n, bar, ctx, n)
        return check(ctx, "latency", "latency", "nodata", s_p99, c_p99,
                     f"p99 latency not yet decided: {above:,} of {n:,} candidate answers above {says} "
                     f"({pct(above / n)}); showing under the bar {pct(bar)} needs ~{needed:,}", n, needed, population)
    return check(ctx, "latency", "latency", "pass", s_p99, c_p99,
                 f"candidate p99 {num(c_p99, ' ms')} within {says}: {above:,} of {n:,} answers above it "
                 f"({pct(above / n)}, confidently under the bar {pct(bar)})", n, population=population)


def _latency_limits(ctx: GateContext, stable: Mapping[int, int], s_p99: float | None
                    ) -> tuple[list[tuple[float, str]], list[tuple[float, str]]] | None:
    """The thresholds T to fail on and to pass under, each with how to say it; None: no limit can be set yet
    (no SLO, and too few stable answers to bound its p99)."""
    lim = ctx.policy.gates.latency
    limits_fail: list[tuple[float, str]] = []
    limits_pass: list[tuple[float, str]] = []
    if lim.slo_p99_ms is not None:
        limits_fail.append((lim.slo_p99_ms, f"SLO {lim.slo_p99_ms:,.0f} ms"))
        limits_pass.append((lim.slo_p99_ms, f"SLO {lim.slo_p99_ms:,.0f} ms"))
    if lim.regression_allowed is not None:
        bounds = histogram_quantile_bounds(stable, LATENCY_QUANTILE, ctx.z)
        if bounds is not None:
            lo, hi = bounds
            f = 1 + lim.regression_allowed
            limits_fail.append((hi * f, f"stable p99 {num(s_p99, ' ms')} (at most {hi:,.0f}) + "
                                        f"{lim.regression_allowed:.0%} = {hi * f:,.0f} ms"))
            limits_pass.append((lo * f, f"stable p99 {num(s_p99, ' ms')} (at least {lo:,.0f}) + "
                                        f"{lim.regression_allowed:.0%} = {lo * f:,.0f} ms"))
        elif lim.slo_p99_ms is None:
            return None
    return limits_fail, limits_pass


@gate("latency_distribution", group="latency", order=50, doc=LATENCY_DISTRIBUTION_DOC)
def latency_distribution(ctx: GateContext) -> MetricCheck | None:
    """Kayenta's Mann-Whitney on latency, on the same requests: pairs, or shadow's two samples of one traffic.

    Kayenta's rule is a fixed-sample one; what keeps it from failing a healthy candidate
    when it is looked at night after night is its effect-size gate: it only fails a
    candidate whose mean latency is at least ``1 + gates.latency.regression_allowed`` times
    the stable's. Between the two populations of a canary that is not mirrored it does
    not apply: a rank test of one side's users against the other's reads which users
    landed in a small canary (a handful of entities, or only anonymous requests, each of
    them one unit against the stable's many-request users) as a latency difference --
    the p99 gate judges latency there, per answer, on the whole days.
    """
    p, allowed = ctx.policy, ctx.policy.gates.latency.regression_allowed
    if len(ctx.pairs) >= p.min_units:
        obs = [(pr.stable.latency_ms, pr.candidate.latency_ms) for pr in ctx.pairs
               if is_ok(pr.stable) and is_ok(pr.candidate) and finite(pr.stable.latency_ms)
               and finite(pr.candidate.latency_ms) and pr.stable.latency_ms >= 0 and pr.candidate.latency_ms >= 0]
        s_vals, c_vals = [a for a, _ in obs], [b for _, b in obs]
        unit, population = "paired requests", "paired requests"
    elif not ctx.populations_differ:
        s_vals, c_vals = ok_values(ctx.stable_rows, "latency_ms"), ok_values(ctx.candidate_rows, "latency_ms")
        unit, population = "requests", "sampled requests"
    else:
        return check(ctx, "latency_distribution", "latency", "n/a", None, None,
                     "latency distribution compared on the same requests only: no mirrored answers (the p99 "
                     "gate judges latency per answer on the whole days)")
    n = min(len(s_vals), len(c_vals))
    if n < p.min_units:
        return check(ctx, "latency_distribution", "latency", "nodata", None, None,
                     f"latency distribution not judged: {n} {unit} < {p.min_units}", n, p.min_units, population)
    if allowed is None:
        return check(ctx, "latency_distribution", "latency", "n/a", None, None,
                     "latency distribution not compared (no regression limit: a baseline)")
    result = classify_metric(s_vals, c_vals, direction="increase", fraction=p.judge.tolerance_fraction,
                             confidence=p.judge.confidence,
                             effect_size_thresholds=(1.0, 1.0 + allowed))
    s_med, c_med = sorted(s_vals)[len(s_vals) // 2], sorted(c_vals)[len(c_vals) // 2]
    why = f"candidate median latency {c_med:.1f} ms vs stable {s_med:.1f} ms ({n:,} {unit})"
    cls = result.classification if result.classification in ("pass", "high", "low") else "nodata"
    return check(ctx, "latency_distribution", "latency", cls, s_med, c_med,
                 why + (" (Mann-Whitney: higher, mean ratio past the allowed regression)" if cls == "high" else ""),
                 n, population=population)
