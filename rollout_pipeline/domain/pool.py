"""The nights of a step pooled into one summary: whole-day counts summed, samples joined.

A canary step may need more than one night of traffic before it can tell (a 1%
step of a small service serves a few dozen requests a night). Nothing learnt on a
held night is thrown away: the step's nights are pooled, and the gates judge the
pool with bounds that stay valid however many nights are looked at
(``domain.sequential``). Entities keep their ids across nights, so a user seen on
three nights is one cluster in the pool, not three independent ones.

The pooled summary has the shape of a day's (``DaySummary``), so every gate reads
one record; fields that only make sense for one night (pairing, extremes,
duplicates) are the latest night's. Memory stays bounded by the sample sizes:
past ``POOL_SAMPLE_MAX`` rows the joined samples are thinned by a hash of the
correlation id, both answers to a request together.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from rollout_pipeline.domain.scan_rows import HASH_BUCKETS, blake2b_bucket
from rollout_pipeline.domain.summary import DaySummary, SampleRow, VariantDay, quantile_from_histogram

POOL_SAMPLE_MAX = 120_000  # sampled rows kept in a pool (each night's sample is already bounded)


@dataclasses.dataclass(frozen=True)
class PoolInfo:
    """What a pool holds, for the reasons and the review."""

    nights: int
    first_day: str
    last_day: str
    candidate_answers: int  # the candidate's logged answers (served and shadow), whole days
    candidate_served: int
    entities: int  # distinct entities the candidate served in the pooled sample

    def describe(self, step: str) -> str:
        """ "3 nights at canary 1% (2026-03-02..2026-03-04): 5,210 candidate answers (312 served), 41 entities"."""
        span = self.last_day if self.nights == 1 else f"{self.first_day}..{self.last_day}"
        night = "night" if self.nights == 1 else "nights"
        mirrored = self.candidate_served and self.candidate_served != self.candidate_answers
        served = f" ({self.candidate_served:,} served)" if mirrored else ""
        who = f", {self.entities:,} entities served" if self.candidate_served else ""
        return f"{self.nights} {night} at {step} ({span}): {self.candidate_answers:,} candidate answers{served}{who}"


def _weighted(pairs: Sequence[tuple[float | None, int]]) -> float | None:
    total = sum(w for v, w in pairs if v is not None and w)
    if not total:
        return None
    return sum(v * w for v, w in pairs if v is not None and w) / total


def merge_variant_days(days: Sequence[VariantDay]) -> VariantDay:
    """One side's whole-day records of several nights as one: counts summed, means weighted, histograms added."""
    first = days[0]
    if len(days) == 1:
        return first
    hist: dict[int, int] = {}
    for d in days:
        for bucket, count in d.latency_histogram:
            hist[bucket] = hist.get(bucket, 0) + count
    labels: dict[str, int] = {}
    for d in days:
        for label, count in d.label_counts:
            labels[label] = labels.get(label, 0) + count
    n_pred = sum(d.predictions for d in days)
    mean = _weighted([(d.prediction_mean, d.predictions) for d in days])
    std = None
    if n_pred and mean is not None:
        # Pooled variance: within-night variances plus the spread of the nightly means.
        ss = sum(d.predictions * ((d.prediction_std or 0.0) ** 2 + ((d.prediction_mean or 0.0) - mean) ** 2)
                 for d in days if d.predictions)
        std = math.sqrt(max(ss / n_pred, 0.0))
    lat_n = [(d.latency_mean, d.requests - d.invalid_latency) for d in days]
    mins = [d.prediction_min for d in days if d.prediction_min is not None]
    maxs = [d.prediction_max for d in days if d.prediction_max is not None]
    lat_max = [d.latency_max for d in days if d.latency_max is not None]
    return VariantDay(
        variant=first.variant, served=first.served,
        requests=sum(d.requests for d in days), ok=sum(d.ok for d in days), errors=sum(d.errors for d in days),
        timeouts=sum(d.timeouts for d in days), unknown_status=sum(d.unknown_status for d in days),
        missing_correlation_id=sum(d.missing_correlation_id for d in days),
        invalid_latency=sum(d.invalid_latency for d in days),
        latency_mean=_weighted(lat_n), latency_max=max(lat_max) if lat_max else None,
        latency_p50=quantile_from_histogram(hist, 0.50), latency_p95=quantile_from_histogram(hist, 0.95),
        latency_p99=quantile_from_histogram(hist, 0.99),
        predictions=n_pred, prediction_mean=mean, prediction_std=std,
        prediction_min=min(mins) if mins else None, prediction_max=max(maxs) if maxs else None,
        nonfinite_predictions=sum(d.nonfinite_predictions for d in days),
        prediction_histogram=(),  # each night has its own bin edges
        label_counts=tuple(sorted(labels.items(), key=lambda kv: (-kv[1], kv[0]))[:500]),
        complaints=sum(d.complaints for d in days), actuals=sum(d.actuals for d in days),
        abs_error_mean=_weighted([(d.abs_error_mean, d.actuals) for d in days]),
        label_accuracy=_weighted([(d.label_accuracy, d.actuals) for d in days]),
        null_outputs=sum(d.null_outputs for d in days),
        latency_histogram=tuple(sorted(hist.items())),
        shed=sum(d.shed for d in days),
    )


def thin(rows: tuple[SampleRow, ...], limit: int) -> tuple[SampleRow, ...]:
    """At most about ``limit`` rows, kept by a hash of the correlation id (both answers to a request together)."""
    if len(rows) <= limit:
        return rows
    keep = max(1, HASH_BUCKETS * limit // len(rows))
    return tuple(r for r in rows if (blake2b_bucket(r.correlation_id) or 0) < keep)


def pool(nights: Sequence[DaySummary], limit: int = POOL_SAMPLE_MAX) -> DaySummary:
    """The nights (oldest first) as one summary; one night is returned as it is."""
    if not nights:
        raise ValueError("nothing to pool")
    last = nights[-1]
    if len(nights) == 1:
        return last
    keys = sorted({(v.variant, v.served) for n in nights for v in n.variants})
    variants = tuple(merge_variant_days([v for n in nights if (v := n.get(*key)) is not None]) for key in keys)
    sample = thin(tuple(r for n in nights for r in n.sample), limit)
    outcomes = tuple(r for n in nights for r in n.outcome_sample())
    return dataclasses.replace(
        last, variants=variants, sample=sample,
        # The pool's outcome sample is the nights' own (late labels included), already joined.
        accuracy_day=None if all(n.outcome_sample() is n.sample for n in nights) else last.accuracy_day,
        accuracy_sample=thin(outcomes, limit) if any(n.outcome_sample() is not n.sample for n in nights) else (),
        collect_seconds=sum(n.collect_seconds for n in nights),
    )


def pool_info(nights: Sequence[DaySummary], candidate_sides: Sequence[tuple[str, bool]]) -> PoolInfo:
    """How much the pool holds of the candidate: its answers and served answers (whole days), entities served."""
    answers = served = 0
    for n in nights:
        for variant, is_served in candidate_sides:
            side = n.get(variant, is_served)
            if side is not None:
                answers += side.answers
                served += side.answers if is_served else 0
    entities = {r.entity_id for n in nights for r in n.sample
                if r.variant == n.candidate_variant and r.served and r.entity_id is not None}
    return PoolInfo(len(nights), nights[0].day.isoformat(), nights[-1].day.isoformat(), answers, served,
                    len(entities))
