"""Bulk writes of the log contract: COPY on PostgreSQL, batched inserts on SQLite.

Contract rules at write time (documented in the README):

* A row is **rejected** — the whole batch fails with ``ContractError`` naming the
  row's position, and nothing of the batch is written — when it cannot be stored
  or attributed at all: ``ts`` missing or not a datetime, ``model_name`` /
  ``variant`` / ``kind`` missing or empty, ``served`` not a bool, a field of the
  wrong type, a NUL character or a lone surrogate in a text field (PostgreSQL cannot
  store them), or a
  feedback ``value`` that is not finite or is absurd (``|x| >= ABSURD_VALUE``):
  an outcome of 1e308 or NaN would make the day impossible to judge.
* Anything else the contract forbids is **stored as is** so that the day's
  validation flags it: a missing correlation id, an unknown status, a negative,
  missing or NaN latency, an absurd prediction. (SQLite has no NaN: there a NaN
  is stored as NULL, which the validation flags as missing.)

Naive timestamps are taken as UTC; aware ones are converted to UTC.

Speed: rows are checked and converted a chunk at a time, column by column (see
``store.log_columns``); a chunk that is not plainly well formed is checked row by row
(``store.log_rows``), which names the first bad row. On PostgreSQL all chunks of a batch
stream through one ``COPY``. ``benchmarks/bench_bulk_write.py`` measures this against raw COPY.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from rollout_pipeline.store.buckets import blake2b_buckets, hashtext_buckets
from rollout_pipeline.store.engine import is_postgres
from rollout_pipeline.store.log_columns import BucketFunction, chunk_for_copy, chunk_for_sqlite
from rollout_pipeline.store.log_rows import FEEDBACK_KINDS, PREDICTION_KINDS, UTC, ContractError
from rollout_pipeline.store.partitions import ensure_day_partitions

__all__ = ["CHUNK_ROWS", "DATA_ERRORS", "UTC", "BucketFunction", "ContractError", "unstorable_rows",
           "write_feedback", "write_predictions"]

log = logging.getLogger(__name__)

# Rows checked and converted at a time. On PostgreSQL the chunks stream through one COPY,
# so the server stores a chunk while the next one is formatted here; a chunk small enough
# to sit in the socket's buffers keeps both busy (1M rows, 2 cores: 5,000 rows a chunk
# reached 84-100% of raw COPY's rate, 50,000 only 59-72%; benchmarks/bench_bulk_write.py).
CHUNK_ROWS = 5_000


class _CopySource:
    """File-like source for ``copy_expert``: each ``read()`` validates and formats the next chunk.

    Streaming the chunks through one COPY lets the server parse and store a chunk while
    the next one is being formatted here. An exception raised in ``read()`` makes psycopg2
    abort the COPY and raise an error of its own; the original is kept in ``error``.
    """

    def __init__(self, first: str, produce: Callable[[], str]):
        self._pending: str | None = first
        self._produce = produce
        self.error: BaseException | None = None

    def read(self, _size: int = -1) -> str:
        if self._pending is not None:
            text, self._pending = self._pending, None
            return text
        try:
            return self._produce()  # "" at the end
        except BaseException as exc:
            self.error = exc
            raise


# Errors that belong to the rows, not to the database's availability: a value PostgreSQL refuses
# (out of range, bad encoding), a date the partitioning cannot represent (9999-12-31 + 1 day).
DATA_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, OverflowError, sa.exc.DataError)


class _DryRun(Exception):
    """Raised at the end of a trial write so that its transaction rolls back."""


def _write(engine: sa.Engine, table: str, kinds: Mapping[str, str], rows: Iterable[Any], chunk_rows: int,
           *, dry_run: bool = False) -> int:
    started = time.perf_counter()
    postgres = is_postgres(engine)
    bucket_of: BucketFunction | None = None
    columns = tuple(kinds)
    if table == "prediction_log":  # the sample bucket, hashed here once instead of at every read of the day
        bucket_of = hashtext_buckets if postgres else blake2b_buckets
        columns += ("sample_bucket",)
    insert_sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    copy_sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    source = iter(rows)
    days: set[dt.date] = set()
    total = 0

    def next_chunk() -> Any:
        """The next chunk, checked and converted (COPY text or insert rows); empty at the end."""
        nonlocal total
        chunk = list(itertools.islice(source, chunk_rows))
        if not chunk:
            return "" if postgres else []
        start, total = total, total + len(chunk)
        if postgres:
            return chunk_for_copy(chunk, start, kinds, days, bucket_of)
        return chunk_for_sqlite(chunk, start, kinds, bucket_of)  # SQLite has no partitions: no days to note

    first = next_chunk()
    if postgres and days:
        # Before the write transaction, in short transactions of their own: partition
        # DDL waits for writers of the parent table, so it must not run inside ours.
        ensure_day_partitions(engine, days, [table])
    partitioned_days = set(days)
    # One transaction for the batch, and rows are validated before it commits: a bad
    # row anywhere rolls the whole batch back, so a batch is written entirely or not at all.
    with engine.begin() as connection:
        if postgres and first:
            stream = _CopySource(first, next_chunk)
            with connection.connection.dbapi_connection.cursor() as cursor:
                try:
                    cursor.copy_expert(copy_sql, stream)
                except Exception:
                    if stream.error is not None:
                        raise stream.error from None  # e.g. the ContractError of a later chunk
                    raise
        elif not postgres:
            chunk = first
            while chunk:
                connection.exec_driver_sql(insert_sql, chunk)
                chunk = next_chunk()
        if dry_run:
            raise _DryRun
    if postgres and days - partitioned_days:
        # Days first seen after the first chunk: their rows went to the default
        # partition unless a partition already existed; making it now moves them.
        ensure_day_partitions(engine, days - partitioned_days, [table])
    elapsed = time.perf_counter() - started
    if total:
        log.info("wrote %d rows to %s in %.2f s (%.0f rows/s)", total, table, elapsed, total / max(elapsed, 1e-9))
    return total


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ContractError):
        return f"{exc.field} {exc.problem}"
    if isinstance(exc, sa.exc.DBAPIError):
        exc = exc.orig or exc
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:300]}"


def unstorable_rows(engine: sa.Engine, table: str, rows: Sequence[Any]) -> list[tuple[int, str]]:
    """(position, reason) of each row the database refuses; nothing is written.

    Halves of ``rows`` are tried in transactions that are rolled back, down to the single
    rows that fail with a data error (``DATA_ERRORS``). Any other error (the database is
    unreachable) propagates. Only day-partition DDL, which is harmless, may remain.
    """
    kinds = {"prediction_log": PREDICTION_KINDS, "feedback": FEEDBACK_KINDS}[table]

    def trial(lo: int, hi: int) -> list[tuple[int, str]]:
        try:
            _write(engine, table, kinds, rows[lo:hi], CHUNK_ROWS, dry_run=True)
        except _DryRun:
            return []
        except DATA_ERRORS as exc:
            if hi - lo == 1:
                return [(lo, _reason(exc))]
            mid = (lo + hi) // 2
            return trial(lo, mid) + trial(mid, hi)
        return []  # an empty slice

    return trial(0, len(rows)) if rows else []


def write_predictions(engine: sa.Engine, rows: Iterable[Any], *, chunk_rows: int = CHUNK_ROWS) -> int:
    """Append prediction log rows (``PredictionRow``s, tuples in contract order, or mappings).

    All or nothing: returns the number of rows written, or raises ``ContractError``
    and writes none.
    """
    return _write(engine, "prediction_log", PREDICTION_KINDS, rows, chunk_rows)


def write_feedback(engine: sa.Engine, rows: Iterable[Any], *, chunk_rows: int = CHUNK_ROWS) -> int:
    """Append feedback rows (``FeedbackRow``s, tuples in contract order, or mappings); all or nothing."""
    return _write(engine, "feedback", FEEDBACK_KINDS, rows, chunk_rows)
