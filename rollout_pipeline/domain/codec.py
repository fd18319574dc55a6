"""Frozen dataclasses <-> JSON-able dicts, driven by their type hints (no per-record code).

``encode`` turns a dataclass tree into dicts, lists, strings, numbers and None;
``decode(cls, data)`` rebuilds it from the field annotations, so a field added
to a record round-trips without touching this module. Dates and datetimes are
ISO strings; tuples become lists and come back as tuples; non-finite floats
(JSON and PostgreSQL's json have no NaN) are the strings "nan", "inf", "-inf"
and come back as floats. A field missing from ``data`` takes its default, so
rows stored before a field existed still decode.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime as dt
import enum
import math
import types
import typing
from functools import cache

_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class CodecError(ValueError):
    """The data does not fit the record's type hints; the message names the field."""


def encode(value):
    """A JSON-able form of ``value`` (a dataclass tree, or any mix of containers and scalars)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return encode(value.value)
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars (GX and numpy results)
        return encode(value.item())
    raise CodecError(f"cannot encode a {type(value).__name__}")


@cache
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def decode(tp, data, where: str = ""):
    """``data`` (from :func:`encode`) as an instance of ``tp`` (a dataclass or a type hint)."""
    where = where or getattr(tp, "__name__", str(tp))
    if tp is typing.Any:
        return data
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return decode(arg, data, where)
            except (CodecError, TypeError, ValueError):
                continue
        raise CodecError(f"{where}: {data!r} fits none of {tp}")
    if origin is typing.Literal:
        if data not in typing.get_args(tp):
            raise CodecError(f"{where}: {data!r} is not one of {typing.get_args(tp)}")
        return data
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(data)
    if dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise CodecError(f"{where}: expected an object, got {type(data).__name__}")
        hints = _hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if not f.init:
                continue
            if f.name in data:
                kwargs[f.name] = decode(hints[f.name], data[f.name], f"{where}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise CodecError(f"{where}: field {f.name!r} is missing")
        return tp(**kwargs)
    if origin is collections.abc.Sequence:
        tp, origin = tuple[typing.get_args(tp) + (Ellipsis,)], tuple
    if origin is tuple:
        args = typing.get_args(tp)
        _expect_list(data, where)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(data))
        if not args:
            return tuple(data)
        if len(args) != len(data):
            raise CodecError(f"{where}: expected {len(args)} items, got {len(data)}")
        return tuple(decode(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, data)))
    if origin is list or tp is list:
        _expect_list(data, where)
        (arg,) = typing.get_args(tp) or (typing.Any,)
        return [decode(arg, v, f"{where}[{i}]") for i, v in enumerate(data)]
    if origin is dict or tp is dict:
        if not isinstance(data, dict):
            raise CodecError(f"{where}: expected an object, got {type(data).__name__}")
        _key, val = typing.get_args(tp) or (str, typing.Any)
        return {k: decode(val, v, f"{where}[{k!r}]") for k, v in data.items()}
    if tp is float:
        if isinstance(data, str) and data in _NON_FINITE:
            return _NON_FINITE[data]
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise CodecError(f"{where}: expected a number, got {data!r}")
        return float(data)
    if tp is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise CodecError(f"{where}: expected an integer, got {data!r}")
        return data
    if tp is bool:
        if not isinstance(data, bool):
            raise CodecError(f"{where}: expected true or false, got {data!r}")
        return data
    if tp is str:
        if not isinstance(data, str):
            raise CodecError(f"{where}: expected a string, got {data!r}")
        return data
    if tp is dt.datetime:
        return dt.datetime.fromisoformat(_string(data, where))
    if tp is dt.date:
        return dt.date.fromisoformat(_string(data, where))
    raise CodecError(f"{where}: cannot decode type {tp}")


def _expect_list(data, where: str) -> None:
    if not isinstance(data, list | tuple):
        raise CodecError(f"{where}: expected a list, got {type(data).__name__}")


def _string(data, where: str) -> str:
    if not isinstance(data, str):
        raise CodecError(f"{where}: expected an ISO date string, got {data!r}")
    return data
