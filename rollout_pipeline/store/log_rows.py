"""The log contract's rules, row by row: the precise check of a row and its conversion for the database.

The check names the first bad row (``ContractError``); ``store.log_columns`` runs it on a
chunk its column-by-column check did not accept, and ``store.logs`` writes what comes out.
The contract itself is documented in ``store.logs`` (and the README).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rollout_pipeline.domain.records import FEEDBACK_COLUMNS, PREDICTION_COLUMNS
from rollout_pipeline.domain.summary import ABSURD_VALUE

UTC = dt.UTC
# COPY text format: these characters must be escaped inside a field.
COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
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
REQUIRED_TEXT, TEXT, FLOAT, BOOL, TS = "required_text", "text", "float", "bool", "ts"
FINITE = "finite"  # a number (or None) that must be finite and below ABSURD_VALUE in magnitude

PREDICTION_KINDS = {
    "correlation_id": TEXT,
    "ts": TS,
    "model_name": REQUIRED_TEXT,
    "variant": REQUIRED_TEXT,
    "served": BOOL,
    "entity_id": TEXT,
    "latency_ms": FLOAT,
    "status": TEXT,
    "prediction": FLOAT,
    "label": TEXT,
}
FEEDBACK_KINDS = {
    "correlation_id": TEXT,
    "ts": TS,
    "model_name": REQUIRED_TEXT,
    "kind": REQUIRED_TEXT,
    "value": FINITE,
    "label": TEXT,
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
    if kind == REQUIRED_TEXT:
        if not isinstance(value, str) or not value:
            raise ContractError(index, field, "is required (a non-empty string)", row)
    elif kind == TEXT:
        if value is not None and not isinstance(value, str):
            raise ContractError(index, field, f"must be a string or None, got {type(value).__name__}", row)
    elif kind == FLOAT or kind == FINITE:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ContractError(index, field, f"must be a number or None, got {type(value).__name__}", row)
        if kind == FINITE and value is not None and not sane(value):
            raise ContractError(index, field, f"must be a finite number with |x| < {ABSURD_VALUE:g}, got {value!r}",
                                row)
    elif kind == BOOL:
        if not isinstance(value, bool):
            raise ContractError(index, field, f"must be true or false, got {value!r}", row)
    if isinstance(value, str):
        if "\x00" in value:
            raise ContractError(index, field, "contains a NUL character", row)
        if not encodable(value):
            raise ContractError(index, field, "is not valid unicode (a lone surrogate cannot be stored)", row)


def encodable(text: str) -> bool:
    """False for text with lone surrogates, which neither UTF-8 nor the databases can hold."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def sane(value: float) -> bool:
    """True for a finite number below ABSURD_VALUE in magnitude (False for NaN and infinities)."""
    return -ABSURD_VALUE < value < ABSURD_VALUE


def validated(rows: Iterable[Any], kinds: Mapping[str, str], start: int = 0) -> Iterable[tuple[int, tuple, dt.datetime]]:
    """Yield (index, row tuple, UTC ts) for every row, raising ContractError on the first bad one.

    The precise, field-by-field check: it runs on a chunk only when the chunk-level
    check (``store.log_columns``) did not accept it, and it names the first bad row.
    """
    columns = tuple(kinds)
    kind_list = tuple(kinds.values())
    ts_pos = columns.index("ts")
    for index, raw in enumerate(rows, start):
        row = _as_tuple(raw, columns, index)
        ts = _utc(row[ts_pos], index, raw)
        for value, kind, field in zip(row, kind_list, columns):
            if kind == TS:
                continue
            _check(value, kind, field, index, raw)
        yield index, row, ts


def copy_text(row: tuple, kinds: tuple[str, ...], ts: dt.datetime) -> str:
    out = []
    for value, kind in zip(row, kinds):
        if kind == TS:
            out.append(ts.isoformat())
        elif value is None:
            out.append("\\N")
        elif kind == BOOL:
            out.append("t" if value else "f")
        elif kind == FLOAT or kind == FINITE:
            out.append(repr(float(value)))
        else:
            out.append(value.translate(COPY_ESCAPES))
    return "\t".join(out)


def sqlite_value(value: Any, kind: str, ts: dt.datetime) -> Any:
    if kind == TS:
        return ts.replace(tzinfo=None).strftime(_SQLITE_TS)
    if (kind == FLOAT or kind == FINITE) and value is not None:
        value = float(value)
        return None if math.isnan(value) else value
    return value


assert tuple(PREDICTION_KINDS) == PREDICTION_COLUMNS
assert tuple(FEEDBACK_KINDS) == FEEDBACK_COLUMNS
