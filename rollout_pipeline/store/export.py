"""Copy days of the log contract from the pipeline's database into the lake (``export-logs``).

Each table's rows are read with ``ts`` inside the day (feedback under its own ``ts``
day, as the lake lays it out), streamed from the database ``batch_rows`` at a time
(a server-side cursor on PostgreSQL) into a ``store.lake.LakeWriter``, which replaces
the lake's copy of the day: re-exporting never doubles a day, and a failed export
leaves the lake's days as they were. With ``models``, only those models' rows are
replaced; the other models' rows already in the lake are kept.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from rollout_pipeline.store.lake import COLUMNS, DEFAULT_BATCH_ROWS, TABLES, LakeWriter
from rollout_pipeline.store.tables import feedback, prediction_log

_TABLES = {"prediction_log": prediction_log, "feedback": feedback}
UTC = dt.UTC

# progress(table, day, rows of that table and day so far); called every ``batch_rows`` rows and at each end
Progress = Callable[[str, dt.date, int], None]


class NoLogTables(RuntimeError):
    """The database has no log tables (``init-db`` was never run against it)."""


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: rows per table from the database, rows of other models kept, the files."""

    root: str
    days: tuple[dt.date, ...]
    rows: dict[str, int]
    kept: dict[str, int]
    files: tuple[str, ...]


def export_days(engine: sa.Engine, url: str, first: dt.date, last: dt.date | None = None, *,
                models: Sequence[str] | None = None, batch_rows: int = DEFAULT_BATCH_ROWS,
                progress: Progress | None = None) -> ExportResult:
    """Replace days ``first`` .. ``last`` (inclusive; default: ``first`` only) of both log tables in the lake at
    ``url`` with the database's rows, optionally only ``models``' rows; memory bounded by ``batch_rows``."""
    last = first if last is None else last
    if last < first:
        raise ValueError(f"the last day {last} is before the first {first}")
    if batch_rows < 1:
        raise ValueError("batch_rows must be >= 1")
    days = tuple(first + dt.timedelta(days=k) for k in range((last - first).days + 1))
    chosen = tuple(dict.fromkeys(models)) if models else None
    with LakeWriter(url, batch_rows=batch_rows) as writer:  # bad URL or no pyarrow: before the database
        with engine.connect() as connection:
            missing = [t for t in TABLES if not sa.inspect(connection).has_table(t)]
            if missing:
                raise NoLogTables(f"the database has no {' or '.join(missing)} table: run rollout-pipeline init-db")
            for table in TABLES:
                writer.replace_days(table, days, only_models=chosen)
                for day in days:
                    _copy_day(connection, writer, table, day, chosen, batch_rows, progress)
    return ExportResult(root=writer.root, days=days, rows=dict(writer.rows_written), kept=dict(writer.rows_kept),
                        files=tuple(writer.files))


def _copy_day(connection: sa.Connection, writer: LakeWriter, table: str, day: dt.date,
              models: Sequence[str] | None, batch_rows: int, progress: Progress | None) -> None:
    t = _TABLES[table]
    lo = dt.datetime.combine(day, dt.time(), UTC)
    # The contract's columns (the database's sample bucket is its own hash: the lake writer computes Spark's).
    query = sa.select(*(t.c[name] for name in COLUMNS[table])).where(t.c.ts >= lo, t.c.ts < lo + dt.timedelta(days=1))
    if models:
        query = query.where(t.c.model_name.in_(models))
    result = connection.execution_options(stream_results=True, yield_per=batch_rows).execute(query)
    done = 0
    for rows in result.partitions():
        done += writer.append(table, [(r[0], _utc(r[1]), *r[2:]) for r in rows])
        if progress is not None:
            progress(table, day, done)
    if progress is not None and done == 0:
        progress(table, day, 0)


def _utc(ts: dt.datetime) -> dt.datetime:
    # SQLite gives back the naive UTC text the bulk writer stored; PostgreSQL an aware time in the session's zone.
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
