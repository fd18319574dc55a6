"""The pure half of the collect step: the day's scan results (plain rows) folded into a ``DaySummary``.

``store.summary`` runs the scans (``domain.scan_rows.DayScans``) and hands their rows
here; everything is arithmetic on those rows: roll-ups and quantiles
(``domain.totals``), hash-sample thresholds, histograms scaled from the sample,
extremes, shadow pairing and feedback on the sampled rows (``domain.sampling``),
driven by ``collect_with`` and assembled by ``build_summary``. It is tested without a
database. Sizes stay bounded by the scans' results: a
few thousand groups and the sample, never the day's row count.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rollout_pipeline.domain.sampling import (
    bin_of,
    counted_histograms,
    duplicate_served,
    extreme_thresholds,
    in_sample,
    pairing_of,
    pick_extremes,
    prediction_edges,
    sample_of,
    sample_thresholds,
    scaled_histograms,
)
from rollout_pipeline.domain.scan_rows import (
    EXTREME_FETCH_MAX,
    FEEDBACK_WINDOW,
    HASH_BUCKETS,
    POPULATIONS,
    SAMPLE_REQUESTS,
    CountRow,
    DayScans,
    FeedbackAgg,
    FeedbackItem,
    Found,
    GroupRow,
    Key,
    LogRow,
    Moments,
    day_bounds,
)
from rollout_pipeline.domain.summary import DaySummary, Extreme, SampleRow
from rollout_pipeline.domain.totals import DayTotals, Totals, accumulate, apply_moments, variant_days

# The scans' rows and the folding steps, importable from here as before the split (store.summary, the tests).
__all__ = [
    "EXTREME_FETCH_MAX", "FEEDBACK_WINDOW", "HASH_BUCKETS", "POPULATIONS", "SAMPLE_REQUESTS", "CollectedDay",
    "CountRow", "DayScans", "DayTotals", "FeedbackAgg", "FeedbackItem", "Found", "GroupRow", "Key", "LogRow",
    "Moments", "Totals", "accumulate", "accuracy_sample", "apply_moments", "bin_of", "build_summary",
    "collect_with", "counted_histograms", "day_bounds", "duplicate_served", "extreme_thresholds", "in_sample",
    "pairing_of", "pick_extremes", "prediction_edges", "sample_of", "sample_thresholds", "scaled_histograms",
    "variant_days",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CollectedDay:
    """Everything the scans returned about one model's day, already reduced by the functions above."""

    model_name: str
    day: dt.date
    stable: str
    candidate: str
    totals: DayTotals
    thresholds: Mapping[Key, int]
    shadowing: bool
    edges: tuple[float, ...]
    histograms: Mapping[Key, Sequence[int]]  # exact counts; empty when they are to be scaled from the sample
    sample: tuple[SampleRow, ...]
    labels: tuple[CountRow, ...]
    feedback: tuple[FeedbackAgg, ...]
    extremes: tuple[Extreme, ...]
    accuracy_day: dt.date | None = None
    accuracy_sample: tuple[SampleRow, ...] = ()


def build_summary(day: CollectedDay, collect_seconds: float = 0.0) -> DaySummary:
    """The DaySummary of a collected day: per-variant stats, histograms (scaled from the sample when the day
    was sampled), pairing when shadows were logged, duplicate served ids, and the late-label sample."""
    stable, candidate = day.stable, day.candidate
    histograms = day.histograms
    sampled = any(t < HASH_BUCKETS for t in day.thresholds.values())
    if day.edges and sampled:
        histograms = scaled_histograms(day.sample, day.edges, {
            k: t.predictions for k, t in day.totals.by_key.items() if k[0] in (stable, candidate)})
    fraction = day.thresholds.get((stable, True), HASH_BUCKETS) / HASH_BUCKETS
    return DaySummary(
        model_name=day.model_name,
        day=day.day,
        stable_variant=stable,
        candidate_variant=candidate,
        variants=variant_days(day.totals, histograms, day.labels, day.feedback),
        prediction_edges=day.edges,
        pairing=pairing_of(day.sample, fraction) if day.shadowing else None,
        extremes=day.extremes,
        sample=day.sample,
        unknown_variants=tuple(sorted({k[0] for k in day.totals.by_key} - {stable, candidate})),
        collect_seconds=collect_seconds,
        duplicate_served_ids=duplicate_served(day.sample),
        accuracy_day=day.accuracy_day or day.day,
        accuracy_sample=day.accuracy_sample,
        sample_fraction=fraction,
        sample_fractions=tuple((v, s, t / HASH_BUCKETS) for (v, s), t in sorted(day.thresholds.items())),
    )


def collect_with(scans: DayScans, model_name: str, day: dt.date, stable: str, candidate: str, *,
                 sample_rows: int = SAMPLE_REQUESTS, top_k: int = 10,
                 accuracy_day: dt.date | None = None) -> DaySummary:
    """Summarize ``model_name``'s logs of ``day`` (UTC) for the stable and candidate variants through ``scans``.

    Two scans of the day (grouped aggregates; hash sample + extremes) plus small ones.
    With ``accuracy_day`` earlier than ``day``, ``accuracy_sample`` is the hash sample of
    that day's requests with the feedback that arrived by the end of ``day`` (late labels).
    """
    started = time.perf_counter()
    totals = accumulate(scans.grouped_rows(model_name, day), candidate)
    if totals.spoiled:  # rare (the log-quality suite holds such a day)
        apply_moments(totals, scans.finite_moments(model_name, day))
    thresholds, shadowing = sample_thresholds(totals.counts(), stable, candidate, sample_rows)
    edges = prediction_edges(totals, stable, candidate)
    histograms = {}
    if edges and all(t >= HASH_BUCKETS for t in thresholds.values()):
        # A day no larger than the sample gets exact counts; larger days scale them from the sample.
        histograms = counted_histograms(scans.prediction_bins(model_name, day, edges), stable, candidate)
    t_hi, t_lo = extreme_thresholds(totals.candidate_group_max, totals.candidate_group_min,
                                    totals.finite_predictions(candidate), top_k)
    rows, complete = scans.sample_and_extreme_rows(model_name, day, thresholds, candidate, t_hi, t_lo, sample_rows)
    found = []
    for side, threshold in (("high", t_hi), ("low", t_lo)):
        if threshold is not None and complete:
            found += pick_extremes(rows, candidate, side, threshold, top_k, scans.nulls_last)
        else:
            found += scans.extreme_side(model_name, day, candidate, side, top_k)
    lo, hi = day_bounds(day)
    sample = sample_of(rows, thresholds, scans.sample_feedback(model_name, rows, thresholds, lo,
                                                               hi + FEEDBACK_WINDOW))
    collected = CollectedDay(
        model_name=model_name, day=day, stable=stable, candidate=candidate, totals=totals,
        thresholds=thresholds, shadowing=shadowing, edges=edges, histograms=histograms, sample=sample,
        labels=tuple(scans.label_counts(model_name, day)) if totals.has_labels else (),
        feedback=tuple(scans.feedback_by_variant(model_name, day)),
        extremes=scans.with_stable_answers(model_name, day, stable, found),
    )
    if accuracy_day is not None and accuracy_day < day:
        collected = dataclasses.replace(
            collected, accuracy_day=accuracy_day,
            accuracy_sample=accuracy_sample(scans, model_name, accuracy_day, day, stable, candidate, sample_rows))
    seconds = time.perf_counter() - started
    summary = build_summary(collected, seconds)
    log.info("collected %s %s: %d rows in %d groups, sample %d rows, in %.2f s",
             model_name, day, summary.total_rows, len(summary.variants), len(sample), seconds)
    return summary


def accuracy_sample(scans: DayScans, model_name: str, accuracy_day: dt.date, day: dt.date,
                    stable: str, candidate: str, sample_rows: int) -> tuple[SampleRow, ...]:
    """The hash sample of ``accuracy_day``'s stable and candidate rows (same size and threshold rule as the
    day's) with their feedback up to the end of ``day``: the outcomes that had time to arrive."""
    thresholds, _ = sample_thresholds(scans.variant_counts(model_name, accuracy_day), stable, candidate, sample_rows)
    rows, _ = scans.sample_and_extreme_rows(model_name, accuracy_day, thresholds, candidate, None, None, sample_rows)
    lo, _ = day_bounds(accuracy_day)
    return sample_of(rows, thresholds, scans.sample_feedback(model_name, rows, thresholds, lo, day_bounds(day)[1]))
