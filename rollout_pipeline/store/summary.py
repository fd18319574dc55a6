"""The day-summary queries: a model's day reduced to aggregates and a bounded sample.

Everything is computed SQL-side (grouped aggregates and histograms); only small
result sets and a hash sample of at most ``sample_rows`` requests per population come
back, so memory does not grow with the day's row count. The same queries run on
PostgreSQL and SQLite; the few functions SQLite lacks are registered on its
connections by ``store.engine``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from rollout_pipeline.domain.collect import (
    EXTREME_FETCH_MAX,
    FEEDBACK_WINDOW,
    HASH_BUCKETS,
    POPULATIONS,
    SAMPLE_REQUESTS,
    CountRow,
    FeedbackAgg,
    FeedbackItem,
    Found,
    GroupRow,
    LogRow,
    Key,
    Moments,
    collect_with,
    day_bounds,
    in_sample,
)
from rollout_pipeline.domain.summary import (
    ABSURD_VALUE,
    LATENCY_BINS_PER_E,
    PREDICTION_BINS,
    DaySummary,
    Extreme,
)
from rollout_pipeline.store.tables import feedback, prediction_log

log = logging.getLogger(__name__)

STABLE_ANSWER_WINDOW = dt.timedelta(minutes=1)  # an extreme's stable answer is searched this close in time
# The (model_name, sample_bucket, ts) index holds the rows of buckets below this (migration 0008): the samples of
# days of more than 100,000 requests per population. A query uses it only when its WHERE says so with this literal.
INDEXED_BUCKETS = 1_000


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


def _finite(column):
    """True for a finite, not absurd number (|x| < ABSURD_VALUE). In PostgreSQL NaN sorts above
    +Infinity, so the two comparisons also exclude NaN; SQLite stores NaN as NULL."""
    return sa.and_(column.is_not(None), column < ABSURD_VALUE, column > -ABSURD_VALUE)


def _valid_latency(column):
    """A finite latency >= 0 and below ABSURD_VALUE (two comparisons: in PostgreSQL NaN sorts above +Infinity)."""
    return sa.and_(column >= 0, column < ABSURD_VALUE)


def _finite_fast(column):
    """True for a finite, not absurd number, NULL for NULL (NaN sorts above everything in PostgreSQL)."""
    return sa.and_(column < ABSURD_VALUE, column > -ABSURD_VALUE)


def _nonfinite(column):
    """True for NaN, the infinities and absurd numbers (|x| >= ABSURD_VALUE); NULL for NULL."""
    return sa.or_(column >= ABSURD_VALUE, column <= -ABSURD_VALUE)


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
    """The scans below on one connection (``domain.collect.DayScans``)."""

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


# --- the scans: each returns plain rows (see domain.collect) ------------------------------------------


def _in_day(model_name: str, day: dt.date):
    p = prediction_log.c
    lo, hi = day_bounds(day)
    return sa.and_(p.model_name == model_name, p.ts >= lo, p.ts < hi)


def _finite_prediction():
    return _finite(prediction_log.c.prediction)


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
    valid_latency = sa.and_(_valid_latency(p.latency_ms), p.status.is_distinct_from("shed"))
    finite = _finite_fast(p.prediction)
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
            sa.func.count().filter(_nonfinite(p.prediction)).label("nonfinite"),
            # Sums of the finite, not absurd predictions only: in PostgreSQL 1e200 * 1e200 is an error.
            sa.func.sum(p.prediction).filter(finite).label("pred_sum"),
            sa.func.sum(p.prediction * p.prediction).filter(finite).label("pred_sq"),
            sa.func.min(p.prediction).label("pred_min"),
            sa.func.max(p.prediction).label("pred_max"),
            sa.func.count().filter(p.status == "shed").label("shed"),
            (sa.func.count() - sa.func.count(p.sample_bucket)).label("unbucketed"),
        )
        .where(_in_day(model_name, day))
        .group_by(p.variant, p.served, bucket)
    )
    with _settings(connection, **GROUPED_SCAN_SETTINGS):
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
        .where(_in_day(model_name, day), _finite_prediction())
        .group_by(p.variant, p.served)
    )]


def variant_counts(connection: sa.Connection, model_name: str, day: dt.date) -> dict[tuple[str, bool], int]:
    """Rows per (variant, served) of a day (for the sample thresholds of a day read for its late labels)."""
    return variant_scan(connection, model_name, day)[0]


def variant_scan(connection: sa.Connection, model_name: str, day: dt.date) -> tuple[dict[Key, int], int]:
    """``variant_counts``, and how many of the day's rows have no stored sample bucket."""
    p = prediction_log.c
    with _settings(connection, **GROUPED_SCAN_SETTINGS):
        rows = connection.execute(
            sa.select(p.variant, p.served, sa.func.count().label("n"),
                      (sa.func.count() - sa.func.count(p.sample_bucket)).label("unbucketed"))
            .where(_in_day(model_name, day)).group_by(p.variant, p.served)).all()
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
        (sa.or_(p.prediction.is_(None), sa.not_(_finite_fast(p.prediction))), None),
        (p.prediction >= high, PREDICTION_BINS - 1),
        else_=sa.cast(sa.func.floor((p.prediction - low) / width), sa.Integer),
    )
    with _settings(connection, **GROUPED_SCAN_SETTINGS):
        return [CountRow(r.variant, bool(r.served), r.b, int(r.n)) for r in connection.execute(
            sa.select(p.variant, p.served, pbucket.label("b"), sa.func.count().label("n"))
            .where(_in_day(model_name, day))
            .group_by(p.variant, p.served, pbucket)
        )]


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
    extremes = ([sa.and_(p.variant == candidate, _finite_prediction(), sa.or_(*beyond),
                         sa.not_(sa.func.coalesce(sa.or_(*stored), False)))]
                if beyond and stored else
                [sa.and_(p.variant == candidate, _finite_prediction(), sa.or_(*beyond))] if beyond else [])
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
                         .where(_in_day(model_name, day), below, sa.or_(*stored)))
        scanned = ([sa.and_(sb.is_(None), sa.or_(*hashed))] if unbucketed and hashed else []) + (
            extremes if with_extremes else [])
        if scanned:
            parts.append(sa.select(*columns, sa.func.coalesce(sb, hb).label("hb"))
                         .where(_in_day(model_name, day), sa.or_(*scanned)))
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
        .where(_in_day(model_name, day), p.variant == candidate, _finite_prediction())
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
        with _settings(connection, jit="off"):  # JIT compilation would cost ~0.3 s for a ~20 ms index lookup
            rows = connection.execute(
                sa.select(p.correlation_id, p.prediction)
                .where(_in_day(model_name, day), near, p.variant == stable, p.correlation_id.in_(ids))
                .order_by(p.ts)
            ).all()
        for r in rows:
            stable_answers.setdefault(r.correlation_id, None if r.prediction is None else float(r.prediction))
    return tuple(Extreme(f.correlation_id, f.prediction, stable_answers.get(f.correlation_id), f.side)
                 for f in found)


def label_counts(connection: sa.Connection, model_name: str, day: dt.date) -> list[CountRow]:
    """The most frequent labels per (variant, served) (item lists make many distinct ones: top 500 overall)."""
    p = prediction_log.c
    return [CountRow(r.variant, bool(r.served), r.label, int(r.n)) for r in connection.execute(
        sa.select(p.variant, p.served, p.label, sa.func.count().label("n"))
        .where(_in_day(model_name, day), p.label.is_not(None))
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
    finite = _finite_prediction()
    with _settings(connection, **FEEDBACK_JOIN_SETTINGS):
        return [FeedbackAgg(r.variant, bool(r.served), r.kind, int(r.n), r.abs_err, r.acc, int(r.broken))
                for r in connection.execute(
            sa.select(
                p.variant,
                p.served,
                f.kind,
                sa.func.count().label("n"),
                sa.func.avg(sa.case((sa.and_(finite, _finite_fast(f.value)),
                                     sa.func.abs(p.prediction - f.value)))).label("abs_err"),
                sa.func.avg(sa.case((f.label.is_not(None),
                                     sa.case((p.label == f.label, 1.0), else_=0.0)))).label("acc"),
                sa.func.count().filter(_nonfinite(f.value)).label("broken"),  # NaN sorts above +Infinity
            )
            .select_from(feedback.join(prediction_log, p.correlation_id == f.correlation_id))
            .where(_in_day(model_name, day), unindexed(f.model_name) == model_name, unindexed(f.ts) >= lo,
                   unindexed(f.ts) < hi + FEEDBACK_WINDOW)
            .group_by(p.variant, p.served, f.kind)
        )]


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


def traffic_of_day(connection: sa.Connection, model_name: str, day: dt.date) -> tuple[int, int, int, int]:
    """(served requests, distinct entities served, served errors and timeouts, rows answered in shadow) of a day:
    what a rollout's plan reads of the last days (``planning``)."""
    p = prediction_log.c
    row = connection.execute(
        sa.select(sa.func.count().filter(p.served),
                  sa.func.count(sa.distinct(sa.case((p.served, p.entity_id)))),
                  sa.func.count().filter(p.served, p.status != "ok"),
                  sa.func.count().filter(sa.not_(p.served)))
        .where(_in_day(model_name, day))).one()
    return tuple(int(v or 0) for v in row)


def feedback_of_days(connection: sa.Connection, model_name: str, start: dt.date, end: dt.date) -> dict[str, int]:
    """Feedback rows per kind that arrived from ``start`` to ``end`` (UTC days, inclusive)."""
    f = feedback.c
    lo, _ = day_bounds(start)
    _, hi = day_bounds(end)
    return {r.kind: int(r.n) for r in connection.execute(
        sa.select(f.kind, sa.func.count().label("n"))
        .where(f.model_name == model_name, f.ts >= lo, f.ts < hi).group_by(f.kind))}
