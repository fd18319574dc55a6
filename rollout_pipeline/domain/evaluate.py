"""From a day summary to judged metrics: each one classified, explained and weighted.

Threshold metrics (SLO, error rate, extremes, complaints) are compared with the
policy's limits; distribution metrics (latency, predictions) go through the
Kayenta-style Mann-Whitney judge on the day's sample. Each metric explains its
verdict in one line, e.g. "candidate p99 412 ms > SLO 250 ms".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rollout_pipeline.domain.judge import classify_metric, score_metrics
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.domain.summary import DaySummary, VariantDay

MIN_RATE_REQUESTS = 50  # below this many requests a rate says too little to fail a critical metric


@dataclass(frozen=True)
class MetricCheck:
    """One metric's verdict: classification, group, criticality, the two values and why."""

    name: str
    group: str
    criticality: str
    classification: str  # pass | high | low | nodata
    stable: float | None
    candidate: float | None
    reason: str

    @property
    def failed(self) -> bool:
        return self.classification in ("high", "low")


@dataclass(frozen=True)
class Evaluation:
    """All metrics of a day, the judge score, and how much candidate data there was."""

    checks: tuple[MetricCheck, ...]
    score: float | None
    candidate_requests: int
    stable_requests: int
    compared: str  # "stable served vs candidate shadow" | "stable served vs candidate served"

    @property
    def critical_failures(self) -> list[str]:
        return [c.reason for c in self.checks if c.criticality == "critical" and c.failed]

    @property
    def failures(self) -> list[str]:
        return [c.reason for c in self.checks if c.failed and c.criticality != "report-only"]


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _num(x: float | None, unit: str = "") -> str:
    return "n/a" if x is None else f"{x:,.4g}{unit}"


def compared_sides(summary: DaySummary, stage: str) -> tuple[VariantDay | None, VariantDay | None, str]:
    if stage == "production":
        # After promotion the new model serves and the old one shadows it during the retention window.
        return (summary.get(summary.stable_variant, False), summary.get(summary.candidate_variant, True),
                "old stable shadow vs new stable (candidate) served")
    stable = summary.get(summary.stable_variant, True)
    if stage == "shadow":
        return stable, summary.get(summary.candidate_variant, False), "stable served vs candidate shadow"
    return stable, summary.get(summary.candidate_variant, True), "stable served vs candidate served"


def sample_values(summary: DaySummary, variant: str, served: bool, field: str) -> list[float]:
    """The finite values of ``field`` in the day's sample for one side (answered ``ok``; latencies >= 0)."""
    out = []
    for row in summary.sample:
        if row.variant == variant and row.served == served and row.status == "ok":
            value = getattr(row, field)
            if value is not None and math.isfinite(value) and (field != "latency_ms" or value >= 0):
                out.append(value)
    return out


def evaluate(summary: DaySummary, stage: str, policy: Policy) -> Evaluation:
    """Judge the candidate against the stable model on ``summary`` for a rollout in ``stage``."""
    stable, cand, compared = compared_sides(summary, stage)
    crit = policy.metrics
    cand_served = stage != "shadow"
    stable_served = stage != "production"
    checks: list[MetricCheck] = []

    def add(name, group, classification, s, c, reason):
        checks.append(MetricCheck(name, group, crit.get(name, "normal"), classification, s, c, reason))

    # Latency: the SLO and the allowed regression (thresholds), then the distribution (judge).
    s_p99 = stable.latency_p99 if stable else None
    c_p99 = cand.latency_p99 if cand else None
    if c_p99 is None:
        add("latency", "latency", "nodata", s_p99, None, "no candidate latency")
    elif c_p99 > policy.latency_slo_p99_ms:
        add("latency", "latency", "high", s_p99, c_p99, f"candidate p99 {c_p99:.0f} ms > SLO {policy.latency_slo_p99_ms:.0f} ms")
    elif s_p99 is not None and c_p99 > s_p99 * (1 + policy.latency_regression_allowed):
        limit = s_p99 * (1 + policy.latency_regression_allowed)
        add("latency", "latency", "high", s_p99, c_p99,
            f"candidate p99 {c_p99:.0f} ms > stable p99 {s_p99:.0f} ms + {policy.latency_regression_allowed:.0%} = {limit:.0f} ms")
    else:
        add("latency", "latency", "pass", s_p99, c_p99,
            f"candidate p99 {c_p99:.0f} ms within SLO {policy.latency_slo_p99_ms:.0f} ms (stable {_num(s_p99, ' ms')})")

    # Error rate (errors + timeouts).
    s_err = stable.error_rate if stable else None
    c_err = cand.error_rate if cand else None
    if c_err is None:
        add("error_rate", "errors", "nodata", s_err, None, "no candidate requests")
    elif cand.requests >= MIN_RATE_REQUESTS and c_err > policy.error_rate_limit:
        add("error_rate", "errors", "high", s_err, c_err,
            f"candidate error rate {_pct(c_err)} > limit {_pct(policy.error_rate_limit)} ({cand.errors} errors, {cand.timeouts} timeouts)")
    else:
        add("error_rate", "errors", "pass", s_err, c_err, f"candidate error rate {_pct(c_err)} (stable {_pct(s_err)})")

    # Extremes: candidate outputs outside the bounds (policy's, else 1x the stable range beyond it).
    s_vals = sample_values(summary, summary.stable_variant, stable_served, "prediction")
    c_vals = sample_values(summary, summary.candidate_variant, cand_served, "prediction")
    bounds = policy.prediction_bounds
    if bounds is None and stable and stable.prediction_min is not None:
        spread = max(stable.prediction_max - stable.prediction_min, abs(stable.prediction_max) * 0.1, 1e-9)
        bounds = (stable.prediction_min - spread, stable.prediction_max + spread)
    if not c_vals or bounds is None:
        add("extremes", "predictions", "nodata", None, None, "no candidate predictions to bound")
    else:
        outside = sum(1 for v in c_vals if not bounds[0] <= v <= bounds[1])
        nonfinite = cand.nonfinite_predictions if cand else 0
        share = (outside + nonfinite) / (len(c_vals) + nonfinite)
        where = f"outside [{bounds[0]:.4g}, {bounds[1]:.4g}]"
        if share > policy.extreme_share_limit and outside + nonfinite >= 2:
            add("extremes", "predictions", "high", None, share,
                f"candidate predictions {where}: {_pct(share)} of the sample > limit {_pct(policy.extreme_share_limit)}")
        else:
            add("extremes", "predictions", "pass", None, share, f"candidate predictions {where}: {_pct(share)}")

    # Prediction shift: Mann-Whitney on the sample, with the mean shift in stable standard deviations.
    if not s_vals or not c_vals:
        add("prediction_shift", "predictions", "nodata", None, None, "no predictions on one side")
    else:
        result = classify_metric(s_vals, c_vals, direction="either",
                                 fraction=policy.judge.tolerance_fraction, confidence=policy.judge.confidence)
        s_mean, c_mean = sum(s_vals) / len(s_vals), sum(c_vals) / len(c_vals)
        sd = stable.prediction_std if stable and stable.prediction_std else None
        shift = (c_mean - s_mean) / sd if sd else None
        within = shift is None or abs(shift) <= policy.prediction_shift_limit
        cls = result.classification if not within else "pass"
        detail = f"mean {s_mean:.4g} -> {c_mean:.4g}" + (f" ({shift:+.2f} sd)" if shift is not None else "")
        if cls == "pass":
            add("prediction_shift", "predictions", "pass", s_mean, c_mean, f"predictions {detail}, within {policy.prediction_shift_limit} sd")
        else:
            add("prediction_shift", "predictions", cls, s_mean, c_mean,
                f"predictions shifted {'up' if cls == 'high' else 'down'}: {detail} > {policy.prediction_shift_limit} sd (Mann-Whitney {result.classification})")

    # Latency distribution (judge): a regression the p99 alone may not show.
    s_lat = sample_values(summary, summary.stable_variant, stable_served, "latency_ms")
    c_lat = sample_values(summary, summary.candidate_variant, cand_served, "latency_ms")
    if s_lat and c_lat:
        # Kayenta's effect-size gate: a shift counts only past the allowed mean-latency ratio.
        result = classify_metric(s_lat, c_lat, direction="increase",
                                 fraction=policy.judge.tolerance_fraction, confidence=policy.judge.confidence,
                                 effect_size_thresholds=(1.0, 1.0 + policy.latency_regression_allowed))
        s_med, c_med = sorted(s_lat)[len(s_lat) // 2], sorted(c_lat)[len(c_lat) // 2]
        why = f"candidate median latency {c_med:.1f} ms vs stable {s_med:.1f} ms"
        checks.append(MetricCheck("latency_distribution", "latency", "normal" if crit.get("latency") != "report-only" else "report-only",
                                  result.classification, s_med, c_med,
                                  why + (" (Mann-Whitney: higher)" if result.classification == "high" else "")))

    # Label disagreement between the paired answers (classifiers, recommendations).
    pr = summary.pairing
    if stage == "shadow" and pr is not None and pr.disagreement_rate is not None:
        rate = pr.disagreement_rate
        cls = "high" if rate > policy.disagreement_limit else "pass"
        add("disagreement", "predictions", cls, None, rate,
            f"paired answers disagree on {_pct(rate)} > limit {_pct(policy.disagreement_limit)}" if cls == "high"
            else f"paired answers disagree on {_pct(rate)}")

    # Complaints: only served answers reach users.
    if cand_served and cand is not None and stable is not None:
        s_c, c_c = stable.complaint_rate, cand.complaint_rate
        limit = max(policy.complaint_rate_limit, (s_c or 0) * (1 + policy.complaint_regression_allowed))
        if cand.requests >= MIN_RATE_REQUESTS and c_c is not None and c_c > limit:
            add("complaints", "feedback", "high", s_c, c_c, f"candidate complaint rate {_pct(c_c)} > limit {_pct(limit)} (stable {_pct(s_c)})")
        else:
            add("complaints", "feedback", "pass", s_c, c_c, f"candidate complaint rate {_pct(c_c)} (stable {_pct(s_c)})")

    # Accuracy once actual outcomes have arrived. Paired answers (shadow, and the old model shadowing
    # after promotion) share their requests and outcomes; in canary each side serves different users
    # (sticky buckets), so a gap in accuracy says as much about the users as about the model: shown there,
    # not scored.
    def add_accuracy(classification, s, c, reason):
        if stage == "canary":
            checks.append(MetricCheck("accuracy", "quality", "report-only", classification, s, c,
                                      reason + " (canary: different users on each side; shown, not scored)"))
        else:
            add("accuracy", "quality", classification, s, c, reason)

    few = min(stable.actuals, cand.actuals) if stable is not None and cand is not None else 0
    if 0 < few < policy.required_requests:
        # A difference of means over a few dozen outcomes is noise (the 1% step sees that few).
        add_accuracy("nodata", None, None,
            f"accuracy not judged: {few} actual outcomes < {policy.required_requests} needed")
    elif stable is not None and cand is not None and stable.actuals and cand.actuals:
        if stable.abs_error_mean is not None and cand.abs_error_mean is not None:
            worse = cand.abs_error_mean > stable.abs_error_mean * 1.1
            add_accuracy("high" if worse else "pass", stable.abs_error_mean, cand.abs_error_mean,
                f"mean absolute error {cand.abs_error_mean:.4g} vs stable {stable.abs_error_mean:.4g}"
                + (" (> +10%)" if worse else ""))
        elif stable.label_accuracy is not None and cand.label_accuracy is not None:
            worse = cand.label_accuracy < stable.label_accuracy - 0.02
            add_accuracy("low" if worse else "pass", stable.label_accuracy, cand.label_accuracy,
                f"accuracy {_pct(cand.label_accuracy)} vs stable {_pct(stable.label_accuracy)}" + (" (< -2 points)" if worse else ""))

    scored = [c for c in checks if c.criticality != "report-only"]
    score = None
    if any(c.classification != "nodata" for c in scored):
        score = score_metrics(
            [(c.classification, c.group, c.criticality) for c in checks], dict(policy.group_weights)
        ).score
    if stage == "shadow":
        cand_requests = round(pr.matched / pr.sample_fraction) if pr is not None and pr.sample_fraction else 0
    else:
        cand_requests = cand.requests if cand else 0
    return Evaluation(tuple(checks), score, cand_requests, stable.requests if stable else 0, compared)
