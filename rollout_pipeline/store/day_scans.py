"""The day-wide scans of the day summary: grouped aggregates, histograms, label counts and the feedback join.

Each returns plain rows (see ``domain.collect``); ``store.summary.SqlScans`` hands them to it.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from rollout_pipeline.domain.collect import (
    FEEDBACK_WINDOW,
    CountRow,
    FeedbackAgg,
    GroupRow,
    Key,
    Moments,
    day_bounds,
)
from rollout_pipeline.domain.summary import LATENCY_BINS_PER_E, PREDICTION_BINS
from rollout_pipeline.store.sql_functions import (
    FEEDBACK_JOIN_SETTINGS,
    GROUPED_SCAN_SETTINGS,
    finite_prediction,
    in_day,
    is_finite_fast,
    is_nonfinite,
    is_valid_latency,
    ln1p,
    pg_settings,
    unindexed,
)
from rollout_pipeline.store.tables import feedback, prediction_log


def grouped_rows(connection: sa.Connection, model_name: str, day: dt.date) -> list[GroupRow]:
    """Scan 1 (``grouped_scan``'s groups)."""
    return grouped_scan(connection, model_name, day)[0]


def grouped_scan(connection: sa.Connection, model_name: str, day: dt.date) -> tuple[list[GroupRow], int]:
    """Scan 1: the day-wide aggregates AND the latency histogram, grouped by variant, served and latency bucket;
    and how many of the day's rows have no stored sample bucket (``sample_and_extreme_rows`` hashes those).

    Only decomposable aggregates (counts, sums, min, max), rolled up by
    ``domain.collect.accumulate``. The latency bucket is the only computed grouping
    key on purpose: PostgreSQL has no statistics on the partitioned parent
    (autovacuum never analyzes it) and guesses 200 values per key, so one more
    computed key makes it expect millions of groups and sort the day (external merge,
    ~5x slower) instead of hashing ~1,000 groups in parallel workers.
    """
    p = prediction_log.c
    # A shed shadow call (the mirror's pool was full) carries no latency of the model's: it is in no bucket
    # (``accumulate`` does not count it as an invalid latency either).
    valid_latency = sa.and_(is_valid_latency(p.latency_ms), p.status.is_distinct_from("shed"))
    finite = is_finite_fast(p.prediction)
    bucket = sa.case((valid_latency, sa.cast(sa.func.floor(ln1p(p.latency_ms) * LATENCY_BINS_PER_E), sa.Integer)))
    query = (
        sa.select(
            p.variant, p.served, bucket.label("b"),
            sa.func.count().label("n"),
            sa.func.count().filter(p.status == "ok").label("ok"),
            sa.func.count().filter(p.status == "error").label("errors"),
            sa.func.count().filter(p.status == "timeout").label("timeouts"),
            sa.func.count().filter(sa.or_(p.correlation_id.is_(None), p.correlation_id == "")).label("missing_cid"),
            sa.func.count(p.label).label("labels"),
            sa.func.count().filter(p.status == "ok", p.prediction.is_(None), p.label.is_(None)).label("null_outputs"),
            sa.func.sum(p.latency_ms).filter(valid_latency).label("lat_sum"),  # 2 x 1e308 overflows
            sa.func.max(p.latency_ms).label("lat_max"),
            sa.func.count(p.prediction).label("pred_n"),
            sa.func.count().filter(is_nonfinite(p.prediction)).label("nonfinite"),
            # Sums of the finite, not absurd predictions only: in PostgreSQL 1e200 * 1e200 is an error.
            sa.func.sum(p.prediction).filter(finite).label("pred_sum"),
            sa.func.sum(p.prediction * p.prediction).filter(finite).label("pred_sq"),
            sa.func.min(p.prediction).label("pred_min"),
            sa.func.max(p.prediction).label("pred_max"),
            sa.func.count().filter(p.status == "shed").label("shed"),
            (sa.func.count() - sa.func.count(p.sample_bucket)).label("unbucketed"),
        )
        .where(in_day(model_name, day))
        .group_by(p.variant, p.served, bucket)
    )
    with pg_settings(connection, **GROUPED_SCAN_SETTINGS):
        rows = connection.execute(query).all()
    return ([GroupRow(r.variant, bool(r.served), None if r.b is None else int(r.b), *r[3:-1]) for r in rows],
            sum(int(r.unbucketed) for r in rows))


def finite_moments(connection: sa.Connection, model_name: str, day: dt.date) -> list[Moments]:
    """Per (variant, served): sums and range of the finite, not absurd predictions only."""
    p = prediction_log.c
    return [Moments(r.variant, bool(r.served), *r[2:]) for r in connection.execute(
        sa.select(
            p.variant, p.served,
            sa.func.sum(p.prediction), sa.func.sum(p.prediction * p.prediction),
            sa.func.min(p.prediction), sa.func.max(p.prediction),
        )
        .where(in_day(model_name, day), finite_prediction())
        .group_by(p.variant, p.served)
    )]


def variant_counts(connection: sa.Connection, model_name: str, day: dt.date) -> dict[tuple[str, bool], int]:
    """Rows per (variant, served) of a day (for the sample thresholds of a day read for its late labels)."""
    return variant_scan(connection, model_name, day)[0]


def variant_scan(connection: sa.Connection, model_name: str, day: dt.date) -> tuple[dict[Key, int], int]:
    """``variant_counts``, and how many of the day's rows have no stored sample bucket."""
    p = prediction_log.c
    with pg_settings(connection, **GROUPED_SCAN_SETTINGS):
        rows = connection.execute(
            sa.select(p.variant, p.served, sa.func.count().label("n"),
                      (sa.func.count() - sa.func.count(p.sample_bucket)).label("unbucketed"))
            .where(in_day(model_name, day)).group_by(p.variant, p.served)).all()
    return {(r.variant, bool(r.served)): int(r.n) for r in rows}, sum(int(r.unbucketed) for r in rows)


def prediction_bins(connection: sa.Connection, model_name: str, day: dt.date,
                    edges: tuple[float, ...]) -> list[CountRow]:
    """Exact prediction-histogram counts on ``edges`` (a small day's own scan; large days scale the sample's).

    Every variant is counted (cheaper than filtering on the text column); non-finite
    predictions land in a NULL bin, so the planner sees the whole day and hashes.
    """
    p = prediction_log.c
    low, high = edges[0], edges[-1]
    width = (high - low) / PREDICTION_BINS
    pbucket = sa.case(  # NULLs first: SQLite may have Python's math.floor as floor(), which rejects NULL
        (sa.or_(p.prediction.is_(None), sa.not_(is_finite_fast(p.prediction))), None),
        (p.prediction >= high, PREDICTION_BINS - 1),
        else_=sa.cast(sa.func.floor((p.prediction - low) / width), sa.Integer),
    )
    with pg_settings(connection, **GROUPED_SCAN_SETTINGS):
        return [CountRow(r.variant, bool(r.served), r.b, int(r.n)) for r in connection.execute(
            sa.select(p.variant, p.served, pbucket.label("b"), sa.func.count().label("n"))
            .where(in_day(model_name, day))
            .group_by(p.variant, p.served, pbucket)
        )]

def label_counts(connection: sa.Connection, model_name: str, day: dt.date) -> list[CountRow]:
    """The most frequent labels per (variant, served) (item lists make many distinct ones: top 500 overall)."""
    p = prediction_log.c
    return [CountRow(r.variant, bool(r.served), r.label, int(r.n)) for r in connection.execute(
        sa.select(p.variant, p.served, p.label, sa.func.count().label("n"))
        .where(in_day(model_name, day), p.label.is_not(None))
        .group_by(p.variant, p.served, p.label)
        .order_by(sa.desc("n"), p.variant, p.served, p.label)
        .limit(500)
    )]


def feedback_by_variant(connection: sa.Connection, model_name: str, day: dt.date) -> list[FeedbackAgg]:
    """Feedback about the day's requests (arrived within FEEDBACK_WINDOW), joined on correlation id, per kind.

    Other systems may write the table directly, so a value can be anything a double holds: NaN, the
    infinities and values at or beyond ABSURD_VALUE are counted as ``broken`` and kept out of the mean
    (an average over 1e308 overflows PostgreSQL's float8 and used to fail the whole collect step).
    """
    p, f = prediction_log.c, feedback.c
    lo, hi = day_bounds(day)
    finite = finite_prediction()
    with pg_settings(connection, **FEEDBACK_JOIN_SETTINGS):
        return [FeedbackAgg(r.variant, bool(r.served), r.kind, int(r.n), r.abs_err, r.acc, int(r.broken))
                for r in connection.execute(
            sa.select(
                p.variant,
                p.served,
                f.kind,
                sa.func.count().label("n"),
                sa.func.avg(sa.case((sa.and_(finite, is_finite_fast(f.value)),
                                     sa.func.abs(p.prediction - f.value)))).label("abs_err"),
                sa.func.avg(sa.case((f.label.is_not(None),
                                     sa.case((p.label == f.label, 1.0), else_=0.0)))).label("acc"),
                sa.func.count().filter(is_nonfinite(f.value)).label("broken"),  # NaN sorts above +Infinity
            )
            .select_from(feedback.join(prediction_log, p.correlation_id == f.correlation_id))
            .where(in_day(model_name, day), unindexed(f.model_name) == model_name, unindexed(f.ts) >= lo,
                   unindexed(f.ts) < hi + FEEDBACK_WINDOW)
            .group_by(p.variant, p.served, f.kind)
        )]
