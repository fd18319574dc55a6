"""The grouped scan's rows rolled up per (variant, served): counts, latency histogram, prediction moments,
and the per-variant statistics of the day summary built from them."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from rollout_pipeline.domain.scan_rows import CountRow, FeedbackAgg, GroupRow, Key, Moments, as_float
from rollout_pipeline.domain.summary import VariantDay, quantile_from_histogram

@dataclass
class Totals:
    """One (variant, served)'s day-wide aggregates, rolled up from the grouped scan."""

    requests: int = 0
    ok: int = 0
    errors: int = 0
    timeouts: int = 0
    unknown_status: int = 0
    shed: int = 0
    missing_cid: int = 0
    invalid_latency: int = 0
    null_outputs: int = 0
    lat_n: int = 0
    lat_sum: float = 0.0
    lat_max: float | None = None
    latency_histogram: dict[int, int] = field(default_factory=dict)
    predictions: int = 0
    pred_sum: float = 0.0
    pred_sq: float = 0.0
    pred_min: float | None = None
    pred_max: float | None = None
    nonfinite: int = 0
    labels: int = 0
    spoiled: bool = False  # a group held a non-finite prediction: its sums need Moments

    @property
    def prediction_mean(self) -> float | None:
        return self.pred_sum / self.predictions if self.predictions else None

    @property
    def prediction_std(self) -> float | None:
        if not self.predictions:
            return None
        mean = self.pred_sum / self.predictions
        return math.sqrt(max(self.pred_sq / self.predictions - mean * mean, 0.0))


@dataclass
class DayTotals:
    """The grouped scan rolled up: per (variant, served), plus the candidate's per-group extremes."""

    by_key: dict[Key, Totals]
    candidate_group_max: list[float]
    candidate_group_min: list[float]

    @property
    def spoiled(self) -> bool:
        return any(t.spoiled for t in self.by_key.values())

    @property
    def has_labels(self) -> bool:
        return any(t.labels for t in self.by_key.values())

    def counts(self) -> dict[Key, int]:
        return {k: t.requests for k, t in self.by_key.items()}

    def finite_predictions(self, variant: str) -> int:
        return sum(t.predictions for k, t in self.by_key.items() if k[0] == variant)


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def accumulate(rows: Iterable[GroupRow], candidate: str) -> DayTotals:
    """Roll the grouped scan's rows up per (variant, served); keep the candidate's clean groups' max and min."""
    by_key: dict[Key, Totals] = {}
    group_max: list[float] = []
    group_min: list[float] = []
    for r in rows:
        key = (r.variant, bool(r.served))
        t = by_key.get(key) or by_key.setdefault(key, Totals())
        n = int(r.n)
        t.requests += n
        t.ok += int(r.ok)
        t.errors += int(r.errors)
        t.timeouts += int(r.timeouts)
        shed = int(r.shed or 0)
        t.shed += shed
        t.unknown_status += n - int(r.ok) - int(r.errors) - int(r.timeouts) - shed
        t.missing_cid += int(r.missing_cid)
        t.labels += int(r.labels)
        t.null_outputs += int(r.null_outputs)
        if r.bucket is None:
            t.invalid_latency += n - shed  # shed calls have no bucket and no latency to be invalid
        else:
            b = int(r.bucket)
            t.latency_histogram[b] = t.latency_histogram.get(b, 0) + n
            t.lat_n += n
            t.lat_sum += float(r.lat_sum or 0.0)
            t.lat_max = _max(t.lat_max, as_float(r.lat_max))
        nonfinite = int(r.nonfinite)
        t.nonfinite += nonfinite
        t.predictions += int(r.pred_n) - nonfinite
        if nonfinite:
            t.spoiled = True
        elif r.pred_n:
            t.pred_sum += float(r.pred_sum)
            t.pred_sq += float(r.pred_sq)
            t.pred_min = _min(t.pred_min, as_float(r.pred_min))
            t.pred_max = _max(t.pred_max, as_float(r.pred_max))
            if r.variant == candidate:  # each group's max and min are real rows: see extreme_thresholds
                group_max.append(float(r.pred_max))
                group_min.append(float(r.pred_min))
    return DayTotals(by_key, group_max, group_min)


def apply_moments(totals: DayTotals, moments: Iterable[Moments]) -> None:
    """Replace the spoiled (variant, served)s' prediction sums and range by those of their finite predictions."""
    for m in moments:
        t = totals.by_key.get((m.variant, bool(m.served)))
        if t is not None and t.spoiled:
            t.pred_sum, t.pred_sq = as_float(m.pred_sum) or 0.0, as_float(m.pred_sq) or 0.0
            t.pred_min, t.pred_max = as_float(m.pred_min), as_float(m.pred_max)


def variant_days(totals: DayTotals, histograms: Mapping[Key, Sequence[int]],
                 labels: Iterable[CountRow], feedback: Iterable[FeedbackAgg]) -> tuple[VariantDay, ...]:
    """One VariantDay per (variant, served) seen, in (variant, served) order."""
    label_counts: dict[Key, list[tuple[str, int]]] = {}
    for r in labels:
        label_counts.setdefault((r.variant, bool(r.served)), []).append((str(r.key), int(r.n)))
    kinds: dict[Key, dict[str, FeedbackAgg]] = {}
    for r in feedback:
        kinds.setdefault((r.variant, bool(r.served)), {})[r.kind] = r
    out = []
    for key in sorted(totals.by_key):
        t = totals.by_key[key]
        fb = kinds.get(key, {})
        actual, complaint = fb.get("actual"), fb.get("complaint")
        out.append(VariantDay(
            variant=key[0],
            served=key[1],
            requests=t.requests,
            ok=t.ok,
            errors=t.errors,
            timeouts=t.timeouts,
            unknown_status=t.unknown_status,
            missing_correlation_id=t.missing_cid,
            invalid_latency=t.invalid_latency,
            latency_mean=t.lat_sum / t.lat_n if t.lat_n else None,
            latency_max=t.lat_max,
            latency_p50=quantile_from_histogram(t.latency_histogram, 0.50),
            latency_p95=quantile_from_histogram(t.latency_histogram, 0.95),
            latency_p99=quantile_from_histogram(t.latency_histogram, 0.99),
            predictions=t.predictions,
            prediction_mean=t.prediction_mean,
            prediction_std=t.prediction_std,
            prediction_min=t.pred_min,
            prediction_max=t.pred_max,
            nonfinite_predictions=t.nonfinite,
            prediction_histogram=tuple(histograms.get(key, ())),
            label_counts=tuple(label_counts.get(key, ())),
            complaints=complaint.n if complaint else 0,
            actuals=actual.n if actual else 0,
            abs_error_mean=as_float(actual.abs_error_mean) if actual else None,
            label_accuracy=as_float(actual.label_accuracy) if actual else None,
            broken_feedback=sum(int(r.broken) for r in fb.values()),
            null_outputs=t.null_outputs,
            latency_histogram=tuple(sorted(t.latency_histogram.items())),
            shed=t.shed,
        ))
    return tuple(out)
