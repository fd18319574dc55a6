"""Frozen dataclasses <-> JSON-able dicts, driven by their type hints (no per-record code).

``encode`` turns a dataclass tree into dicts, lists, strings, numbers and None;
``decode(cls, data)`` rebuilds it from the field annotations, so a field added
to a record round-trips without touching this module. Dates and datetimes are
ISO strings; tuples become lists and come back as tuples; non-finite floats
(JSON and PostgreSQL's json have no NaN) are the strings "nan", "inf", "-inf"
and come back as floats. A field missing from ``data`` takes its default, so
rows stored before a field existed still decode. A decoder is compiled once per type
(a day summary's 40,000-row sample decodes in a fraction of a second).
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

    def __init__(self, reason: str, path: tuple[str, ...] = ()):
        self.reason, self.path = reason, path
        super().__init__(("".join(path) + ": " if path else "") + reason)

    def within(self, step: str) -> CodecError:
        return CodecError(self.reason, (step, *self.path))


_FIELDS: dict[type, tuple[str, ...] | None] = {}


def _field_names(cls: type) -> tuple[str, ...] | None:
    names = _FIELDS.get(cls, False)
    if names is False:
        names = tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else None
        _FIELDS[cls] = names
    return names


def encode(value):
    """A JSON-able form of ``value`` (a dataclass tree, or any mix of containers and scalars)."""
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool:
        return value
    if kind is float:
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    names = _field_names(kind)
    if names is not None:
        return {name: encode(getattr(value, name)) for name in names}
    if isinstance(value, enum.Enum):
        return encode(value.value)
    if isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return encode(float(value))
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars (GX and numpy results)
        return encode(value.item())
    raise CodecError(f"cannot encode a {kind.__name__}")


def decode(tp, data):
    """``data`` (from :func:`encode`) as an instance of ``tp`` (a dataclass or a type hint)."""
    try:
        return _decoder(tp)(data)
    except CodecError as exc:
        raise exc.within(getattr(tp, "__name__", str(tp))) from None


def _identity(x):
    return x


def _float(x):
    kind = type(x)
    if kind is float:
        return x
    if kind is int:
        return float(x)
    if kind is str and x in _NON_FINITE:
        return _NON_FINITE[x]
    raise CodecError(f"expected a number, got {x!r}")


def _exact(kind: type, what: str):
    def check(x):
        if type(x) is not kind:
            raise CodecError(f"expected {what}, got {x!r}")
        return x
    return check


def _iso(parse):
    def convert(x):
        if type(x) is not str:
            raise CodecError(f"expected an ISO date string, got {x!r}")
        try:
            return parse(x)
        except ValueError as exc:
            raise CodecError(str(exc)) from None
    return convert


def _expect_list(x) -> None:
    if not isinstance(x, list | tuple):
        raise CodecError(f"expected a list, got {type(x).__name__}")


def _each(decoders, items):
    """Decode ``items`` with ``decoders`` (one per item); an error names the item's index."""
    out = []
    for i, (d, v) in enumerate(zip(decoders, items)):
        try:
            out.append(d(v))
        except CodecError as exc:
            raise exc.within(f"[{i}]") from None
    return out


@cache
def _decoder(tp):
    """The decoder of type hint ``tp``: one named step per kind of hint, tried in this order."""
    if tp is typing.Any:
        return _identity
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _union_decoder(tp)
    if origin is typing.Literal:
        return _literal_decoder(typing.get_args(tp))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum_decoder(tp)
    if dataclasses.is_dataclass(tp):
        return _dataclass_decoder(tp)
    if origin is collections.abc.Sequence:
        tp, origin = tuple[typing.get_args(tp) + (Ellipsis,)], tuple
    if origin is tuple:
        return _tuple_decoder(typing.get_args(tp))
    if origin is list or tp is list:
        return _list_decoder(tp)
    if origin is dict or tp is dict:
        return _dict_decoder(tp)
    return _simple_decoder(tp)


def _union_decoder(tp):
    """``X | None`` decodes None or X; a wider union takes the first member that decodes the value."""
    args = typing.get_args(tp)
    optional = type(None) in args
    decoders = [_decoder(a) for a in args if a is not type(None)]
    if len(decoders) == 1:
        (one,) = decoders
        return (lambda x: None if x is None else one(x)) if optional else one

    def union(x):
        if x is None and optional:
            return None
        for d in decoders:
            try:
                return d(x)
            except (CodecError, TypeError, ValueError):
                continue
        raise CodecError(f"{x!r} fits none of {tp}")
    return union


def _literal_decoder(allowed: tuple):
    def literal(x):
        if x not in allowed:
            raise CodecError(f"{x!r} is not one of {allowed}")
        return x
    return literal


def _enum_decoder(tp: type[enum.Enum]):
    def member(x):
        try:
            return tp(x)
        except ValueError as exc:
            raise CodecError(str(exc)) from None
    return member


def _tuple_decoder(args: tuple):
    """``tuple[X, ...]`` (any length), ``tuple`` (anything), or ``tuple[X, Y]`` (exactly those items)."""
    if len(args) == 2 and args[1] is Ellipsis:
        item = _decoder(args[0])

        def homogeneous(x):
            _expect_list(x)
            return tuple(_each([item] * len(x), x))
        return homogeneous
    if not args:
        return lambda x: (_expect_list(x), tuple(x))[1]
    items = [_decoder(a) for a in args]

    def fixed(x):
        _expect_list(x)
        if len(x) != len(items):
            raise CodecError(f"expected {len(items)} items, got {len(x)}")
        return tuple(_each(items, x))
    return fixed


def _list_decoder(tp):
    (arg,) = typing.get_args(tp) or (typing.Any,)
    item = _decoder(arg)

    def listed(x):
        _expect_list(x)
        return _each([item] * len(x), x)
    return listed


def _dict_decoder(tp):
    _key, val = typing.get_args(tp) or (str, typing.Any)
    value = _decoder(val)

    def mapping(x):
        if not isinstance(x, dict):
            raise CodecError(f"expected an object, got {type(x).__name__}")
        out = {}
        for k, v in x.items():
            try:
                out[k] = value(v)
            except CodecError as exc:
                raise exc.within(f"[{k!r}]") from None
        return out
    return mapping


def _simple_decoder(tp):
    """Numbers, booleans, strings and ISO dates; any other hint cannot be decoded."""
    simple = {float: _float, int: _exact(int, "an integer"), bool: _exact(bool, "true or false"),
              str: _exact(str, "a string"), dt.datetime: _iso(dt.datetime.fromisoformat),
              dt.date: _iso(dt.date.fromisoformat)}
    if tp in simple:
        return simple[tp]
    raise CodecError(f"cannot decode type {tp}")


def _dataclass_decoder(cls):
    hints = typing.get_type_hints(cls)
    fields = [(f.name, _decoder(hints[f.name]),
               f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
              for f in dataclasses.fields(cls) if f.init]

    def record(x):
        if not isinstance(x, dict):
            raise CodecError(f"expected an object, got {type(x).__name__}")
        kwargs = {}
        for name, d, required in fields:
            if name in x:
                try:
                    kwargs[name] = d(x[name])
                except CodecError as exc:
                    raise exc.within(f".{name}") from None
            elif required:
                raise CodecError(f"field {name!r} is missing")
        return cls(**kwargs)
    return record
