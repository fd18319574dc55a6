"""Small queries the serving layer and its tests need: counting and reading back log rows.

The log writer uses ``count_same_rows`` after a failed or interrupted write, to
learn whether the batch committed after all (a connection lost during COMMIT,
or a crash between the commit and the removal of the spill segment); that is
what makes the replay of a spill segment exactly-once without a schema change.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from rollout_pipeline.store.tables import IDENTITY_COLUMNS, feedback, prediction_log

_TABLES = {"prediction_log": prediction_log, "feedback": feedback}


def _utc(ts: dt.datetime) -> dt.datetime:
    return ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts.astimezone(dt.UTC)


def _ts_param(connection: sa.Connection, ts: dt.datetime) -> Any:
    ts = _utc(ts)
    # SQLite stores naive UTC text in the bulk writer's format; compare against that.
    return ts.replace(tzinfo=None) if connection.dialect.name == "sqlite" else ts


def count_same_rows(connection: sa.Connection, table: str, row: Sequence[Any]) -> int:
    """How many stored rows of ``table`` have the identity columns of ``row`` (a tuple in contract order)."""
    t = _TABLES[table]
    columns = [c.name for c in t.columns]
    values = dict(zip(columns, row))
    conditions = []
    for name in IDENTITY_COLUMNS[table]:
        value = values[name]
        if name == "ts":
            conditions.append(t.c.ts == _ts_param(connection, value))
        elif value is None:
            conditions.append(t.c[name].is_(None))
        else:
            conditions.append(t.c[name] == value)
    return connection.execute(sa.select(sa.func.count()).select_from(t).where(*conditions)).scalar_one()


def count_rows(
    connection: sa.Connection,
    table: str,
    model_name: str | None = None,
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> int:
    """Rows of ``table`` (optionally of one model, with ``start <= ts < end``)."""
    t = _TABLES[table]
    query = sa.select(sa.func.count()).select_from(t)
    if model_name is not None:
        query = query.where(t.c.model_name == model_name)
    if start is not None:
        query = query.where(t.c.ts >= _ts_param(connection, start))
    if end is not None:
        query = query.where(t.c.ts < _ts_param(connection, end))
    return connection.execute(query).scalar_one()


def duplicate_identities(connection: sa.Connection, table: str, model_name: str | None = None) -> int:
    """How many row identities of ``table`` are stored more than once (0 means no duplicates)."""
    t = _TABLES[table]
    keys = [t.c[name] for name in IDENTITY_COLUMNS[table]]
    inner = sa.select(*keys).select_from(t)
    if model_name is not None:
        inner = inner.where(t.c.model_name == model_name)
    inner = inner.group_by(*keys).having(sa.func.count() > 1).subquery()
    return connection.execute(sa.select(sa.func.count()).select_from(inner)).scalar_one()


def read_rows(
    connection: sa.Connection,
    table: str,
    model_name: str,
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    limit: int | None = None,
) -> list[sa.Row]:
    """The model's rows of ``table`` in ``[start, end)``, oldest first (for tests and small demo days only).

    The log contract's columns only (not the sample bucket the writer adds to ``prediction_log``)."""
    t = _TABLES[table]
    query = sa.select(*(c for c in t.columns if c.name != "sample_bucket")).where(t.c.model_name == model_name)
    if start is not None:
        query = query.where(t.c.ts >= _ts_param(connection, start))
    if end is not None:
        query = query.where(t.c.ts < _ts_param(connection, end))
    query = query.order_by(t.c.ts)
    if limit is not None:
        query = query.limit(limit)
    return connection.execute(query).all()
