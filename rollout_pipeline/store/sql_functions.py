"""The SQL building blocks of the day-summary scans (``store.day_scans``, ``store.sample_scans``).

Functions PostgreSQL and SQLite spell differently (SQLite's are registered on its
connections by ``store.engine``), the row filters and the per-query PostgreSQL settings.
"""

from __future__ import annotations

import contextlib
import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from rollout_pipeline.domain.collect import HASH_BUCKETS, day_bounds
from rollout_pipeline.domain.summary import ABSURD_VALUE
from rollout_pipeline.store.tables import prediction_log


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


def is_finite(column):
    """True for a finite, not absurd number (|x| < ABSURD_VALUE). In PostgreSQL NaN sorts above
    +Infinity, so the two comparisons also exclude NaN; SQLite stores NaN as NULL."""
    return sa.and_(column.is_not(None), column < ABSURD_VALUE, column > -ABSURD_VALUE)


def is_valid_latency(column):
    """A finite latency >= 0 and below ABSURD_VALUE (two comparisons: in PostgreSQL NaN sorts above +Infinity)."""
    return sa.and_(column >= 0, column < ABSURD_VALUE)


def is_finite_fast(column):
    """True for a finite, not absurd number, NULL for NULL (NaN sorts above everything in PostgreSQL)."""
    return sa.and_(column < ABSURD_VALUE, column > -ABSURD_VALUE)


def is_nonfinite(column):
    """True for NaN, the infinities and absurd numbers (|x| >= ABSURD_VALUE); NULL for NULL."""
    return sa.or_(column >= ABSURD_VALUE, column <= -ABSURD_VALUE)

def in_day(model_name: str, day: dt.date):
    p = prediction_log.c
    lo, hi = day_bounds(day)
    return sa.and_(p.model_name == model_name, p.ts >= lo, p.ts < hi)


def finite_prediction():
    return is_finite(prediction_log.c.prediction)

@contextlib.contextmanager
def pg_settings(connection: sa.Connection, **settings: str):
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

