"""A request's body checked before it reaches a model: size, nesting, JSON syntax, finite numbers, shape.

Every refusal is a ``Refused`` carrying the HTTP status and one short line that never
echoes the input. A body refused before it was read whole is read and dropped
(``drain``), bounded in bytes and time, so that the answer reaches the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import math
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StrictFloat, StrictInt, StringConstraints, ValidationError
from starlette.requests import ClientDisconnect, Request

from rollout_pipeline.config import ServeSettings
from rollout_pipeline.domain.records import FeedbackRow
from rollout_pipeline.domain.summary import ABSURD_VALUE
from rollout_pipeline.serving.outputs import encode_items

MAX_ID_LENGTH = 256
MAX_JSON_DEPTH = 32
DRAIN_BYTES = 64 << 20  # of a refused body, read and dropped (never kept) so the answer reaches the client...
DRAIN_SECONDS = 10.0  # ...for at most this long; past either, the connection is closed (the client may see a reset)

Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, pattern=r"^[^\x00]*$")]
Label = Annotated[str, StringConstraints(max_length=100_000, pattern=r"^[^\x00]*$")]


class PredictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    features: Any
    entity_id: Id | None = None
    correlation_id: Id | None = None


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Id
    correlation_id: Id | None = None
    value: StrictInt | StrictFloat | None = None
    label: Label | list[Label | StrictInt] | None = None
    ts: Annotated[str, StringConstraints(max_length=64)] | None = None


class Refused(Exception):
    """A request refused before it reaches a model: ``status`` and one line saying why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def short_errors(error: ValidationError, shape: type[BaseModel]) -> str:
    """One line naming each field and what is wrong with it; never the input (nor an unknown key's name)."""
    parts = []
    for item in error.errors(include_input=False, include_url=False)[:3]:
        if item["type"] == "extra_forbidden":
            parts.append(f"unknown field (allowed: {', '.join(shape.model_fields)})")
            continue
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    more = error.error_count() - len(parts)
    text = "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
    return text[:300]


# Strings removed before the depth count (their brackets do not nest); unrolled so it runs in linear time.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


def json_depth(body: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest (without parsing it, so without recursion)."""
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


class _NotFinite(ValueError):
    pass


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite
    return value


def _no_constant(_name: str) -> float:
    raise _NotFinite


def parse_body(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON value of a request body; ``Refused`` (400/422) for what must not reach a model."""
    if json_depth(body) > max_depth:
        raise Refused(400, f"body nests deeper than {max_depth} levels")
    try:
        return json.loads(body, parse_float=_finite_float, parse_constant=_no_constant)
    except _NotFinite:
        raise Refused(422, "numbers must be finite (no NaN, Infinity or overflowing values)") from None
    except (ValueError, RecursionError) as exc:
        kind = "not UTF-8" if isinstance(exc, UnicodeDecodeError) else "not valid JSON"
        raise Refused(400, f"body is {kind}") from None


async def drain(chunks: AsyncIterator[bytes]) -> None:
    """Read and drop what is left of a refused body (bounded in bytes and time; nothing is kept).

    An HTTP/1.1 client sends its whole body before it reads the answer: closing the connection with
    unread data makes the kernel send a reset, and the client sees that instead of our 401/404/413.
    """
    seen = 0
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            async for chunk in chunks:
                seen += len(chunk)
                if seen > DRAIN_BYTES:
                    return
    except (TimeoutError, ClientDisconnect):
        return


async def discard_body(request: Request) -> None:
    """Drop a body that will not be read (401, 404), so that the answer reaches the client."""
    with contextlib.suppress(RuntimeError):  # already consumed
        await drain(request.stream())


async def read_body(request: Request, limit: int) -> bytes:
    """The body, at most ``limit`` bytes: 413 from Content-Length without keeping any of it, or as soon as the
    stream passes it; the rest is dropped (``drain``) so that the 413 reaches the client."""
    length = request.headers.get("content-length")
    stream = request.stream()
    if length is not None:
        if not length.isdigit():
            raise Refused(400, "bad Content-Length")
        if int(length) > limit:
            await drain(stream)
            raise Refused(413, f"body larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            chunks.clear()
            await drain(stream)
            raise Refused(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def feedback_row(body: FeedbackBody, model: str, now: dt.datetime, settings: ServeSettings) -> FeedbackRow:
    """The row to log, or ``Refused`` (422) for a value or a time the contract cannot use."""
    value = body.value
    if value is not None and not -ABSURD_VALUE < value < ABSURD_VALUE:
        raise Refused(422, f"value must be a finite number with |x| < {ABSURD_VALUE:g}")
    label = encode_items(body.label) if isinstance(body.label, list) else body.label
    if body.ts is None:
        ts = now
    else:
        try:
            ts = dt.datetime.fromisoformat(body.ts)
        except ValueError:
            raise Refused(422, "ts must be an ISO 8601 timestamp") from None
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=dt.UTC)
        try:
            ts = ts.astimezone(dt.UTC)
        except OverflowError:
            raise Refused(422, "ts is out of range") from None
        if not now - settings.feedback_max_age <= ts <= now + settings.feedback_max_ahead:
            raise Refused(422, f"ts must fall between {_span(settings.feedback_max_age)} before and "
                                f"{_span(settings.feedback_max_ahead)} after the server's clock")
    return FeedbackRow(body.correlation_id, ts, model, body.kind, None if value is None else float(value), label)


def _span(delta: dt.timedelta) -> str:
    seconds = delta.total_seconds()
    for unit, size in (("days", 86_400), ("hours", 3_600), ("minutes", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} seconds"
