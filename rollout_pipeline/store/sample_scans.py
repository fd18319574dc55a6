"""The sampled reads of the day summary: the hash sample with the candidate's extremes, the extremes'
stable answers and the sample's feedback.

Each returns plain rows (see ``domain.collect``); ``store.summary.SqlScans`` hands them to it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from rollout_pipeline.domain.collect import (
    EXTREME_FETCH_MAX,
    POPULATIONS,
    FeedbackItem,
    Found,
    Key,
    LogRow,
    in_sample,
)
from rollout_pipeline.domain.summary import Extreme
from rollout_pipeline.store.sql_functions import finite_prediction, hash_bucket, in_day, pg_settings
from rollout_pipeline.store.tables import feedback, prediction_log

log = logging.getLogger("rollout_pipeline.store.summary")  # the day summary's messages, under its one name

STABLE_ANSWER_WINDOW = dt.timedelta(minutes=1)  # an extreme's stable answer is searched this close in time
# The (model_name, sample_bucket, ts) index holds the rows of buckets below this (migration 0008): the samples of
# days of more than 100,000 requests per population. A query uses it only when its WHERE says so with this literal.
INDEXED_BUCKETS = 1_000


def sample_and_extreme_rows(connection: sa.Connection, model_name: str, day: dt.date, thresholds: dict[Key, int],
                            candidate: str, t_hi: float | None, t_lo: float | None,
                            sample_rows: int, *, unbucketed: bool = True,
                            present: set[Key] | None = None) -> tuple[list[LogRow], bool]:
    """The hash sample's rows and the candidate's rows at or beyond the extreme thresholds, together.

    The sample: every row whose correlation id's bucket is below its side's threshold (a
    side is a variant's served or shadow answers; both halves of a pair share one). Rows
    carry the bucket the writer stored (``sample_bucket``), read by the (model_name,
    sample_bucket, ts) index: a day's sample costs its own rows, not a scan. Only what
    needs the day's rows is scanned, in one pass: the extremes (a cheap filter on the
    candidate's outputs) and the rows written without a bucket (``unbucketed``: older rows,
    other writers), whose ids are hashed as before — the same bucket the writer stores, so
    the result is the same whichever way a row got its bucket.
    ``present``: the populations the day has rows of (the others' thresholds, whole, would widen the
    index range to every bucket).
    The fetch is capped (LIMIT); if the cap is reached (a degenerate day, e.g. one prediction value repeated
    millions of times) the sample is fetched alone and False says the extremes must be queried.
    """
    p = prediction_log.c
    hb = hash_bucket(p.correlation_id)
    sb = p.sample_bucket
    if present is not None:
        thresholds = {key: t for key, t in thresholds.items() if key in present}
    stored = [sa.and_(p.variant == v, p.served == s, sb < t) for (v, s), t in thresholds.items()]
    hashed = [sa.and_(p.variant == v, p.served == s, hb < t) for (v, s), t in thresholds.items()]
    beyond = [c for c in ((p.prediction >= t_hi) if t_hi is not None else None,
                          (p.prediction <= t_lo) if t_lo is not None else None) if c is not None]
    # An extreme row the stored sample already returns is left out of the scan's part (no row twice).
    extremes = ([sa.and_(p.variant == candidate, finite_prediction(), sa.or_(*beyond),
                         sa.not_(sa.func.coalesce(sa.or_(*stored), False)))]
                if beyond and stored else
                [sa.and_(p.variant == candidate, finite_prediction(), sa.or_(*beyond))] if beyond else [])
    cap = 3 * POPULATIONS * sample_rows + 2 * EXTREME_FETCH_MAX
    columns = (p.correlation_id, p.variant, p.served, p.entity_id, p.latency_ms, p.status, p.prediction, p.label,
               p.ts)

    def fetch(with_extremes: bool, limit: int | None) -> list[LogRow]:
        parts = []
        if stored:
            top = max(thresholds.values())
            below = sb < top
            if top <= INDEXED_BUCKETS:  # a literal, so that the planner sees the partial index applies
                below = sa.and_(below, sb < sa.literal_column(str(INDEXED_BUCKETS)))
            parts.append(sa.select(*columns, sb.label("hb"))
                         .where(in_day(model_name, day), below, sa.or_(*stored)))
        scanned = ([sa.and_(sb.is_(None), sa.or_(*hashed))] if unbucketed and hashed else []) + (
            extremes if with_extremes else [])
        if scanned:
            parts.append(sa.select(*columns, sa.func.coalesce(sb, hb).label("hb"))
                         .where(in_day(model_name, day), sa.or_(*scanned)))
        if not parts:
            return []
        union = (parts[0] if len(parts) == 1 else sa.union_all(*parts)).subquery()
        u = union.c
        query = sa.select(union).order_by(u.correlation_id, u.served.desc(), u.variant, u.ts)
        return [LogRow(*r) for r in connection.execute(query.limit(limit) if limit else query)]

    rows = fetch(True, cap)
    if len(rows) >= cap:
        log.info("sample and extremes hit the cap of %d rows: fetching them apart", cap)
        return fetch(False, None), False
    return rows, True


def extreme_side(connection: sa.Connection, model_name: str, day: dt.date, candidate: str, side: str,
                 k: int) -> list[Found]:
    """The k highest (or lowest) candidate outputs by a sorted query of their own."""
    p = prediction_log.c
    order = p.prediction.desc() if side == "high" else p.prediction.asc()
    rows = connection.execute(
        sa.select(p.correlation_id, p.prediction, p.ts)
        .where(in_day(model_name, day), p.variant == candidate, finite_prediction())
        .order_by(order, p.correlation_id)
        .limit(k)
    ).all()
    return [Found(side, r.correlation_id, float(r.prediction), r.ts) for r in rows]


def with_stable_answers(connection: sa.Connection, model_name: str, day: dt.date, stable: str,
                        found: list[Found]) -> tuple[Extreme, ...]:
    """The stable model's answer to each extreme's request, looked up near the candidate's answer in time.

    The (model_name, ts) index serves a few narrow time windows instead of a scan of the
    day: a stable answer logged more than STABLE_ANSWER_WINDOW away from the candidate's
    answer to the same request is reported as missing.
    """
    p = prediction_log.c
    ids = sorted({f.correlation_id for f in found if f.correlation_id is not None})
    stable_answers = {}
    if ids:
        windows: list[list] = []
        for ts in sorted(f.ts for f in found if f.correlation_id is not None):
            a, b = ts - STABLE_ANSWER_WINDOW, ts + STABLE_ANSWER_WINDOW
            if windows and a <= windows[-1][1]:
                windows[-1][1] = b
            else:
                windows.append([a, b])
        near = sa.or_(*(sa.and_(p.ts >= a, p.ts <= b) for a, b in windows))
        with pg_settings(connection, jit="off"):  # JIT compilation would cost ~0.3 s for a ~20 ms index lookup
            rows = connection.execute(
                sa.select(p.correlation_id, p.prediction)
                .where(in_day(model_name, day), near, p.variant == stable, p.correlation_id.in_(ids))
                .order_by(p.ts)
            ).all()
        for r in rows:
            stable_answers.setdefault(r.correlation_id, None if r.prediction is None else float(r.prediction))
    return tuple(Extreme(f.correlation_id, f.prediction, stable_answers.get(f.correlation_id), f.side)
                 for f in found)


SAMPLE_FEEDBACK_KINDS = ("actual", "complaint")


def sample_feedback(connection: sa.Connection, model_name: str, rows: list[LogRow], thresholds: dict[Key, int],
                    lo: dt.datetime, hi: dt.datetime) -> list[FeedbackItem]:
    """The ``actual`` and ``complaint`` feedback with ts in [lo, hi) about the sampled rows' requests only.

    One pass over the model's feedback in the window with the sampled correlation ids
    as one parameter (a hashed array on PostgreSQL, a json_each set on SQLite): what
    comes back is bounded by the sample, and the day is not read again.
    """
    ids = sorted({r.correlation_id for r in rows
                  if r.correlation_id and in_sample(r.variant, r.served, r.bucket, thresholds)})
    if not ids:
        return []
    f = feedback.c
    if connection.dialect.name == "postgresql":
        among = f.correlation_id == sa.any_(sa.bindparam("sample_ids", ids, type_=postgresql.ARRAY(sa.Text)))
    else:
        listed = sa.func.json_each(sa.bindparam("sample_ids", json.dumps(ids))).table_valued("value")
        among = f.correlation_id.in_(sa.select(listed.c.value))
    query = (sa.select(f.correlation_id, f.kind, f.ts, f.value, f.label)
             .where(f.model_name == model_name, f.ts >= lo, f.ts < hi, f.kind.in_(SAMPLE_FEEDBACK_KINDS), among)
             .order_by(f.correlation_id, f.ts, f.kind, f.value, f.label))
    return [FeedbackItem(*r) for r in connection.execute(query)]
