"""The day's hash sample and what is read from it: per-population thresholds, the sampled rows with their
feedback, prediction histograms (counted or scaled from the sample), the candidate's extremes, and the
shadow pairing."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from rollout_pipeline.domain.scan_rows import (
    EXTREME_FETCH_MAX,
    HASH_BUCKETS,
    CountRow,
    FeedbackItem,
    Found,
    Key,
    LogRow,
    as_float,
)
from rollout_pipeline.domain.summary import PREDICTION_BINS, Pairing, SampleRow, finite
from rollout_pipeline.domain.totals import DayTotals

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

    cand = [r for r in rows if r.variant == candidate and finite(as_float(r.prediction))]
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
            outcome[item.correlation_id] = (as_float(item.value), item.label)
        elif item.kind == "complaint":
            complaints[item.correlation_id] = complaints.get(item.correlation_id, 0) + 1
    out = []
    for r in rows:
        if not in_sample(r.variant, r.served, r.bucket, thresholds):
            continue
        actual, actual_label = outcome.get(r.correlation_id, (None, None)) if r.correlation_id else (None, None)
        out.append(SampleRow(
            r.correlation_id, r.variant, bool(r.served), as_float(r.latency_ms), r.status, as_float(r.prediction), r.label,
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
