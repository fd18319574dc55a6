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
``_well_formed``); a chunk that is not plainly well formed is checked row by row,
which names the first bad row. On PostgreSQL all chunks of a batch stream through
one ``COPY``. ``benchmarks/bench_bulk_write.py`` measures this against raw COPY.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import math
import operator
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa

from rollout_pipeline.domain.records import FEEDBACK_COLUMNS, PREDICTION_COLUMNS
from rollout_pipeline.domain.summary import ABSURD_VALUE
from rollout_pipeline.store.buckets import blake2b_buckets, hashtext_buckets
from rollout_pipeline.store.engine import is_postgres
from rollout_pipeline.store.partitions import ensure_day_partitions

log = logging.getLogger(__name__)

UTC = dt.UTC
# Rows checked and converted at a time. On PostgreSQL the chunks stream through one COPY,
# so the server stores a chunk while the next one is formatted here; a chunk small enough
# to sit in the socket's buffers keeps both busy (1M rows, 2 cores: 5,000 rows a chunk
# reached 84-100% of raw COPY's rate, 50,000 only 59-72%; benchmarks/bench_bulk_write.py).
CHUNK_ROWS = 5_000

# COPY text format: these characters must be escaped inside a field.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"  # the storage format SQLAlchemy's SQLite DateTime reads back


class ContractError(ValueError):
    """A row of a batch breaks the log contract in a way that cannot be stored; nothing was written."""

    def __init__(self, index: int, field: str, problem: str, row: Any):
        self.index, self.field, self.problem = index, field, problem
        super().__init__(f"row {index}: {field} {problem} (row: {_short(row)}); nothing of this batch was written")


def _short(row: Any) -> str:
    text = repr(row)
    return text if len(text) <= 300 else text[:297] + "..."


# Field kinds: how each column is checked and rendered.
_REQUIRED_TEXT, _TEXT, _FLOAT, _BOOL, _TS = "required_text", "text", "float", "bool", "ts"
_FINITE = "finite"  # a number (or None) that must be finite and below ABSURD_VALUE in magnitude

_PREDICTION_KINDS = {
    "correlation_id": _TEXT,
    "ts": _TS,
    "model_name": _REQUIRED_TEXT,
    "variant": _REQUIRED_TEXT,
    "served": _BOOL,
    "entity_id": _TEXT,
    "latency_ms": _FLOAT,
    "status": _TEXT,
    "prediction": _FLOAT,
    "label": _TEXT,
}
_FEEDBACK_KINDS = {
    "correlation_id": _TEXT,
    "ts": _TS,
    "model_name": _REQUIRED_TEXT,
    "kind": _REQUIRED_TEXT,
    "value": _FINITE,
    "label": _TEXT,
}


def _as_tuple(row: Any, columns: Sequence[str], index: int) -> tuple:
    if isinstance(row, tuple):
        if len(row) != len(columns):
            raise ContractError(index, "row", f"has {len(row)} fields, expected {len(columns)} {tuple(columns)}", row)
        return row
    if isinstance(row, Mapping):
        unknown = set(row) - set(columns)
        if unknown:
            raise ContractError(index, "row", f"has unknown fields {sorted(unknown)}", row)
        return tuple(row.get(c) for c in columns)
    raise ContractError(index, "row", f"is a {type(row).__name__}, expected a tuple or a mapping", row)


def _utc(value: Any, index: int, row: Any) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise ContractError(index, "ts", f"must be a datetime, got {type(value).__name__}", row)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    if value.utcoffset():
        return value.astimezone(UTC)
    return value


def _check(value: Any, kind: str, field: str, index: int, row: Any) -> None:
    """Raise ContractError when ``value`` cannot be stored in a column of ``kind``."""
    if kind == _REQUIRED_TEXT:
        if not isinstance(value, str) or not value:
            raise ContractError(index, field, "is required (a non-empty string)", row)
    elif kind == _TEXT:
        if value is not None and not isinstance(value, str):
            raise ContractError(index, field, f"must be a string or None, got {type(value).__name__}", row)
    elif kind == _FLOAT or kind == _FINITE:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ContractError(index, field, f"must be a number or None, got {type(value).__name__}", row)
        if kind == _FINITE and value is not None and not _sane(value):
            raise ContractError(index, field, f"must be a finite number with |x| < {ABSURD_VALUE:g}, got {value!r}",
                                row)
    elif kind == _BOOL:
        if not isinstance(value, bool):
            raise ContractError(index, field, f"must be true or false, got {value!r}", row)
    if isinstance(value, str):
        if "\x00" in value:
            raise ContractError(index, field, "contains a NUL character", row)
        if not _encodable(value):
            raise ContractError(index, field, "is not valid unicode (a lone surrogate cannot be stored)", row)


def _encodable(text: str) -> bool:
    """False for text with lone surrogates, which neither UTF-8 nor the databases can hold."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _sane(value: float) -> bool:
    """True for a finite number below ABSURD_VALUE in magnitude (False for NaN and infinities)."""
    return -ABSURD_VALUE < value < ABSURD_VALUE


def _validated(rows: Iterable[Any], kinds: Mapping[str, str], start: int = 0) -> Iterable[tuple[int, tuple, dt.datetime]]:
    """Yield (index, row tuple, UTC ts) for every row, raising ContractError on the first bad one.

    The precise, field-by-field check: it runs on a chunk only when the chunk-level
    check (``_well_formed``) did not accept it, and it names the first bad row.
    """
    columns = tuple(kinds)
    kind_list = tuple(kinds.values())
    ts_pos = columns.index("ts")
    for index, raw in enumerate(rows, start):
        row = _as_tuple(raw, columns, index)
        ts = _utc(row[ts_pos], index, raw)
        for value, kind, field in zip(row, kind_list, columns):
            if kind == _TS:
                continue
            _check(value, kind, field, index, raw)
        yield index, row, ts


def _copy_text(row: tuple, kinds: tuple[str, ...], ts: dt.datetime) -> str:
    out = []
    for value, kind in zip(row, kinds):
        if kind == _TS:
            out.append(ts.isoformat())
        elif value is None:
            out.append("\\N")
        elif kind == _BOOL:
            out.append("t" if value else "f")
        elif kind == _FLOAT or kind == _FINITE:
            out.append(repr(float(value)))
        else:
            out.append(value.translate(_COPY_ESCAPES))
    return "\t".join(out)


def _sqlite_value(value: Any, kind: str, ts: dt.datetime) -> Any:
    if kind == _TS:
        return ts.replace(tzinfo=None).strftime(_SQLITE_TS)
    if (kind == _FLOAT or kind == _FINITE) and value is not None:
        value = float(value)
        return None if math.isnan(value) else value
    return value


# --- The fast path: a whole chunk checked and converted column by column ---------------------
#
# Per-row Python code costs more than PostgreSQL's own COPY parsing, so a chunk of rows is
# transposed into columns and each column is checked with a few C-level passes (the set of
# its exact value types, an empty-string test, one scan for NUL and COPY's special
# characters). The checks accept only values the precise check accepts too; a chunk they do
# not accept (a bad row, a mapping, a subclass such as numpy.float64, a non-UTC time zone)
# goes through ``_validated`` row by row, which raises the same ContractError as before or
# hands back normalized rows. Both paths produce the same text and the same SQLite values.

_NONE = type(None)
_STR_TYPES = frozenset({str, _NONE})
_NUMBER_TYPES = frozenset({float, int, _NONE})  # exact types: bool (a subclass of int) is not in it
_NAIVE_OR_UTC = frozenset({None, UTC})
_COPY_SPECIALS = ("\\", "\t", "\n", "\r")
_COPY_BOOL = {True: "t", False: "f"}
_ts_date = dt.datetime.date
_ts_time = dt.datetime.time  # the wall time without tzinfo: naive and UTC values are both UTC
_tzinfo = operator.attrgetter("tzinfo")
_sqlite_time = operator.methodcaller("isoformat", "microseconds")


class _Columns(NamedTuple):
    values: list[tuple]  # one tuple per column
    types: list[frozenset]  # the exact types found in each column
    escape: list[bool]  # per column: text containing a character COPY must escape
    days: set[dt.date]  # UTC days of the chunk's timestamps


def _well_formed(chunk: Sequence[Any], kinds: tuple[str, ...]) -> _Columns | None:
    """The chunk as checked columns, or None when any row needs the precise per-row check."""
    if not all(issubclass(t, tuple) for t in set(map(type, chunk))) or set(map(len, chunk)) != {len(kinds)}:
        return None
    values = list(zip(*chunk))
    types, escape, days = [], [], set()
    for column, kind in zip(values, kinds):
        found = frozenset(map(type, column))
        special = False
        if kind == _TS:
            if found != {dt.datetime} or not set(map(_tzinfo, column)) <= _NAIVE_OR_UTC:
                return None
            days = set(map(_ts_date, column))
        elif kind == _REQUIRED_TEXT or kind == _TEXT:
            if kind == _REQUIRED_TEXT and (found != {str} or "" in column):
                return None
            if not found <= _STR_TYPES:
                return None
            text = "".join(filter(None, column))
            if "\x00" in text or not _encodable(text):
                return None
            special = any(c in text for c in _COPY_SPECIALS)
        elif kind == _FLOAT or kind == _FINITE:
            if not found <= _NUMBER_TYPES:
                return None
            if kind == _FINITE and not all(v is None or _sane(v) for v in column):
                return None
        elif kind == _BOOL:
            if found != {bool}:
                return None
        types.append(found)
        escape.append(special)
    return _Columns(values, types, escape, days)


def _bucket_text(buckets: list[int | None]) -> list[str]:
    return ["\\N" if b is None else str(b) for b in buckets]


def _fast_copy_text(cols: _Columns, kinds: tuple[str, ...], buckets: list[int | None] | None = None) -> str:
    """COPY text of checked columns: the same text ``_copy_text`` makes row by row (and the buckets last)."""
    out: list[Iterable[str]] = []
    for column, kind, found, escape in zip(cols.values, kinds, cols.types, cols.escape):
        if kind == _TS:
            times = map(dt.time.isoformat, map(_ts_time, column))
            if len(cols.days) == 1:
                (day,) = cols.days
                out.append(map(f"{day.isoformat()}T%s+00:00".__mod__, times))
            else:
                dates = map(dt.date.isoformat, map(_ts_date, column))
                out.append(map("%sT%s+00:00".__mod__, zip(dates, times)))
        elif kind == _BOOL:
            out.append(map(_COPY_BOOL.__getitem__, column))
        elif kind == _FLOAT or kind == _FINITE:
            if int in found:
                out.append(["\\N" if v is None else repr(float(v)) for v in column])
            elif _NONE in found:
                out.append(["\\N" if v is None else repr(v) for v in column])
            else:
                out.append(map(float.__repr__, column))
        elif escape:
            out.append(["\\N" if v is None else v.translate(_COPY_ESCAPES) for v in column])
        elif _NONE in found:
            out.append(["\\N" if v is None else v for v in column])
        else:
            out.append(column)
    if buckets is not None:
        out.append(_bucket_text(buckets))
    return "\n".join(map("\t".join, zip(*out))) + "\n"


def _fast_sqlite_rows(cols: _Columns, kinds: tuple[str, ...]) -> list[tuple] | None:
    """Insert parameters of checked columns (as ``_sqlite_value`` makes them), or None."""
    if cols.days and min(cols.days).year < 1000:
        return None  # strftime("%Y") does not zero-pad such years; isoformat does: keep one format
    out: list[Iterable[Any]] = []
    for column, kind, found in zip(cols.values, kinds, cols.types):
        if kind == _TS:
            dates = map(dt.date.isoformat, map(_ts_date, column))
            out.append(map("%s %s".__mod__, zip(dates, map(_sqlite_time, map(_ts_time, column)))))
        elif kind == _FLOAT or kind == _FINITE:
            if int in found:
                column = [None if v is None else float(v) for v in column]
            out.append([v if v == v else None for v in column])  # NaN -> NULL; None == None stays
        else:
            out.append(column)
    return list(zip(*out))


# The sample bucket of each row's correlation id (the first column), computed as the database would hash it when
# reading the sample (store.buckets); None for tables without one.
BucketFunction = Callable[[Sequence[str | None]], list[int | None]]


def _chunk_for_copy(chunk: list, start: int, kinds: Mapping[str, str], days: set[dt.date],
                    bucket_of: BucketFunction | None = None) -> str:
    kind_list = tuple(kinds.values())
    cols = _well_formed(chunk, kind_list)
    if cols is None:
        checked = list(_validated(chunk, kinds, start))  # raises ContractError naming the first bad row
        ts_pos = tuple(kinds).index("ts")
        normalized = [row[:ts_pos] + (ts,) + row[ts_pos + 1:] for _, row, ts in checked]
        cols = _well_formed(normalized, kind_list)
        if cols is None:  # valid, but with values of unusual types: the generic row-by-row text
            days.update(ts.date() for _, _, ts in checked)
            lines = [_copy_text(row, kind_list, ts) for _, row, ts in checked]
            if bucket_of is not None:
                buckets = _bucket_text(bucket_of([row[0] for _, row, _ in checked]))
                lines = [f"{line}\t{b}" for line, b in zip(lines, buckets)]
            return "".join(line + "\n" for line in lines)
    days.update(cols.days)
    return _fast_copy_text(cols, kind_list, None if bucket_of is None else bucket_of(cols.values[0]))


def _chunk_for_sqlite(chunk: list, start: int, kinds: Mapping[str, str],
                      bucket_of: BucketFunction | None = None) -> list[tuple]:
    kind_list = tuple(kinds.values())
    cols = _well_formed(chunk, kind_list)
    rows = _fast_sqlite_rows(cols, kind_list) if cols is not None else None
    if rows is None:
        rows = [tuple(_sqlite_value(v, k, ts) for v, k in zip(row, kind_list))
                for _, row, ts in _validated(chunk, kinds, start)]
    if bucket_of is not None:
        rows = [(*row, b) for row, b in zip(rows, bucket_of([row[0] for row in rows]))]
    return rows


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
            return _chunk_for_copy(chunk, start, kinds, days, bucket_of)
        return _chunk_for_sqlite(chunk, start, kinds, bucket_of)  # SQLite has no partitions: no days to note

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
    kinds = {"prediction_log": _PREDICTION_KINDS, "feedback": _FEEDBACK_KINDS}[table]

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
    return _write(engine, "prediction_log", _PREDICTION_KINDS, rows, chunk_rows)


def write_feedback(engine: sa.Engine, rows: Iterable[Any], *, chunk_rows: int = CHUNK_ROWS) -> int:
    """Append feedback rows (``FeedbackRow``s, tuples in contract order, or mappings); all or nothing."""
    return _write(engine, "feedback", _FEEDBACK_KINDS, rows, chunk_rows)


assert tuple(_PREDICTION_KINDS) == PREDICTION_COLUMNS
assert tuple(_FEEDBACK_KINDS) == FEEDBACK_COLUMNS
