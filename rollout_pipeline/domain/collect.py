"""The pure half of the collect step: the day's scan results (plain rows) folded into a ``DaySummary``.

``store.summary`` runs the scans and hands their rows here; everything below is
arithmetic on those rows (roll-ups, quantiles, histograms scaled from the sample,
hash-sample thresholds, extremes, shadow pairing, feedback on the sampled rows),
so it is tested without a database. Sizes stay bounded by the scans' results: a
few thousand groups and the sample, never the day's row count.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from rollout_pipeline.domain.summary import (
    PREDICTION_BINS,
    DaySummary,
    Extreme,
    Pairing,
    SampleRow,
    VariantDay,
    finite,
    quantile_from_histogram,
)

HASH_BUCKETS = 10_000  # correlation ids hash into 0..9999; a sample keeps the buckets below a threshold
POPULATIONS = 2  # the requests each variant served, each sampled to its own size (see sample_thresholds)
# Requests sampled per population at most (with their shadow twins: twice as many rows). A population this
# small is kept whole; the day's counts (latency histograms, errors, broken answers) are exact whatever its size.
SAMPLE_REQUESTS = 10_000
EXTREME_FETCH_MAX = 5_000  # candidate rows beyond the extreme thresholds fetched with the sample, at most
FEEDBACK_WINDOW = dt.timedelta(days=2)  # feedback about a day's requests may arrive until two days later

log = logging.getLogger(__name__)

Key = tuple[str, bool]  # (variant, served)


class GroupRow(NamedTuple):
    """One group of the grouped scan: a (variant, served, latency bucket)'s decomposable aggregates.

    ``bucket`` is None for rows without a valid latency. The prediction sums and
    min/max cover the finite, not absurd predictions when ``nonfinite`` is 0.
    """

    variant: str
    served: bool
    bucket: int | None
    n: int
    ok: int
    errors: int
    timeouts: int
    missing_cid: int
    labels: int
    null_outputs: int
    lat_sum: float | None
    lat_max: float | None
    pred_n: int
    nonfinite: int
    pred_sum: float | None
    pred_sq: float | None
    pred_min: float | None
    pred_max: float | None
    shed: int = 0  # shadow calls the mirror dropped (status ``shed``): neither an answer nor an unknown status


class Moments(NamedTuple):
    """A (variant, served)'s sums and range of its finite predictions (re-read when a group held a non-finite one)."""

    variant: str
    served: bool
    pred_sum: float | None
    pred_sq: float | None
    pred_min: float | None
    pred_max: float | None


class CountRow(NamedTuple):
    """A count per (variant, served, key): prediction-histogram bins or label values."""

    variant: str
    served: bool
    key: object
    n: int


class FeedbackAgg(NamedTuple):
    """Feedback of one kind about a (variant, served)'s requests: count, mean |prediction - actual|, label hit rate."""

    variant: str
    served: bool
    kind: str
    n: int
    abs_error_mean: float | None
    label_accuracy: float | None
    broken: int = 0  # rows whose value is NaN, infinite or |x| >= ABSURD_VALUE: counted, never averaged


class LogRow(NamedTuple):
    """A prediction-log row fetched by the sample scan, with its correlation id's hash bucket."""

    correlation_id: str | None
    variant: str
    served: bool
    entity_id: str | None
    latency_ms: float | None
    status: str | None
    prediction: float | None
    label: str | None
    ts: dt.datetime
    bucket: int | None


class FeedbackItem(NamedTuple):
    """One feedback row about a sampled request."""

    correlation_id: str
    kind: str
    ts: dt.datetime
    value: float | None
    label: str | None


class Found(NamedTuple):
    """A candidate output picked as one of the day's extremes."""

    side: str  # "high" | "low"
    correlation_id: str | None
    prediction: float
    ts: dt.datetime


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


def _f(value) -> float | None:
    return None if value is None else float(value)


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
            t.lat_max = _max(t.lat_max, _f(r.lat_max))
        nonfinite = int(r.nonfinite)
        t.nonfinite += nonfinite
        t.predictions += int(r.pred_n) - nonfinite
        if nonfinite:
            t.spoiled = True
        elif r.pred_n:
            t.pred_sum += float(r.pred_sum)
            t.pred_sq += float(r.pred_sq)
            t.pred_min = _min(t.pred_min, _f(r.pred_min))
            t.pred_max = _max(t.pred_max, _f(r.pred_max))
            if r.variant == candidate:  # each group's max and min are real rows: see extreme_thresholds
                group_max.append(float(r.pred_max))
                group_min.append(float(r.pred_min))
    return DayTotals(by_key, group_max, group_min)


def apply_moments(totals: DayTotals, moments: Iterable[Moments]) -> None:
    """Replace the spoiled (variant, served)s' prediction sums and range by those of their finite predictions."""
    for m in moments:
        t = totals.by_key.get((m.variant, bool(m.served)))
        if t is not None and t.spoiled:
            t.pred_sum, t.pred_sq = _f(m.pred_sum) or 0.0, _f(m.pred_sq) or 0.0
            t.pred_min, t.pred_max = _f(m.pred_min), _f(m.pred_max)


def sample_thresholds(counts: Mapping[Key, int], stable: str, candidate: str,
                      sample_rows: int) -> tuple[dict[Key, int], bool]:
    """Hash-bucket thresholds per side (variant, served) for a sample of ~sample_rows requests per population;
    whether shadows were logged.

    A population is the requests one variant served, with the other variant's shadow
    answers to them: both answers to a request are sampled together (one threshold),
    so pairs stay whole. Each population is sampled to its own size: all of it when it
    holds at most ``sample_rows`` requests (a 1% canary's, whatever the day's
    volume), else a bounded hash sample. So the candidate's few served answers are
    never diluted by the stable's many.
    """
    shadowing = counts.get((candidate, False), 0) > 0 or counts.get((stable, False), 0) > 0
    thresholds: dict[Key, int] = {}
    for served_by, mirror in ((stable, candidate), (candidate, stable)):
        n = max(counts.get((served_by, True), 0), counts.get((mirror, False), 0))
        t = HASH_BUCKETS if n <= sample_rows else max(1, HASH_BUCKETS * sample_rows // n)
        thresholds[(served_by, True)] = t
        thresholds[(mirror, False)] = t
    return thresholds, shadowing


def in_sample(variant: str, served: bool, bucket: int | None, thresholds: Mapping[Key, int]) -> bool:
    """Whether a row of (variant, served) whose correlation id hashes to ``bucket`` belongs to the sample."""
    return bucket is not None and bucket < thresholds.get((variant, bool(served)), -1)


def prediction_edges(totals: DayTotals, stable: str, candidate: str) -> tuple[float, ...]:
    """PREDICTION_BINS equal bins over the stable's and candidate's finite predictions; () when there are none."""
    ours = [t for k, t in totals.by_key.items() if k[0] in (stable, candidate) and t.predictions]
    if not ours:
        return ()
    low, high = min(t.pred_min for t in ours), max(t.pred_max for t in ours)
    if high <= low:
        high = low + 1.0
    width = (high - low) / PREDICTION_BINS
    return tuple(low + k * width for k in range(PREDICTION_BINS + 1))


def bin_of(prediction: float, edges: Sequence[float]) -> int:
    """The histogram bin of a finite prediction (values at or beyond the edges land in the end bins)."""
    low, high = edges[0], edges[-1]
    if prediction >= high:
        return PREDICTION_BINS - 1
    width = (high - low) / PREDICTION_BINS
    return min(max(int(math.floor((prediction - low) / width)), 0), PREDICTION_BINS - 1)


def counted_histograms(rows: Iterable[CountRow], stable: str, candidate: str) -> dict[Key, list[int]]:
    """Exact prediction histograms from a scan's (variant, served, bin, n) rows; NULL bins (non-finite) left out."""
    out: dict[Key, list[int]] = {}
    for r in rows:
        if r.key is None or r.variant not in (stable, candidate):
            continue
        hist = out.setdefault((r.variant, bool(r.served)), [0] * PREDICTION_BINS)
        hist[min(max(int(r.key), 0), PREDICTION_BINS - 1)] += int(r.n)
    return out


def scaled_histograms(sample: Iterable[SampleRow], edges: Sequence[float],
                      day_counts: Mapping[Key, int]) -> dict[Key, list[int]]:
    """Prediction histograms counted on the hash sample, scaled to the day's counts (largest remainder).

    A bin holding a share q of a variant's m sampled predictions is off by about
    sqrt(q (1 - q) / m) of the day's count (1 standard error): +-0.15 percentage point
    for a 5% bin with m = 20,000.
    """
    counted: dict[Key, list[int]] = {}
    for r in sample:
        if (r.variant, r.served) in day_counts and finite(r.prediction):
            counted.setdefault((r.variant, r.served), [0] * PREDICTION_BINS)[bin_of(r.prediction, edges)] += 1
    out = {}
    for key, total in day_counts.items():
        hist = counted.get(key)
        if not total or not hist:
            continue
        m = sum(hist)
        exact = [c * total / m for c in hist]
        scaled = [int(x) for x in exact]
        for j in sorted(range(PREDICTION_BINS), key=lambda j: scaled[j] - exact[j])[:total - sum(scaled)]:
            scaled[j] += 1
        out[key] = scaled
    return out


def extreme_thresholds(group_max: Sequence[float], group_min: Sequence[float], finite: int,
                       k: int) -> tuple[float | None, float | None]:
    """Prediction thresholds with at least k candidate rows at or beyond them, from the grouped scan's groups.

    Each latency-bucket group's max (min) is the prediction of a real row, so the k-th
    largest group max has at least k rows at or above it; the rows above it are few
    when latency and prediction are not tied together (tens at 5M rows). None: find that
    side by a sorted query (fewer than k clean groups and too many rows to fetch them
    all, or nothing to find).
    """
    if finite == 0 or k <= 0:
        return None, None
    if len(group_max) >= k:
        return sorted(group_max, reverse=True)[k - 1], sorted(group_min)[k - 1]
    if finite <= EXTREME_FETCH_MAX:
        return -math.inf, math.inf  # every candidate row: there are few
    return None, None


def pick_extremes(rows: Iterable[LogRow], candidate: str, side: str, threshold: float, k: int,
                  nulls_last: bool) -> list[Found]:
    """The k candidate outputs at or beyond ``threshold`` on ``side``, most extreme first.

    Ties are broken by correlation id as the database sorts it (``nulls_last``: PostgreSQL).
    """
    def cid_order(r: LogRow):
        return (r.correlation_id is None) == nulls_last, r.correlation_id or ""

    cand = [r for r in rows if r.variant == candidate and finite(_f(r.prediction))]
    if side == "high":
        picked = sorted((r for r in cand if r.prediction >= threshold), key=lambda r: (-r.prediction, *cid_order(r)))
    else:
        picked = sorted((r for r in cand if r.prediction <= threshold), key=lambda r: (r.prediction, *cid_order(r)))
    return [Found(side, r.correlation_id, float(r.prediction), r.ts) for r in picked[:k]]


def sample_of(rows: Iterable[LogRow], thresholds: Mapping[Key, int],
              feedback: Iterable[FeedbackItem] = ()) -> tuple[SampleRow, ...]:
    """The rows of the hash sample (bucket below their variant's threshold), each with its request's feedback.

    Feedback is per request: both halves of a shadow pair get the same. ``actual`` is
    the latest ``actual`` row (value and label); ``complaints`` counts ``complaint`` rows.
    """
    outcome: dict[str, tuple[float | None, str | None]] = {}
    complaints: dict[str, int] = {}
    for item in sorted(feedback, key=lambda f: (f.ts, f.kind)):
        if item.kind == "actual":
            outcome[item.correlation_id] = (_f(item.value), item.label)
        elif item.kind == "complaint":
            complaints[item.correlation_id] = complaints.get(item.correlation_id, 0) + 1
    out = []
    for r in rows:
        if not in_sample(r.variant, r.served, r.bucket, thresholds):
            continue
        actual, actual_label = outcome.get(r.correlation_id, (None, None)) if r.correlation_id else (None, None)
        out.append(SampleRow(
            r.correlation_id, r.variant, bool(r.served), _f(r.latency_ms), r.status, _f(r.prediction), r.label,
            entity_id=r.entity_id, actual=actual, actual_label=actual_label,
            complaints=complaints.get(r.correlation_id, 0) if r.correlation_id else 0,
        ))
    return tuple(out)


def duplicate_served(sample: Iterable[SampleRow]) -> int:
    """Served rows of the sample whose correlation id an earlier served row has (the hash sample keeps
    every row of a sampled correlation id, so within it the count is exact)."""
    seen: set[str] = set()
    duplicates = 0
    for row in sample:
        if row.served and row.correlation_id:
            duplicates += row.correlation_id in seen
            seen.add(row.correlation_id)
    return duplicates


def pairing_of(sample: Sequence[SampleRow], fraction: float) -> Pairing:
    """Shadow pairing on the hash sample: each shadow answer matched with the served answer of its request."""
    served: dict[str, SampleRow] = {}
    duplicates = 0
    for row in sample:
        if row.served and row.correlation_id is not None:
            if row.correlation_id in served:
                duplicates += 1
            served[row.correlation_id] = row
    shadows = [r for r in sample if not r.served and r.correlation_id is not None]
    pairs = [(served[s.correlation_id], s) for s in shadows if s.correlation_id in served]
    diffs = [s.prediction - v.prediction for v, s in pairs if finite(s.prediction) and finite(v.prediction)]
    labelled = [(v.label, s.label) for v, s in pairs if v.label is not None and s.label is not None]
    shadow_in_sample = sum(1 for r in sample if not r.served)
    return Pairing(
        sample_fraction=fraction,
        served_in_sample=sum(1 for r in sample if r.served),
        shadow_in_sample=shadow_in_sample,
        matched=len(pairs),
        unmatched_shadow=shadow_in_sample - len(pairs),
        duplicate_correlation_ids=duplicates,
        diff_abs_mean=sum(abs(d) for d in diffs) / len(diffs) if diffs else None,
        disagreement_rate=(sum(1 for a, b in labelled if a != b) / len(labelled)) if labelled else None,
    )


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
            abs_error_mean=_f(actual.abs_error_mean) if actual else None,
            label_accuracy=_f(actual.label_accuracy) if actual else None,
            broken_feedback=sum(int(r.broken) for r in fb.values()),
            null_outputs=t.null_outputs,
            latency_histogram=tuple(sorted(t.latency_histogram.items())),
            shed=t.shed,
        ))
    return tuple(out)


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


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a UTC day."""
    lo = dt.datetime.combine(day, dt.time(), dt.UTC)
    return lo, lo + dt.timedelta(days=1)


class DayScans(Protocol):
    """The scans of one log store over one model's day, each returning the plain rows above.

    Two implementations: SQL on the pipeline's database (``store.summary.SqlScans``) and
    Spark SQL over Parquet (``store.spark_summary.SparkScans``). ``collect_with`` drives
    either the same way, so both give the same ``DaySummary`` for the same rows.
    """

    nulls_last: bool  # NULL correlation ids sort last (PostgreSQL's order; SQLite sorts them first)

    def grouped_rows(self, model_name: str, day: dt.date) -> list[GroupRow]: ...

    def finite_moments(self, model_name: str, day: dt.date) -> list[Moments]: ...

    def variant_counts(self, model_name: str, day: dt.date) -> dict[Key, int]: ...

    def prediction_bins(self, model_name: str, day: dt.date, edges: tuple[float, ...]) -> list[CountRow]: ...

    def sample_and_extreme_rows(self, model_name: str, day: dt.date, thresholds: dict[Key, int], candidate: str,
                                t_hi: float | None, t_lo: float | None,
                                sample_rows: int) -> tuple[list[LogRow], bool]: ...

    def extreme_side(self, model_name: str, day: dt.date, candidate: str, side: str, k: int) -> list[Found]: ...

    def with_stable_answers(self, model_name: str, day: dt.date, stable: str,
                            found: list[Found]) -> tuple[Extreme, ...]: ...

    def label_counts(self, model_name: str, day: dt.date) -> list[CountRow]: ...

    def feedback_by_variant(self, model_name: str, day: dt.date) -> list[FeedbackAgg]: ...

    def sample_feedback(self, model_name: str, rows: list[LogRow], thresholds: dict[Key, int],
                        lo: dt.datetime, hi: dt.datetime) -> list[FeedbackItem]: ...


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
