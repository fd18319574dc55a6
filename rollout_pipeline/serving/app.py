"""The HTTP face of the Router (Starlette), for services written in other languages.

* ``POST /predict/{model}`` with a JSON object ``{"features": <any JSON>,
  "entity_id": "user-42" | null, "correlation_id": "..." | null}`` answers
  ``{"model", "variant", "correlation_id", "value", "prediction", "label",
  "latency_ms"}``. 500: the serving model failed (logged as an ``error`` row; the
  response carries its correlation id). A ``correlation_id`` seen again (among the
  last ``recent_ids`` of this server) gets the first answer again, status included,
  with ``Idempotent-Replay: true``, and logs nothing; with a different body it is 409.
* ``POST /feedback/{model}`` with ``{"correlation_id", "kind", "value", "label",
  "ts"}`` (``kind`` required; ``value`` finite with ``|x| < 1e15``; ``ts`` ISO 8601,
  default now, within ``feedback_max_age`` before and ``feedback_max_ahead`` after the
  server's clock) logs a feedback row. 202 when queued.
* ``GET /health`` (never authenticated): ``{"status": "ok" | "degraded", ...}``, 200 when ok and
  503 when degraded (so a load balancer's or compose's healthcheck sees it): a routing store
  is unreachable or any log writer is spilling, holds unreplayed rows, or has set rows aside
  (rejected.jsonl, quarantine/).

Every request is checked before it reaches a model, in this order: bearer token
(``token``; 401), body size (``max_body_bytes``, from Content-Length and while
streaming; 413, the body is never read whole past the limit), nesting depth (400, before
the JSON parser recurses), JSON syntax (400), numbers that are not finite (422), the
body's shape (pydantic; 422). Error bodies are ``{"error": "<one short line>"}`` and
never echo the input (a failing model's message neither: only its exception's type). 404:
unknown model. A request refused before its body was read whole (401, 404, 413) has the rest
of its body read and dropped, at most ``DRAIN_BYTES`` for ``DRAIN_SECONDS``, before the answer:
a client still sending (Python's urllib, with ``Connection: close``) then gets the answer
instead of a connection reset.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import hashlib
import hmac
import itertools
import json
import logging
import math
import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StrictFloat, StrictInt, StringConstraints, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from rollout_pipeline.config import ServeSettings
from rollout_pipeline.domain.records import FeedbackRow
from rollout_pipeline.domain.summary import ABSURD_VALUE
from rollout_pipeline.serving.outputs import encode_items, json_safe
from rollout_pipeline.serving.router import PredictionFailed, Router
from rollout_pipeline.serving.writer import LogWriter, writer_degraded

log = logging.getLogger(__name__)

MAX_ID_LENGTH = 256
MAX_JSON_DEPTH = 32
DRAIN_BYTES = 64 << 20  # of a refused body, read and dropped (never kept) so the answer reaches the client...
DRAIN_SECONDS = 10.0  # ...for at most this long; past either, the connection is closed (the client may see a reset)

# --- request bodies -------------------------------------------------------------------------

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


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _short(error: ValidationError, shape: type[BaseModel]) -> str:
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
    """The JSON value of a request body; ``_Refused`` (400/422) for what must not reach a model."""
    if json_depth(body) > max_depth:
        raise _Refused(400, f"body nests deeper than {max_depth} levels")
    try:
        return json.loads(body, parse_float=_finite_float, parse_constant=_no_constant)
    except _NotFinite:
        raise _Refused(422, "numbers must be finite (no NaN, Infinity or overflowing values)") from None
    except (ValueError, RecursionError) as exc:
        kind = "not UTF-8" if isinstance(exc, UnicodeDecodeError) else "not valid JSON"
        raise _Refused(400, f"body is {kind}") from None


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
            raise _Refused(400, "bad Content-Length")
        if int(length) > limit:
            await drain(stream)
            raise _Refused(413, f"body larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            chunks.clear()
            await drain(stream)
            raise _Refused(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, message: str, headers: Mapping[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


class _RecentAnswers:
    """The answers to the last ``size`` correlation ids (per model), for idempotent retries.

    Each entry holds the request's digest and a future of (status, payload): a retry that
    arrives while the first request is still being answered waits for the same answer.
    """

    def __init__(self, size: int):
        self.size = size
        self._entries: collections.OrderedDict[tuple[str, str], tuple[str, asyncio.Future]] = collections.OrderedDict()

    def get(self, key: tuple[str, str]) -> tuple[str, asyncio.Future] | None:
        return self._entries.get(key)

    def put(self, key: tuple[str, str], digest: str) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._entries[key] = (digest, future)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return future

    def drop(self, key: tuple[str, str]) -> None:
        self._entries.pop(key, None)


def _digest(body: PredictBody) -> str:
    text = json.dumps([body.features, body.entity_id], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_app(
    routers: Mapping[str, Router],
    *,
    feedback_writer: LogWriter | None = None,
    close_on_shutdown: bool = True,
    settings: ServeSettings = ServeSettings(),
    clock: Callable[[], dt.datetime] = _utcnow,
) -> Starlette:
    """A Starlette app serving ``routers`` (model name -> Router); closes them (and the writer) on shutdown."""
    routers = dict(routers)
    recent = _RecentAnswers(settings.recent_ids)
    token = settings.token.encode() if settings.token else None

    def authorized(request: Request) -> bool:
        if token is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode("utf-8", "replace"), token)

    async def checked_body(request: Request, shape: type[BaseModel]) -> Any:
        data = parse_body(await read_body(request, settings.max_body_bytes))
        try:
            return shape.model_validate(data)
        except ValidationError as exc:
            raise _Refused(422, _short(exc, shape)) from None

    def refused(exc: _Refused) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _error(exc.status, str(exc), headers)

    async def answer(router: Router, model: str, body: PredictBody) -> tuple[int, dict[str, Any]]:
        try:
            # Models are synchronous and may be slow: keep them off the event loop.
            served = await run_in_threadpool(router.predict, body.features, body.entity_id,
                                             correlation_id=body.correlation_id)
        except PredictionFailed as exc:
            # The model's own message may quote its input (a shape, a value it could not convert): never sent.
            log.warning("%s/%s failed on request %s: %s", model, exc.variant, exc.correlation_id, exc.cause_type)
            return 500, {"error": f"the model failed ({exc.cause_type})", "model": model, "variant": exc.variant,
                         "correlation_id": exc.correlation_id}
        return 200, json_safe({
            "model": model,
            "variant": served.variant,
            "correlation_id": served.correlation_id,
            "value": served.value,
            "prediction": served.prediction,
            "label": served.label,
            "latency_ms": round(served.latency_ms, 3),
        })

    async def predict(request: Request) -> JSONResponse:
        if not authorized(request):  # first: without the token, not even which models exist
            await discard_body(request)
            return refused(_Refused(401, "missing or wrong bearer token"))
        model = request.path_params["model"]
        router = routers.get(model)
        if router is None:
            await discard_body(request)
            return _error(404, "unknown model", models=sorted(routers))
        try:
            body = await checked_body(request, PredictBody)
        except _Refused as exc:
            return refused(exc)
        if body.correlation_id is None:
            status, payload = await answer(router, model, body)
            return JSONResponse(payload, status_code=status)
        key, digest = (model, body.correlation_id), _digest(body)
        seen = recent.get(key)
        if seen is not None:
            if seen[0] != digest:
                return _error(409, "correlation_id was already used for a different request")
            status, payload = await asyncio.shield(seen[1])
            return JSONResponse(payload, status_code=status, headers={"Idempotent-Replay": "true"})
        future = recent.put(key, digest)
        try:
            status, payload = await answer(router, model, body)
        except BaseException as exc:
            recent.drop(key)
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        future.set_result((status, payload))
        return JSONResponse(payload, status_code=status)

    async def feedback(request: Request) -> JSONResponse:
        if not authorized(request):
            await discard_body(request)
            return refused(_Refused(401, "missing or wrong bearer token"))
        model = request.path_params["model"]
        if feedback_writer is None or model not in routers:
            await discard_body(request)
            if feedback_writer is None:
                return _error(404, "this server takes no feedback (started without a feedback writer)")
            return _error(404, "unknown model", models=sorted(routers))
        try:
            body = await checked_body(request, FeedbackBody)
            row = _feedback_row(body, model, clock(), settings)
        except _Refused as exc:
            return refused(exc)
        feedback_writer.submit(row)
        return JSONResponse({"queued": True}, status_code=202)

    async def health(_request: Request) -> JSONResponse:
        models = {name: router.health() for name, router in routers.items()}
        writers = [m["writer"] for m in models.values() if "writer" in m]
        extra: dict[str, Any] = {}
        if feedback_writer is not None:
            extra["feedback_writer"] = feedback_writer.stats()
            writers.append(extra["feedback_writer"])
        healthy = all(m["status"] == "ok" for m in models.values()) and not any(map(writer_degraded, writers))
        return JSONResponse(json_safe({"status": "ok" if healthy else "degraded", "models": models, **extra}),
                            status_code=200 if healthy else 503)

    @asynccontextmanager
    async def lifespan(_app: Starlette):
        yield
        if close_on_shutdown:
            for router in routers.values():
                await run_in_threadpool(router.close)
            if feedback_writer is not None:
                await run_in_threadpool(feedback_writer.close)

    return Starlette(
        routes=[
            Route("/predict/{model}", predict, methods=["POST"]),
            Route("/feedback/{model}", feedback, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def _feedback_row(body: FeedbackBody, model: str, now: dt.datetime, settings: ServeSettings) -> FeedbackRow:
    """The row to log, or ``_Refused`` (422) for a value or a time the contract cannot use."""
    value = body.value
    if value is not None and not -ABSURD_VALUE < value < ABSURD_VALUE:
        raise _Refused(422, f"value must be a finite number with |x| < {ABSURD_VALUE:g}")
    label = encode_items(body.label) if isinstance(body.label, list) else body.label
    if body.ts is None:
        ts = now
    else:
        try:
            ts = dt.datetime.fromisoformat(body.ts)
        except ValueError:
            raise _Refused(422, "ts must be an ISO 8601 timestamp") from None
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=dt.UTC)
        try:
            ts = ts.astimezone(dt.UTC)
        except OverflowError:
            raise _Refused(422, "ts is out of range") from None
        if not now - settings.feedback_max_age <= ts <= now + settings.feedback_max_ahead:
            raise _Refused(422, f"ts must fall between {_span(settings.feedback_max_age)} before and "
                                f"{_span(settings.feedback_max_ahead)} after the server's clock")
    return FeedbackRow(body.correlation_id, ts, model, body.kind, None if value is None else float(value), label)


def _span(delta: dt.timedelta) -> str:
    seconds = delta.total_seconds()
    for unit, size in (("days", 86_400), ("hours", 3_600), ("minutes", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} seconds"
