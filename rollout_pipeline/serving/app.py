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
import datetime as dt
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from rollout_pipeline.config import ServeSettings
from rollout_pipeline.serving.bodies import (
    FeedbackBody,
    PredictBody,
    Refused,
    discard_body,
    feedback_row,
    parse_body,
    read_body,
    short_errors,
)
from rollout_pipeline.serving.outputs import json_safe
from rollout_pipeline.serving.router import PredictionFailed, Router
from rollout_pipeline.serving.writer import LogWriter, writer_degraded

log = logging.getLogger(__name__)


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


class _App:
    """The endpoints of one app: the routers, the recent answers and the feedback writer they share."""

    def __init__(self, routers: Mapping[str, Router], feedback_writer: LogWriter | None, close_on_shutdown: bool,
                 settings: ServeSettings, clock: Callable[[], dt.datetime]):
        self.routers = dict(routers)
        self.feedback_writer = feedback_writer
        self.close_on_shutdown = close_on_shutdown
        self.settings = settings
        self.clock = clock
        self.recent = _RecentAnswers(settings.recent_ids)
        self.token = settings.token.encode() if settings.token else None

    def authorized(self, request: Request) -> bool:
        if self.token is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode("utf-8", "replace"), self.token)

    async def checked_body(self, request: Request, shape: type[BaseModel]) -> Any:
        data = parse_body(await read_body(request, self.settings.max_body_bytes))
        try:
            return shape.model_validate(data)
        except ValidationError as exc:
            raise Refused(422, short_errors(exc, shape)) from None

    async def unauthorized(self, request: Request) -> JSONResponse:
        await discard_body(request)
        return _refused(Refused(401, "missing or wrong bearer token"))

    async def answer(self, router: Router, model: str, body: PredictBody) -> tuple[int, dict[str, Any]]:
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

    async def predict(self, request: Request) -> JSONResponse:
        if not self.authorized(request):  # first: without the token, not even which models exist
            return await self.unauthorized(request)
        model = request.path_params["model"]
        router = self.routers.get(model)
        if router is None:
            await discard_body(request)
            return _error(404, "unknown model", models=sorted(self.routers))
        try:
            body = await self.checked_body(request, PredictBody)
        except Refused as exc:
            return _refused(exc)
        if body.correlation_id is None:
            status, payload = await self.answer(router, model, body)
            return JSONResponse(payload, status_code=status)
        return await self.answer_once(router, model, body)

    async def answer_once(self, router: Router, model: str, body: PredictBody) -> JSONResponse:
        """The answer to a request with a correlation id: the first answer again for a retry of the same request."""
        key, digest = (model, body.correlation_id), _digest(body)
        seen = self.recent.get(key)
        if seen is not None:
            if seen[0] != digest:
                return _error(409, "correlation_id was already used for a different request")
            status, payload = await asyncio.shield(seen[1])
            return JSONResponse(payload, status_code=status, headers={"Idempotent-Replay": "true"})
        future = self.recent.put(key, digest)
        try:
            status, payload = await self.answer(router, model, body)
        except BaseException as exc:
            self.recent.drop(key)
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        future.set_result((status, payload))
        return JSONResponse(payload, status_code=status)

    async def feedback(self, request: Request) -> JSONResponse:
        if not self.authorized(request):
            return await self.unauthorized(request)
        model = request.path_params["model"]
        if self.feedback_writer is None or model not in self.routers:
            await discard_body(request)
            if self.feedback_writer is None:
                return _error(404, "this server takes no feedback (started without a feedback writer)")
            return _error(404, "unknown model", models=sorted(self.routers))
        try:
            body = await self.checked_body(request, FeedbackBody)
            row = feedback_row(body, model, self.clock(), self.settings)
        except Refused as exc:
            return _refused(exc)
        self.feedback_writer.submit(row)
        return JSONResponse({"queued": True}, status_code=202)

    async def health(self, _request: Request) -> JSONResponse:
        models = {name: router.health() for name, router in self.routers.items()}
        writers = [m["writer"] for m in models.values() if "writer" in m]
        extra: dict[str, Any] = {}
        if self.feedback_writer is not None:
            extra["feedback_writer"] = self.feedback_writer.stats()
            writers.append(extra["feedback_writer"])
        healthy = all(m["status"] == "ok" for m in models.values()) and not any(map(writer_degraded, writers))
        return JSONResponse(json_safe({"status": "ok" if healthy else "degraded", "models": models, **extra}),
                            status_code=200 if healthy else 503)

    @asynccontextmanager
    async def lifespan(self, _app: Starlette):
        yield
        if self.close_on_shutdown:
            for router in self.routers.values():
                await run_in_threadpool(router.close)
            if self.feedback_writer is not None:
                await run_in_threadpool(self.feedback_writer.close)


def _refused(exc: Refused) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return _error(exc.status, str(exc), headers)


def create_app(
    routers: Mapping[str, Router],
    *,
    feedback_writer: LogWriter | None = None,
    close_on_shutdown: bool = True,
    settings: ServeSettings = ServeSettings(),
    clock: Callable[[], dt.datetime] = _utcnow,
) -> Starlette:
    """A Starlette app serving ``routers`` (model name -> Router); closes them (and the writer) on shutdown."""
    app = _App(routers, feedback_writer, close_on_shutdown, settings, clock)
    return Starlette(
        routes=[
            Route("/predict/{model}", app.predict, methods=["POST"]),
            Route("/feedback/{model}", app.feedback, methods=["POST"]),
            Route("/health", app.health, methods=["GET"]),
        ],
        lifespan=app.lifespan,
    )
