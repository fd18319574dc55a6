"""The day so far, for the intraday guardrail: one grouped scan of a model's rows since midnight (UTC)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from rollout_pipeline.domain.guardrail import SideCounts
from rollout_pipeline.domain.records import SHED
from rollout_pipeline.domain.summary import ABSURD_VALUE
from rollout_pipeline.store.tables import prediction_log


def counts_so_far(connection: sa.Connection, model: str, until: dt.datetime, *, slo_ms: float | None,
                  bounds: tuple[float, float] | None) -> dict[tuple[str, bool], SideCounts]:
    """(variant, served) -> requests, errors, slow and broken answers of ``model`` from midnight to ``until``.

    Broken: an ``ok`` answer with neither prediction nor label, or a prediction that is
    non-finite, absurd (|x| >= ABSURD_VALUE) or outside ``bounds``. In PostgreSQL NaN
    sorts above every number, so the range tests catch it; SQLite stores NaN as NULL.
    Shadow calls the mirror shed (status ``shed``: the model was never called) are not
    counted at all: they are missing evidence, neither requests nor errors.
    """
    p = prediction_log.c
    start = dt.datetime.combine(until.astimezone(dt.UTC).date(), dt.time(), dt.UTC)
    lo, hi = (bounds if bounds is not None else (-ABSURD_VALUE, ABSURD_VALUE))
    lo, hi = max(lo, -ABSURD_VALUE), min(hi, ABSURD_VALUE)
    ok = p.status == "ok"
    broken = sa.and_(ok, sa.or_(sa.and_(p.prediction.is_(None), p.label.is_(None)),
                               sa.and_(p.prediction.is_not(None), sa.or_(p.prediction < lo, p.prediction > hi))))
    slow = p.latency_ms > slo_ms if slo_ms is not None else sa.false()
    rows = connection.execute(
        sa.select(p.variant, p.served, sa.func.count().label("n"),
                  sa.func.count().filter(sa.or_(p.status.is_(None), p.status != "ok")).label("errors"),
                  sa.func.count().filter(slow).label("slow"),
                  sa.func.count().filter(broken).label("broken"))
        .where(p.model_name == model, p.ts >= start, p.ts < until, sa.or_(p.status.is_(None), p.status != SHED))
        .group_by(p.variant, p.served)
    ).all()
    return {(r.variant, bool(r.served)): SideCounts(int(r.n), int(r.errors), int(r.slow), int(r.broken))
            for r in rows}
