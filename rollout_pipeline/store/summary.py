"""The day-summary queries: a model's day reduced to aggregates and a bounded sample.

Everything is computed SQL-side (grouped aggregates and histograms); only small
result sets and a hash sample of at most ``sample_rows`` requests per population come
back, so memory does not grow with the day's row count. The same queries run on
PostgreSQL and SQLite; the few functions SQLite lacks are registered on its
connections by ``store.engine``.

The scans themselves are in ``store.day_scans`` (the grouped, day-wide ones) and
``store.sample_scans`` (the sample and the extremes), built from ``store.sql_functions``;
their names are importable from here too.
"""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa

from rollout_pipeline.domain.collect import SAMPLE_REQUESTS, Key, collect_with, day_bounds
from rollout_pipeline.domain.summary import DaySummary
from rollout_pipeline.store.day_scans import (
    feedback_by_variant,
    finite_moments,
    grouped_rows,
    grouped_scan,
    label_counts,
    prediction_bins,
    variant_counts,
    variant_scan,
)
from rollout_pipeline.store.sample_scans import (
    INDEXED_BUCKETS,
    SAMPLE_FEEDBACK_KINDS,
    STABLE_ANSWER_WINDOW,
    extreme_side,
    sample_and_extreme_rows,
    sample_feedback,
    with_stable_answers,
)
from rollout_pipeline.store.sql_functions import (
    FEEDBACK_JOIN_SETTINGS,
    GROUPED_SCAN_SETTINGS,
    hash_bucket,
    in_day,
    ln1p,
    unindexed,
)
from rollout_pipeline.store.tables import feedback, prediction_log

__all__ = [
    "FEEDBACK_JOIN_SETTINGS", "GROUPED_SCAN_SETTINGS", "INDEXED_BUCKETS", "SAMPLE_FEEDBACK_KINDS",
    "STABLE_ANSWER_WINDOW", "SqlScans", "collect_day", "extreme_side", "feedback_by_variant", "feedback_of_days",
    "finite_moments", "grouped_rows", "grouped_scan", "hash_bucket", "label_counts", "ln1p", "prediction_bins",
    "sample_and_extreme_rows", "sample_feedback", "traffic_of_day", "unindexed", "variant_counts", "variant_scan",
    "with_stable_answers",
]

log = logging.getLogger(__name__)


def collect_day(
    connection: sa.Connection,
    model_name: str,
    day: dt.date,
    stable_variant: str,
    candidate_variant: str,
    *,
    sample_rows: int = SAMPLE_REQUESTS,
    top_k: int = 10,
    accuracy_day: dt.date | None = None,
) -> DaySummary:
    """Summarize ``model_name``'s logs of ``day`` (UTC) in the database (``domain.collect.collect_with``).

    One grouped scan of the day, the sample read by its stored buckets (an index range),
    one filter pass for the extremes (hashing only rows written without a bucket) and
    small queries; the day's partition should have statistics first (the caller runs
    ``store.partitions.analyze_stale_day``).
    """
    return collect_with(SqlScans(connection), model_name, day, stable_variant, candidate_variant,
                        sample_rows=sample_rows, top_k=top_k, accuracy_day=accuracy_day)


class SqlScans:
    """The scans of ``store.day_scans`` and ``store.sample_scans`` on one connection (``domain.collect.DayScans``)."""

    def __init__(self, connection: sa.Connection):
        self.connection = connection
        self.nulls_last = connection.dialect.name == "postgresql"
        self._unbucketed: dict[tuple[str, dt.date], int] = {}  # rows without a stored sample bucket, per day read
        self._present: dict[tuple[str, dt.date], set[Key]] = {}  # the (variant, served) populations with rows

    def grouped_rows(self, model_name, day):
        rows, self._unbucketed[(model_name, day)] = grouped_scan(self.connection, model_name, day)
        self._present[(model_name, day)] = {(r.variant, r.served) for r in rows}
        return rows

    def finite_moments(self, model_name, day):
        return finite_moments(self.connection, model_name, day)

    def variant_counts(self, model_name, day):
        counts, self._unbucketed[(model_name, day)] = variant_scan(self.connection, model_name, day)
        self._present[(model_name, day)] = set(counts)
        return counts

    def prediction_bins(self, model_name, day, edges):
        return prediction_bins(self.connection, model_name, day, edges)

    def sample_and_extreme_rows(self, model_name, day, thresholds, candidate, t_hi, t_lo, sample_rows):
        return sample_and_extreme_rows(self.connection, model_name, day, thresholds, candidate, t_hi, t_lo,
                                       sample_rows, unbucketed=self._unbucketed.get((model_name, day), 1) > 0,
                                       present=self._present.get((model_name, day)))

    def extreme_side(self, model_name, day, candidate, side, k):
        return extreme_side(self.connection, model_name, day, candidate, side, k)

    def with_stable_answers(self, model_name, day, stable, found):
        return with_stable_answers(self.connection, model_name, day, stable, found)

    def label_counts(self, model_name, day):
        return label_counts(self.connection, model_name, day)

    def feedback_by_variant(self, model_name, day):
        return feedback_by_variant(self.connection, model_name, day)

    def sample_feedback(self, model_name, rows, thresholds, lo, hi):
        return sample_feedback(self.connection, model_name, rows, thresholds, lo, hi)


def traffic_of_day(connection: sa.Connection, model_name: str, day: dt.date) -> tuple[int, int, int, int]:
    """(served requests, distinct entities served, served errors and timeouts, rows answered in shadow) of a day:
    what a rollout's plan reads of the last days (``planning``)."""
    p = prediction_log.c
    row = connection.execute(
        sa.select(sa.func.count().filter(p.served),
                  sa.func.count(sa.distinct(sa.case((p.served, p.entity_id)))),
                  sa.func.count().filter(p.served, p.status != "ok"),
                  sa.func.count().filter(sa.not_(p.served)))
        .where(in_day(model_name, day))).one()
    return tuple(int(v or 0) for v in row)


def feedback_of_days(connection: sa.Connection, model_name: str, start: dt.date, end: dt.date) -> dict[str, int]:
    """Feedback rows per kind that arrived from ``start`` to ``end`` (UTC days, inclusive)."""
    f = feedback.c
    lo, _ = day_bounds(start)
    _, hi = day_bounds(end)
    return {r.kind: int(r.n) for r in connection.execute(
        sa.select(f.kind, sa.func.count().label("n"))
        .where(f.model_name == model_name, f.ts >= lo, f.ts < hi).group_by(f.kind))}
