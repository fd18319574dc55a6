"""The day-summary queries: a model's day reduced to aggregates and a bounded sample.

Everything is computed SQL-side (grouped aggregates and histograms); only small
result sets and a hash sample of at most ``sample_rows`` rows per variant come
back, so memory does not grow with the day's row count. The same queries run on
PostgreSQL and SQLite; the few functions SQLite lacks are registered on its
connections by ``store.engine``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from collections import defaultdict

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from rollout_pipeline.domain.records import STATUSES
from rollout_pipeline.domain.summary import (
    LATENCY_BINS_PER_E,
    PREDICTION_BINS,
    DaySummary,
    Extreme,
    Pairing,
    SampleRow,
    VariantDay,
    quantile_from_histogram,
)
from rollout_pipeline.store.tables import feedback, prediction_log

log = logging.getLogger(__name__)

HASH_BUCKETS = 10_000
FEEDBACK_WINDOW = dt.timedelta(days=2)  # feedback about a day's requests may arrive until two days later


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
    """True for a finite number (PostgreSQL has NaN and infinities; SQLite stores NaN as NULL)."""
    if dialect == "postgresql":
        return sa.and_(
            column.is_not(None),
            column != sa.literal_column("'NaN'::float8"),
            column < sa.literal_column("'Infinity'::float8"),
            column > sa.literal_column("'-Infinity'::float8"),
        )
    return sa.and_(column.is_not(None), column < 1e308, column > -1e308)


def _count_if(condition):
    return sa.func.sum(sa.case((condition, 1), else_=0))


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
    started = time.perf_counter()
    dialect = connection.dialect.name
    p = prediction_log.c
    lo, hi = day_bounds(day)
    in_day = sa.and_(p.model_name == model_name, p.ts >= lo, p.ts < hi)
    valid_latency = sa.and_(_finite(p.latency_ms, dialect), p.latency_ms >= 0)
    finite_prediction = _finite(p.prediction, dialect)
    latency_ok = sa.case((valid_latency, p.latency_ms))
    prediction_ok = sa.case((finite_prediction, p.prediction))

    # 1. One scan: counts, statuses, contract breaches, moments.
    base_rows = connection.execute(
        sa.select(
            p.variant,
            p.served,
            sa.func.count().label("requests"),
            _count_if(p.status == "ok").label("ok"),
            _count_if(p.status == "error").label("errors"),
            _count_if(p.status == "timeout").label("timeouts"),
            _count_if(sa.or_(p.status.is_(None), p.status.not_in(STATUSES))).label("unknown_status"),
            _count_if(sa.or_(p.correlation_id.is_(None), p.correlation_id == "")).label("missing_cid"),
            _count_if(sa.not_(valid_latency)).label("invalid_latency"),
            sa.func.avg(latency_ok).label("latency_mean"),
            sa.func.max(latency_ok).label("latency_max"),
            sa.func.count(prediction_ok).label("predictions"),
            sa.func.avg(prediction_ok).label("prediction_mean"),
            sa.func.avg(prediction_ok * prediction_ok).label("prediction_sq_mean"),
            sa.func.min(prediction_ok).label("prediction_min"),
            sa.func.max(prediction_ok).label("prediction_max"),
            _count_if(sa.and_(p.prediction.is_not(None), sa.not_(finite_prediction))).label("nonfinite"),
        )
        .where(in_day)
        .group_by(p.variant, p.served)
    ).all()
    keys = [(r.variant, bool(r.served)) for r in base_rows]

    # 2. Latency histogram on log buckets (quantiles within 2%, no sort).
    lat_hist: dict[tuple[str, bool], dict[int, int]] = defaultdict(dict)
    bucket = sa.func.floor(ln1p(p.latency_ms) * LATENCY_BINS_PER_E)
    for r in connection.execute(
        sa.select(p.variant, p.served, bucket.label("b"), sa.func.count().label("n"))
        .where(in_day, valid_latency)
        .group_by(p.variant, p.served, bucket)
    ):
        lat_hist[(r.variant, bool(r.served))][int(r.b)] = int(r.n)

    # 3. Prediction histogram on edges shared by stable and candidate.
    ours = [r for r in base_rows if r.variant in (stable_variant, candidate_variant) and r.predictions]
    edges: tuple[float, ...] = ()
    pred_hist: dict[tuple[str, bool], list[int]] = {}
    if ours:
        low, high = min(r.prediction_min for r in ours), max(r.prediction_max for r in ours)
        if high <= low:
            high = low + 1.0
        width = (high - low) / PREDICTION_BINS
        edges = tuple(low + k * width for k in range(PREDICTION_BINS + 1))
        pbucket = sa.case(
            (p.prediction >= high, PREDICTION_BINS - 1),
            else_=sa.cast(sa.func.floor((p.prediction - low) / width), sa.Integer),
        )
        for r in connection.execute(
            sa.select(p.variant, p.served, pbucket.label("b"), sa.func.count().label("n"))
            .where(in_day, finite_prediction, p.variant.in_([stable_variant, candidate_variant]))
            .group_by(p.variant, p.served, pbucket)
        ):
            hist = pred_hist.setdefault((r.variant, bool(r.served)), [0] * PREDICTION_BINS)
            hist[min(max(int(r.b), 0), PREDICTION_BINS - 1)] += int(r.n)

    # 4. Label distributions (the most frequent labels; item lists make many distinct ones).
    labels: dict[tuple[str, bool], list[tuple[str, int]]] = defaultdict(list)
    for r in connection.execute(
        sa.select(p.variant, p.served, p.label, sa.func.count().label("n"))
        .where(in_day, p.label.is_not(None))
        .group_by(p.variant, p.served, p.label)
        .order_by(sa.desc("n"))
        .limit(500)
    ):
        labels[(r.variant, bool(r.served))].append((r.label, int(r.n)))

    # 5. Feedback about the day's requests, joined on correlation id.
    f = feedback.c
    fb: dict[tuple[str, bool], dict[str, tuple[int, float | None, float | None]]] = defaultdict(dict)
    for r in connection.execute(
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
    ):
        fb[(r.variant, bool(r.served))][r.kind] = (int(r.n), _f(r.abs_err), _f(r.acc))

    variants = []
    for r in base_rows:
        key = (r.variant, bool(r.served))
        hist = lat_hist.get(key, {})
        n_pred = int(r.predictions or 0)
        mean = _f(r.prediction_mean)
        std = math.sqrt(max(_f(r.prediction_sq_mean) - mean * mean, 0.0)) if n_pred and mean is not None else None
        kinds = fb.get(key, {})
        actual = kinds.get("actual", (0, None, None))
        variants.append(
            VariantDay(
                variant=r.variant,
                served=bool(r.served),
                requests=int(r.requests),
                ok=int(r.ok or 0),
                errors=int(r.errors or 0),
                timeouts=int(r.timeouts or 0),
                unknown_status=int(r.unknown_status or 0),
                missing_correlation_id=int(r.missing_cid or 0),
                invalid_latency=int(r.invalid_latency or 0),
                latency_mean=_f(r.latency_mean),
                latency_max=_f(r.latency_max),
                latency_p50=quantile_from_histogram(hist, 0.50),
                latency_p95=quantile_from_histogram(hist, 0.95),
                latency_p99=quantile_from_histogram(hist, 0.99),
                predictions=n_pred,
                prediction_mean=mean,
                prediction_std=std,
                prediction_min=_f(r.prediction_min),
                prediction_max=_f(r.prediction_max),
                nonfinite_predictions=int(r.nonfinite or 0),
                prediction_histogram=tuple(pred_hist.get(key, ())),
                label_counts=tuple(labels.get(key, ())),
                complaints=kinds.get("complaint", (0, None, None))[0],
                actuals=actual[0],
                abs_error_mean=actual[1],
                label_accuracy=actual[2],
            )
        )

    counts = {k: v.requests for k, v in zip(keys, variants)}
    sample, pairing = _sample(connection, in_day, counts, stable_variant, candidate_variant, sample_rows)
    extremes = _extremes(connection, in_day, finite_prediction, stable_variant, candidate_variant, top_k)
    unknown = tuple(sorted({r.variant for r in base_rows} - {stable_variant, candidate_variant}))
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
    )


def _f(value) -> float | None:
    return None if value is None else float(value)


def _sample(connection, in_day, counts, stable, candidate, sample_rows):
    """A deterministic hash sample of at most ~sample_rows rows per variant, and shadow pairing on it."""
    p = prediction_log.c
    shadowing = counts.get((candidate, False), 0) > 0 or counts.get((stable, False), 0) > 0
    per_variant = {}
    for variant in (stable, candidate):
        n = counts.get((variant, True), 0) + counts.get((variant, False), 0)
        per_variant[variant] = HASH_BUCKETS if n <= sample_rows else max(1, HASH_BUCKETS * sample_rows // n)
    if shadowing:
        # Pairs must be sampled whole: one threshold for both variants.
        shared = min(per_variant.values())
        per_variant = {v: shared for v in per_variant}
    hb = hash_bucket(p.correlation_id)
    rows = connection.execute(
        sa.select(p.correlation_id, p.variant, p.served, p.latency_ms, p.status, p.prediction, p.label)
        .where(
            in_day,
            sa.or_(*(sa.and_(p.variant == v, hb < t) for v, t in per_variant.items())),
        )
        .order_by(p.correlation_id, p.served.desc(), p.variant)
    ).all()
    sample = tuple(
        SampleRow(r.correlation_id, r.variant, bool(r.served), _f(r.latency_ms), r.status, _f(r.prediction), r.label)
        for r in rows
    )
    if not shadowing:
        return sample, None
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
    return sample, pairing


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


def _extremes(connection, in_day, finite_prediction, stable, candidate, k) -> tuple[Extreme, ...]:
    """The k highest and k lowest candidate outputs with the stable model's answer to the same request."""
    p = prediction_log.c
    found = []
    for side, order in (("high", p.prediction.desc()), ("low", p.prediction.asc())):
        rows = connection.execute(
            sa.select(p.correlation_id, p.prediction)
            .where(in_day, p.variant == candidate, finite_prediction)
            .order_by(order, p.correlation_id)
            .limit(k)
        ).all()
        found.extend((side, r.correlation_id, float(r.prediction)) for r in rows)
    ids = [cid for _, cid, _ in found if cid is not None]
    stable_answers = {}
    if ids:
        for r in connection.execute(
            sa.select(p.correlation_id, p.prediction).where(in_day, p.variant == stable, p.correlation_id.in_(ids))
        ):
            stable_answers[r.correlation_id] = _f(r.prediction)
    return tuple(Extreme(cid, value, stable_answers.get(cid), side) for side, cid, value in found)
