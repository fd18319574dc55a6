"""The day-summary queries: a model's day reduced to aggregates and a bounded sample.

Everything is computed SQL-side (grouped aggregates and histograms); only small
result sets and a hash sample of at most ``sample_rows`` rows per variant come
back, so memory does not grow with the day's row count. The same queries run on
PostgreSQL and SQLite; the few functions SQLite lacks are registered on its
connections by ``store.engine``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from rollout_pipeline.domain.summary import (
    ABSURD_VALUE,
    LATENCY_BINS_PER_E,
    PREDICTION_BINS,
    DaySummary,
    Extreme,
    Pairing,
    SampleRow,
    VariantDay,
    quantile_from_histogram,
)
from rollout_pipeline.store.partitions import analyze_stale_day
from rollout_pipeline.store.tables import feedback, prediction_log

log = logging.getLogger(__name__)

HASH_BUCKETS = 10_000
FEEDBACK_WINDOW = dt.timedelta(days=2)  # feedback about a day's requests may arrive until two days later
EXTREME_FETCH_MAX = 5_000  # candidate rows beyond the extreme thresholds fetched with the sample, at most
STABLE_ANSWER_WINDOW = dt.timedelta(minutes=1)  # an extreme's stable answer is searched this close in time


class hash_bucket(FunctionElement):
    """A stable hash of a text into 0..9999 (both halves of a shadow pair land in the same bucket)."""

    type = sa.Integer()
    inherit_cache = True


@compiles(hash_bucket, "postgresql")
def _hash_bucket_pg(element, compiler, **kw):
    return f"mod(abs(hashtext({compiler.process(element.clauses, **kw)})::bigint), {HASH_BUCKETS})"


@compiles(hash_bucket, "sqlite")
def _hash_bucket_sqlite(element, compiler, **kw):
    return f"rp_hash_bucket({compiler.process(element.clauses, **kw)})"


class ln1p(FunctionElement):
    """ln(1 + x)."""

    type = sa.Float()
    inherit_cache = True


@compiles(ln1p, "postgresql")
def _ln1p_pg(element, compiler, **kw):
    return f"ln(1 + {compiler.process(element.clauses, **kw)})"


@compiles(ln1p, "sqlite")
def _ln1p_sqlite(element, compiler, **kw):
    return f"rp_ln1p({compiler.process(element.clauses, **kw)})"


class unindexed(FunctionElement):
    """A column the SQLite planner must not pick an index for (unary +); plain elsewhere.

    SQLite otherwise drives the feedback join from feedback's (model_name, ts)
    index and rescans it for every prediction row: O(n*m), minutes at 16k rows.
    """

    inherit_cache = True

    def __init__(self, column):
        super().__init__(column)
        self.type = column.type


@compiles(unindexed)
def _unindexed_default(element, compiler, **kw):
    return compiler.process(element.clauses, **kw)


@compiles(unindexed, "sqlite")
def _unindexed_sqlite(element, compiler, **kw):
    return f"+{compiler.process(element.clauses, **kw)}"


def _finite(column, dialect: str):
    """True for a finite, not absurd number (|x| < ABSURD_VALUE). In PostgreSQL NaN sorts above
    +Infinity, so the two comparisons also exclude NaN; SQLite stores NaN as NULL."""
    return sa.and_(column.is_not(None), column < ABSURD_VALUE, column > -ABSURD_VALUE)


def _valid_latency(column, dialect: str):
    """A finite latency >= 0 and below ABSURD_VALUE (two comparisons: in PostgreSQL NaN sorts above +Infinity)."""
    return sa.and_(column >= 0, column < ABSURD_VALUE)


def _finite_fast(column, dialect: str):
    """True for a finite, not absurd number, NULL for NULL (NaN sorts above everything in PostgreSQL)."""
    return sa.and_(column < ABSURD_VALUE, column > -ABSURD_VALUE)


def _nonfinite(column, dialect: str):
    """True for NaN, the infinities and absurd numbers (|x| >= ABSURD_VALUE); NULL for NULL."""
    return sa.or_(column >= ABSURD_VALUE, column <= -ABSURD_VALUE)


@dataclass
class _Acc:
    """One (variant, served)'s day-wide aggregates, rolled up from the grouped scan."""

    requests: int = 0
    ok: int = 0
    errors: int = 0
    timeouts: int = 0
    unknown_status: int = 0
    missing_cid: int = 0
    invalid_latency: int = 0
    lat_n: int = 0
    lat_sum: float = 0.0
    lat_max: float | None = None
    predictions: int = 0
    pred_sum: float = 0.0
    pred_sq: float = 0.0
    pred_min: float | None = None
    pred_max: float | None = None
    nonfinite: int = 0
    labels: int = 0


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a UTC day."""
    lo = dt.datetime.combine(day, dt.time(), dt.UTC)
    return lo, lo + dt.timedelta(days=1)


def collect_day(
    connection: sa.Connection,
    model_name: str,
    day: dt.date,
    stable_variant: str,
    candidate_variant: str,
    *,
    sample_rows: int = 20_000,
    top_k: int = 10,
) -> DaySummary:
    """Summarize ``model_name``'s logs of ``day`` (UTC) for the stable and candidate variants."""
    return _collect_day(connection, model_name, day, stable_variant, candidate_variant, sample_rows, top_k)


def _collect_day(connection, model_name, day, stable_variant, candidate_variant, sample_rows, top_k) -> DaySummary:
    started = time.perf_counter()
    dialect = connection.dialect.name
    analyze_stale_day(connection.engine, "prediction_log", day)
    p = prediction_log.c
    lo, hi = day_bounds(day)
    in_day = sa.and_(p.model_name == model_name, p.ts >= lo, p.ts < hi)
    valid_latency = _valid_latency(p.latency_ms, dialect)
    finite_prediction = _finite(p.prediction, dialect)

    # 1. One scan for the day-wide aggregates AND the latency histogram: grouped by variant,
    #    served and latency bucket, with only decomposable aggregates (counts, sums, min,
    #    max) that are rolled up here. The latency bucket is the only computed grouping
    #    key on purpose: PostgreSQL has no statistics on the partitioned parent
    #    (autovacuum never analyzes it) and guesses 200 values per key, so one more
    #    computed key makes it expect millions of groups and sort the day (external merge,
    #    ~5x slower) instead of hashing ~1,000 groups in parallel workers.
    bucket = sa.case((valid_latency, sa.cast(sa.func.floor(ln1p(p.latency_ms) * LATENCY_BINS_PER_E), sa.Integer)))
    with _settings(connection, **GROUPED_SCAN_SETTINGS):
        grouped = connection.execute(
            sa.select(
                p.variant, p.served, bucket.label("b"),
                sa.func.count().label("n"),
                sa.func.count().filter(p.status == "ok").label("ok"),
                sa.func.count().filter(p.status == "error").label("errors"),
                sa.func.count().filter(p.status == "timeout").label("timeouts"),
                sa.func.count().filter(sa.or_(p.correlation_id.is_(None), p.correlation_id == "")).label("missing_cid"),
                sa.func.count(p.label).label("labels"),
                sa.func.sum(p.latency_ms).filter(valid_latency).label("lat_sum"),  # 2 x 1e308 overflows
                sa.func.max(p.latency_ms).label("lat_max"),
                sa.func.count(p.prediction).label("pred_n"),
                sa.func.count().filter(_nonfinite(p.prediction, dialect)).label("nonfinite"),
                # Sums of the finite, not absurd predictions only: in PostgreSQL 1e200 * 1e200 is an error.
                sa.func.sum(p.prediction).filter(_finite_fast(p.prediction, dialect)).label("pred_sum"),
                sa.func.sum(p.prediction * p.prediction).filter(_finite_fast(p.prediction, dialect)).label("pred_sq"),
                sa.func.min(p.prediction).label("pred_min"),
                sa.func.max(p.prediction).label("pred_max"),
            )
            .where(in_day)
            .group_by(p.variant, p.served, bucket)
        ).all()
    agg: dict[tuple[str, bool], _Acc] = {}
    lat_hist: dict[tuple[str, bool], dict[int, int]] = defaultdict(dict)
    spoiled: set[tuple[str, bool]] = set()
    cand_group_max: list[float] = []
    cand_group_min: list[float] = []
    for r in grouped:
        key = (r.variant, bool(r.served))
        acc = agg.get(key) or agg.setdefault(key, _Acc())
        n = int(r.n)
        acc.requests += n
        acc.ok += int(r.ok)
        acc.errors += int(r.errors)
        acc.timeouts += int(r.timeouts)
        acc.unknown_status += n - int(r.ok) - int(r.errors) - int(r.timeouts)
        acc.missing_cid += int(r.missing_cid)
        acc.labels += int(r.labels)
        if r.b is None:
            acc.invalid_latency += n
        else:
            b = int(r.b)
            lat_hist[key][b] = lat_hist[key].get(b, 0) + n
            acc.lat_n += n
            acc.lat_sum += float(r.lat_sum)
            acc.lat_max = _max(acc.lat_max, _f(r.lat_max))
        nonfinite = int(r.nonfinite)
        acc.nonfinite += nonfinite
        acc.predictions += int(r.pred_n) - nonfinite
        if nonfinite:
            spoiled.add(key)
        elif r.pred_n:
            acc.pred_sum += float(r.pred_sum)
            acc.pred_sq += float(r.pred_sq)
            acc.pred_min = _min(acc.pred_min, _f(r.pred_min))
            acc.pred_max = _max(acc.pred_max, _f(r.pred_max))
            if r.variant == candidate_variant:  # each group's max and min are real rows: see _extreme_thresholds
                cand_group_max.append(float(r.pred_max))
                cand_group_min.append(float(r.pred_min))
    if spoiled:
        # Rare (the log-quality suite holds such a day): the moments of the finite predictions only.
        for r in connection.execute(
            sa.select(
                p.variant, p.served,
                sa.func.sum(p.prediction).label("pred_sum"),
                sa.func.sum(p.prediction * p.prediction).label("pred_sq"),
                sa.func.min(p.prediction).label("pred_min"),
                sa.func.max(p.prediction).label("pred_max"),
            )
            .where(in_day, finite_prediction)
            .group_by(p.variant, p.served)
        ):
            key = (r.variant, bool(r.served))
            if key in spoiled:
                acc = agg[key]
                acc.pred_sum, acc.pred_sq = _f(r.pred_sum) or 0.0, _f(r.pred_sq) or 0.0
                acc.pred_min, acc.pred_max = _f(r.pred_min), _f(r.pred_max)
    has_labels = any(a.labels for a in agg.values())
    keys = sorted(agg)

    # 2. Prediction histogram on edges shared by stable and candidate. When the day is
    #    larger than the sample, it is counted on the hash sample (scan 2, below) and
    #    scaled to the day's counts: one scan less. Smaller days get exact counts from a
    #    scan of their own (the non-finite land in a NULL bucket, so the planner sees the
    #    whole day and hashes).
    counts = {k: agg[k].requests for k in keys}
    per_variant, shadowing = _sample_thresholds(counts, stable_variant, candidate_variant, sample_rows)
    sampled = any(t < HASH_BUCKETS for t in per_variant.values())
    ours = [agg[k] for k in keys if k[0] in (stable_variant, candidate_variant) and agg[k].predictions]
    edges: tuple[float, ...] = ()
    pred_hist: dict[tuple[str, bool], list[int]] = {}
    if ours:
        low, high = min(a.pred_min for a in ours), max(a.pred_max for a in ours)
        if high <= low:
            high = low + 1.0
        width = (high - low) / PREDICTION_BINS
        edges = tuple(low + k * width for k in range(PREDICTION_BINS + 1))
    if edges and not sampled:
        pbucket = sa.case(  # NULLs first: SQLite may have Python's math.floor as floor(), which rejects NULL
            (sa.or_(p.prediction.is_(None), sa.not_(_finite_fast(p.prediction, dialect))), None),
            (p.prediction >= high, PREDICTION_BINS - 1),
            else_=sa.cast(sa.func.floor((p.prediction - low) / width), sa.Integer),
        )
        with _settings(connection, **GROUPED_SCAN_SETTINGS):
            counted = connection.execute(  # every variant: cheaper than filtering on the text column
                sa.select(p.variant, p.served, pbucket.label("b"), sa.func.count().label("n"))
                .where(in_day)
                .group_by(p.variant, p.served, pbucket)
            ).all()
        for r in counted:
            if r.b is None or r.variant not in (stable_variant, candidate_variant):
                continue
            hist = pred_hist.setdefault((r.variant, bool(r.served)), [0] * PREDICTION_BINS)
            hist[min(max(int(r.b), 0), PREDICTION_BINS - 1)] += int(r.n)

    # 3. Scan 2: the hash sample and the candidate's extreme outputs together.
    cand_finite = sum(agg[k].predictions for k in keys if k[0] == candidate_variant)
    thresholds = _extreme_thresholds(cand_group_max, cand_group_min, cand_finite, top_k)
    sample, pairing, extremes = _sample_and_extremes(
        connection, in_day, per_variant, shadowing, stable_variant, candidate_variant, sample_rows,
        finite_prediction, thresholds, top_k,
    )
    if edges and sampled:
        pred_hist = _scaled_histograms(sample, edges, {k: agg[k].predictions for k in keys
                                                       if k[0] in (stable_variant, candidate_variant)})

    # 4. Label distributions (the most frequent labels; item lists make many distinct ones).
    #    Skipped (no scan) when step 1 saw no label at all, as for numeric models.
    labels: dict[tuple[str, bool], list[tuple[str, int]]] = defaultdict(list)
    for r in connection.execute(
        sa.select(p.variant, p.served, p.label, sa.func.count().label("n"))
        .where(in_day, p.label.is_not(None))
        .group_by(p.variant, p.served, p.label)
        .order_by(sa.desc("n"))
        .limit(500)
    ) if has_labels else ():
        labels[(r.variant, bool(r.served))].append((r.label, int(r.n)))

    # 5. Feedback about the day's requests, joined on correlation id.
    f = feedback.c
    fb: dict[tuple[str, bool], dict[str, tuple[int, float | None, float | None]]] = defaultdict(dict)
    with _settings(connection, **FEEDBACK_JOIN_SETTINGS):
        feedback_rows = connection.execute(
            sa.select(
                p.variant,
                p.served,
                f.kind,
                sa.func.count().label("n"),
                sa.func.avg(sa.case((sa.and_(finite_prediction, f.value.is_not(None)), sa.func.abs(p.prediction - f.value)))).label("abs_err"),
                sa.func.avg(sa.case((f.label.is_not(None), sa.case((p.label == f.label, 1.0), else_=0.0)))).label("acc"),
            )
            .select_from(feedback.join(prediction_log, p.correlation_id == f.correlation_id))
            .where(in_day, unindexed(f.model_name) == model_name, unindexed(f.ts) >= lo,
                   unindexed(f.ts) < hi + FEEDBACK_WINDOW)
            .group_by(p.variant, p.served, f.kind)
        ).all()
    for r in feedback_rows:
        fb[(r.variant, bool(r.served))][r.kind] = (int(r.n), _f(r.abs_err), _f(r.acc))

    variants = []
    for key in keys:
        a = agg[key]
        hist = lat_hist.get(key, {})
        mean = a.pred_sum / a.predictions if a.predictions else None
        std = math.sqrt(max(a.pred_sq / a.predictions - mean * mean, 0.0)) if a.predictions else None
        kinds = fb.get(key, {})
        actual = kinds.get("actual", (0, None, None))
        variants.append(
            VariantDay(
                variant=key[0],
                served=key[1],
                requests=a.requests,
                ok=a.ok,
                errors=a.errors,
                timeouts=a.timeouts,
                unknown_status=a.unknown_status,
                missing_correlation_id=a.missing_cid,
                invalid_latency=a.invalid_latency,
                latency_mean=a.lat_sum / a.lat_n if a.lat_n else None,
                latency_max=a.lat_max,
                latency_p50=quantile_from_histogram(hist, 0.50),
                latency_p95=quantile_from_histogram(hist, 0.95),
                latency_p99=quantile_from_histogram(hist, 0.99),
                predictions=a.predictions,
                prediction_mean=mean,
                prediction_std=std,
                prediction_min=a.pred_min,
                prediction_max=a.pred_max,
                nonfinite_predictions=a.nonfinite,
                prediction_histogram=tuple(pred_hist.get(key, ())),
                label_counts=tuple(labels.get(key, ())),
                complaints=kinds.get("complaint", (0, None, None))[0],
                actuals=actual[0],
                abs_error_mean=actual[1],
                label_accuracy=actual[2],
            )
        )

    unknown = tuple(sorted({k[0] for k in keys} - {stable_variant, candidate_variant}))
    seconds = time.perf_counter() - started
    log.info(
        "collected %s %s: %d rows in %d groups, sample %d rows, in %.2f s",
        model_name, day, sum(counts.values()), len(variants), len(sample), seconds,
    )
    return DaySummary(
        model_name=model_name,
        day=day,
        stable_variant=stable_variant,
        candidate_variant=candidate_variant,
        variants=tuple(variants),
        prediction_edges=edges,
        pairing=pairing,
        extremes=extremes,
        sample=sample,
        unknown_variants=unknown,
        collect_seconds=seconds,
        duplicate_served_ids=_duplicate_served(sample),
    )


def _f(value) -> float | None:
    return None if value is None else float(value)


def _duplicate_served(sample) -> int:
    """Served rows of the sample whose correlation id an earlier served row has (the hash sample keeps
    every row of a sampled correlation id, so within it the count is exact)."""
    seen: set[str] = set()
    duplicates = 0
    for row in sample:
        if row.served and row.correlation_id:
            duplicates += row.correlation_id in seen
            seen.add(row.correlation_id)
    return duplicates


def _sample_thresholds(counts, stable, candidate, sample_rows) -> tuple[dict[str, int], bool]:
    """Hash-bucket thresholds per variant for a sample of ~sample_rows rows each; whether shadows were logged."""
    shadowing = counts.get((candidate, False), 0) > 0 or counts.get((stable, False), 0) > 0
    per_variant = {}
    for variant in (stable, candidate):
        n = counts.get((variant, True), 0) + counts.get((variant, False), 0)
        per_variant[variant] = HASH_BUCKETS if n <= sample_rows else max(1, HASH_BUCKETS * sample_rows // n)
    if shadowing:
        # Pairs must be sampled whole: one threshold for both variants.
        shared = min(per_variant.values())
        per_variant = {v: shared for v in per_variant}
    return per_variant, shadowing


def _sample_and_extremes(connection, in_day, per_variant, shadowing, stable, candidate, sample_rows,
                         finite_prediction, thresholds, k):
    """The hash sample (and shadow pairing on it) and the candidate's k highest and lowest outputs, in one scan.

    The sample: a deterministic hash sample of at most ~sample_rows rows per variant.
    The extremes: the candidate rows at or beyond thresholds known to leave at least k
    rows beyond them (see _extreme_thresholds) come back with the sample, and the exact
    top k are picked here. The scan is capped (LIMIT); if the cap is reached (a
    degenerate day, e.g. one prediction value repeated millions of times) the sample and
    the extremes are fetched by separate queries instead, exactly as before.
    """
    p = prediction_log.c
    t_hi, t_lo = thresholds
    hb = hash_bucket(p.correlation_id)
    wanted = [sa.and_(p.variant == v, hb < t) for v, t in per_variant.items()]
    beyond = [c for c in ((p.prediction >= t_hi) if t_hi is not None else None,
                          (p.prediction <= t_lo) if t_lo is not None else None) if c is not None]
    if beyond:
        wanted.append(sa.and_(p.variant == candidate, finite_prediction, sa.or_(*beyond)))
    cap = 3 * len(per_variant) * sample_rows + 2 * EXTREME_FETCH_MAX

    def fetch(conditions, limit):
        query = (sa.select(p.correlation_id, p.variant, p.served, p.latency_ms, p.status, p.prediction, p.label,
                           p.ts, hb.label("hb"))
                 .where(in_day, sa.or_(*conditions))
                 .order_by(p.correlation_id, p.served.desc(), p.variant, p.ts))
        return connection.execute(query.limit(limit) if limit else query).all()

    rows = fetch(wanted, cap)
    if len(rows) >= cap:
        log.info("sample and extremes hit the cap of %d rows: fetching them apart", cap)
        rows = fetch(wanted[:len(per_variant)], None)
        t_hi = t_lo = None
    limit = dict(per_variant)
    sample = tuple(
        SampleRow(cid, variant, bool(served), None if lat is None else float(lat), status,
                  None if pred is None else float(pred), label)
        for cid, variant, served, lat, status, pred, label, _, h in rows
        if h is not None and h < limit.get(variant, -1)
    )
    cand = [r for r in rows if r.variant == candidate and _num(_f(r.prediction))] if beyond else []
    found = []
    nulls_last = connection.dialect.name == "postgresql"  # ties are broken by correlation id as the database sorts it

    def cid_order(r):
        return (r.correlation_id is None) == nulls_last, r.correlation_id or ""

    for side, threshold in (("high", t_hi), ("low", t_lo)):
        if threshold is None:
            found.extend(_extreme_side(connection, in_day, finite_prediction, candidate, side, k))
            continue
        if side == "high":
            picked = sorted((r for r in cand if r.prediction >= threshold), key=lambda r: (-r.prediction, *cid_order(r)))
        else:
            picked = sorted((r for r in cand if r.prediction <= threshold), key=lambda r: (r.prediction, *cid_order(r)))
        found.extend((side, r.correlation_id, float(r.prediction), r.ts) for r in picked[:k])
    extremes = _with_stable_answers(connection, in_day, stable, found)
    if not shadowing:
        return sample, None, extremes
    fraction = per_variant[candidate] / HASH_BUCKETS
    served: dict[str, SampleRow] = {}
    duplicates = 0
    for row in sample:
        if row.served and row.correlation_id is not None:
            if row.correlation_id in served:
                duplicates += 1
            served[row.correlation_id] = row
    shadows = [r for r in sample if not r.served and r.correlation_id is not None]
    pairs = [(served[s.correlation_id], s) for s in shadows if s.correlation_id in served]
    diffs = [s.prediction - v.prediction for v, s in pairs if _num(s.prediction) and _num(v.prediction)]
    labelled = [(v.label, s.label) for v, s in pairs if v.label is not None and s.label is not None]
    overlaps = [o for o in (_overlap(a, b) for a, b in labelled) if o is not None]
    pairing = Pairing(
        sample_fraction=fraction,
        served_in_sample=sum(1 for r in sample if r.served),
        shadow_in_sample=sum(1 for r in sample if not r.served),
        matched=len(pairs),
        unmatched_shadow=sum(1 for r in sample if not r.served) - len(pairs),
        duplicate_correlation_ids=duplicates,
        diff_mean=sum(diffs) / len(diffs) if diffs else None,
        diff_abs_mean=sum(abs(d) for d in diffs) / len(diffs) if diffs else None,
        disagreement_rate=(sum(1 for a, b in labelled if a != b) / len(labelled)) if labelled else None,
        list_overlap=sum(overlaps) / len(overlaps) if overlaps else None,
    )
    return sample, pairing, extremes


def _num(x) -> bool:
    return x is not None and math.isfinite(x)


def _overlap(a: str, b: str) -> float | None:
    """Jaccard overlap of two JSON item lists; None when the labels are not lists."""
    if not (a.startswith("[") and b.startswith("[")):
        return None
    try:
        sa_, sb = set(map(str, json.loads(a))), set(map(str, json.loads(b)))
    except ValueError:
        return None
    union = sa_ | sb
    return len(sa_ & sb) / len(union) if union else 1.0


def _extreme_thresholds(group_max: list[float], group_min: list[float], finite: int,
                        k: int) -> tuple[float | None, float | None]:
    """Prediction thresholds with at least k candidate rows at or beyond them, from scan 1's groups.

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


def _extreme_side(connection, in_day, finite_prediction, candidate, side, k) -> list[tuple]:
    """The k highest (or lowest) candidate outputs by a sorted query of their own."""
    p = prediction_log.c
    order = p.prediction.desc() if side == "high" else p.prediction.asc()
    rows = connection.execute(
        sa.select(p.correlation_id, p.prediction, p.ts)
        .where(in_day, p.variant == candidate, finite_prediction)
        .order_by(order, p.correlation_id)
        .limit(k)
    ).all()
    return [(side, r.correlation_id, float(r.prediction), r.ts) for r in rows]


def _scaled_histograms(sample, edges, day_counts) -> dict[tuple[str, bool], list[int]]:
    """Prediction histograms counted on the hash sample, scaled to the day's counts (largest remainder).

    A bin holding a share q of a variant's m sampled predictions is off by about
    sqrt(q (1 - q) / m) of the day's count (1 standard error): +-0.15 percentage point
    for a 5% bin with m = 20,000.
    """
    low, high = edges[0], edges[-1]
    width = (high - low) / PREDICTION_BINS
    counted: dict[tuple[str, bool], list[int]] = {}
    for r in sample:
        if (r.variant, r.served) in day_counts and _num(r.prediction):
            b = PREDICTION_BINS - 1 if r.prediction >= high else int(math.floor((r.prediction - low) / width))
            counted.setdefault((r.variant, r.served), [0] * PREDICTION_BINS)[min(max(b, 0), PREDICTION_BINS - 1)] += 1
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


def _with_stable_answers(connection, in_day, stable, found) -> tuple[Extreme, ...]:
    """The stable model's answer to each extreme's request, looked up near the candidate's answer in time.

    The (model_name, ts) index serves a few narrow time windows instead of a scan of the
    day: a stable answer logged more than STABLE_ANSWER_WINDOW away from the candidate's
    answer to the same request is reported as missing.
    """
    p = prediction_log.c
    ids = sorted({cid for _, cid, _, _ in found if cid is not None})
    stable_answers = {}
    if ids:
        windows: list[list] = []
        for ts in sorted(ts for _, cid, _, ts in found if cid is not None):
            a, b = ts - STABLE_ANSWER_WINDOW, ts + STABLE_ANSWER_WINDOW
            if windows and a <= windows[-1][1]:
                windows[-1][1] = b
            else:
                windows.append([a, b])
        near = sa.or_(*(sa.and_(p.ts >= a, p.ts <= b) for a, b in windows))
        with _settings(connection, jit="off"):  # JIT compilation would cost ~0.3 s for a ~20 ms index lookup
            rows = connection.execute(
                sa.select(p.correlation_id, p.prediction)
                .where(in_day, near, p.variant == stable, p.correlation_id.in_(ids))
                .order_by(p.ts)
            ).all()
        for r in rows:
            stable_answers.setdefault(r.correlation_id, _f(r.prediction))
    return tuple(Extreme(cid, value, stable_answers.get(cid), side) for side, cid, value, _ in found)


@contextlib.contextmanager
def _settings(connection: sa.Connection, **settings: str):
    """PostgreSQL settings for a block, restored afterwards; a no-op on other databases."""
    if connection.dialect.name != "postgresql":
        yield
        return
    names = list(settings)
    saved = connection.execute(sa.select(*(sa.func.current_setting(n) for n in names))).one()
    connection.execute(sa.select(*(sa.func.set_config(n, v, False) for n, v in settings.items())))
    try:
        yield
    finally:
        try:
            connection.execute(sa.select(*(sa.func.set_config(n, v, False) for n, v in zip(names, saved))))
        except sa.exc.DBAPIError:
            pass  # the transaction failed: PostgreSQL rolls the settings back with it


# For the grouped scans. The planner, without statistics on the partitioned parent, expects
# 80,000 groups; with 4 MB of work_mem it then costs the hash table as spilling and sorts the
# whole day on disk instead (5x slower at 1M rows). The real hash table holds ~1,000 groups.
# A day partition not yet analyzed (just loaded) is worse: estimated at a few dozen rows, the
# day is sorted on disk for a GroupAggregate (10 s instead of ~0.5 s at 2M rows). Grouping
# these few groups by sorting is never right, so sorting is ruled out for these queries.
GROUPED_SCAN_SETTINGS = {"work_mem": "64MB", "enable_sort": "off"}

# For the feedback join. Day partitions just written have no statistics until autovacuum
# analyzes them (a minute or more after the load; never, if the pipeline runs first): the
# planner then expects one row on each side and joins them in a nested loop, rescanning the
# feedback for every prediction -- 14 s for 8,000 predictions x 2,400 feedback rows, hours
# for a real day. A whole day's join is always a hash join (0.03 s there); the nested loop is
# ruled out for this one query, whatever the statistics say.
FEEDBACK_JOIN_SETTINGS = {"enable_nestloop": "off", "work_mem": "64MB"}
