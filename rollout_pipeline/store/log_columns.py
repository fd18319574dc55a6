"""The fast path of the log writes: a whole chunk checked and converted column by column.

A chunk the column checks do not accept goes through ``store.log_rows`` row by row;
both paths produce the same COPY text and the same SQLite values.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from rollout_pipeline.store.log_rows import (
    BOOL,
    COPY_ESCAPES,
    FINITE,
    FLOAT,
    REQUIRED_TEXT,
    TEXT,
    TS,
    UTC,
    copy_text,
    encodable,
    sane,
    sqlite_value,
    validated,
)


# --- The fast path: a whole chunk checked and converted column by column ---------------------
#
# Per-row Python code costs more than PostgreSQL's own COPY parsing, so a chunk of rows is
# transposed into columns and each column is checked with a few C-level passes (the set of
# its exact value types, an empty-string test, one scan for NUL and COPY's special
# characters). The checks accept only values the precise check accepts too; a chunk they do
# not accept (a bad row, a mapping, a subclass such as numpy.float64, a non-UTC time zone)
# goes through ``validated`` row by row, which raises the same ContractError as before or
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
        if kind == TS:
            if found != {dt.datetime} or not set(map(_tzinfo, column)) <= _NAIVE_OR_UTC:
                return None
            days = set(map(_ts_date, column))
        elif kind == REQUIRED_TEXT or kind == TEXT:
            if kind == REQUIRED_TEXT and (found != {str} or "" in column):
                return None
            if not found <= _STR_TYPES:
                return None
            text = "".join(filter(None, column))
            if "\x00" in text or not encodable(text):
                return None
            special = any(c in text for c in _COPY_SPECIALS)
        elif kind == FLOAT or kind == FINITE:
            if not found <= _NUMBER_TYPES:
                return None
            if kind == FINITE and not all(v is None or sane(v) for v in column):
                return None
        elif kind == BOOL:
            if found != {bool}:
                return None
        types.append(found)
        escape.append(special)
    return _Columns(values, types, escape, days)


def _bucket_text(buckets: list[int | None]) -> list[str]:
    return ["\\N" if b is None else str(b) for b in buckets]


def _fast_copy_text(cols: _Columns, kinds: tuple[str, ...], buckets: list[int | None] | None = None) -> str:
    """COPY text of checked columns: the same text ``copy_text`` makes row by row (and the buckets last)."""
    out: list[Iterable[str]] = []
    for column, kind, found, escape in zip(cols.values, kinds, cols.types, cols.escape):
        if kind == TS:
            times = map(dt.time.isoformat, map(_ts_time, column))
            if len(cols.days) == 1:
                (day,) = cols.days
                out.append(map(f"{day.isoformat()}T%s+00:00".__mod__, times))
            else:
                dates = map(dt.date.isoformat, map(_ts_date, column))
                out.append(map("%sT%s+00:00".__mod__, zip(dates, times)))
        elif kind == BOOL:
            out.append(map(_COPY_BOOL.__getitem__, column))
        elif kind == FLOAT or kind == FINITE:
            if int in found:
                out.append(["\\N" if v is None else repr(float(v)) for v in column])
            elif _NONE in found:
                out.append(["\\N" if v is None else repr(v) for v in column])
            else:
                out.append(map(float.__repr__, column))
        elif escape:
            out.append(["\\N" if v is None else v.translate(COPY_ESCAPES) for v in column])
        elif _NONE in found:
            out.append(["\\N" if v is None else v for v in column])
        else:
            out.append(column)
    if buckets is not None:
        out.append(_bucket_text(buckets))
    return "\n".join(map("\t".join, zip(*out))) + "\n"


def _fast_sqlite_rows(cols: _Columns, kinds: tuple[str, ...]) -> list[tuple] | None:
    """Insert parameters of checked columns (as ``sqlite_value`` makes them), or None."""
    if cols.days and min(cols.days).year < 1000:
        return None  # strftime("%Y") does not zero-pad such years; isoformat does: keep one format
    out: list[Iterable[Any]] = []
    for column, kind, found in zip(cols.values, kinds, cols.types):
        if kind == TS:
            dates = map(dt.date.isoformat, map(_ts_date, column))
            out.append(map("%s %s".__mod__, zip(dates, map(_sqlite_time, map(_ts_time, column)))))
        elif kind == FLOAT or kind == FINITE:
            if int in found:
                column = [None if v is None else float(v) for v in column]
            out.append([v if v == v else None for v in column])  # NaN -> NULL; None == None stays
        else:
            out.append(column)
    return list(zip(*out))


# The sample bucket of each row's correlation id (the first column), computed as the database would hash it when
# reading the sample (store.buckets); None for tables without one.
BucketFunction = Callable[[Sequence[str | None]], list[int | None]]


def chunk_for_copy(chunk: list, start: int, kinds: Mapping[str, str], days: set[dt.date],
                    bucket_of: BucketFunction | None = None) -> str:
    kind_list = tuple(kinds.values())
    cols = _well_formed(chunk, kind_list)
    if cols is None:
        checked = list(validated(chunk, kinds, start))  # raises ContractError naming the first bad row
        ts_pos = tuple(kinds).index("ts")
        normalized = [row[:ts_pos] + (ts,) + row[ts_pos + 1:] for _, row, ts in checked]
        cols = _well_formed(normalized, kind_list)
        if cols is None:  # valid, but with values of unusual types: the generic row-by-row text
            days.update(ts.date() for _, _, ts in checked)
            lines = [copy_text(row, kind_list, ts) for _, row, ts in checked]
            if bucket_of is not None:
                buckets = _bucket_text(bucket_of([row[0] for _, row, _ in checked]))
                lines = [f"{line}\t{b}" for line, b in zip(lines, buckets)]
            return "".join(line + "\n" for line in lines)
    days.update(cols.days)
    return _fast_copy_text(cols, kind_list, None if bucket_of is None else bucket_of(cols.values[0]))


def chunk_for_sqlite(chunk: list, start: int, kinds: Mapping[str, str],
                      bucket_of: BucketFunction | None = None) -> list[tuple]:
    kind_list = tuple(kinds.values())
    cols = _well_formed(chunk, kind_list)
    rows = _fast_sqlite_rows(cols, kind_list) if cols is not None else None
    if rows is None:
        rows = [tuple(sqlite_value(v, k, ts) for v, k in zip(row, kind_list))
                for _, row, ts in validated(chunk, kinds, start)]
    if bucket_of is not None:
        rows = [(*row, b) for row, b in zip(rows, bucket_of([row[0] for row in rows]))]
    return rows
