"""The HTTP face of the Router (Starlette), for services written in other languages.

* ``POST /predict/{model}`` with a JSON object ``{"features": <any JSON>,
  "entity_id": "user-42" | null, "correlation_id": "..." | null}`` answers
  ``{"model", "variant", "correlation_id", "value", "prediction", "label",
  "latency_ms"}``. 404: unknown model; 400: a malformed body; 500: the serving
  model failed (the failure is logged as an ``error`` row, and the response
  carries its correlation id).
* ``POST /feedback/{model}`` with ``{"correlation_id", "kind", "value", "label",
  "ts"}`` (``kind`` required; ``ts`` ISO 8601, default now) logs a feedback row:
  complaints and actual outcomes from the caller's side. 202 when queued.
* ``GET /health``: 200 with ``{"status": "ok" | "degraded", "models": {...}}``
  (degraded: the routing store or the log database is unreachable, and the
  router serves with its last good config and spills its log rows).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from rollout_pipeline.domain.records import FeedbackRow
from rollout_pipeline.serving.outputs import encode_items, json_safe
from rollout_pipeline.serving.router import PredictionFailed, Router
from rollout_pipeline.serving.writer import LogWriter

MAX_ID_LENGTH = 256


class _BadRequest(ValueError):
    pass


def _optional_id(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH or "\x00" in value:
        raise _BadRequest(f"{key} must be a non-empty string of at most {MAX_ID_LENGTH} characters without NUL")
    return value


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise _BadRequest(f"body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _BadRequest("body must be a JSON object")
    return body


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def create_app(
    routers: Mapping[str, Router],
    *,
    feedback_writer: LogWriter | None = None,
    close_on_shutdown: bool = True,
) -> Starlette:
    """A Starlette app serving ``routers`` (model name -> Router); closes them (and the writer) on shutdown."""
    routers = dict(routers)

    async def predict(request: Request) -> JSONResponse:
        model = request.path_params["model"]
        router = routers.get(model)
        if router is None:
            return _error(404, f"unknown model {model!r}", models=sorted(routers))
        try:
            body = await _json_object(request)
            entity_id = _optional_id(body, "entity_id")
            correlation_id = _optional_id(body, "correlation_id")
        except _BadRequest as exc:
            return _error(400, str(exc))
        try:
            # Models are synchronous and may be slow: keep them off the event loop.
            served = await run_in_threadpool(router.predict, body.get("features"), entity_id,
                                             correlation_id=correlation_id)
        except PredictionFailed as exc:
            return _error(500, str(exc), model=model, variant=exc.variant, correlation_id=exc.correlation_id)
        return JSONResponse(json_safe({
            "model": model,
            "variant": served.variant,
            "correlation_id": served.correlation_id,
            "value": served.value,
            "prediction": served.prediction,
            "label": served.label,
            "latency_ms": round(served.latency_ms, 3),
        }))

    async def feedback(request: Request) -> JSONResponse:
        model = request.path_params["model"]
        if feedback_writer is None:
            return _error(404, "this server takes no feedback (started without a feedback writer)")
        if model not in routers:
            return _error(404, f"unknown model {model!r}", models=sorted(routers))
        try:
            body = await _json_object(request)
            correlation_id = _optional_id(body, "correlation_id")
            kind = _optional_id(body, "kind")
            if kind is None:
                raise _BadRequest("kind is required (complaint, actual, or your own kind)")
            value = body.get("value")
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise _BadRequest("value must be a number or null")
            label = body.get("label")
            if isinstance(label, list):
                label = encode_items(label)
            if label is not None and (not isinstance(label, str) or "\x00" in label):
                raise _BadRequest("label must be a string, a list of items, or null")
            ts_text = body.get("ts")
            try:
                ts = dt.datetime.fromisoformat(ts_text) if ts_text else dt.datetime.now(dt.UTC)
            except (TypeError, ValueError):
                raise _BadRequest("ts must be an ISO 8601 timestamp") from None
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=dt.UTC)
        except _BadRequest as exc:
            return _error(400, str(exc))
        feedback_writer.submit(FeedbackRow(correlation_id, ts, model, kind,
                                           None if value is None else float(value), label))
        return JSONResponse({"queued": True}, status_code=202)

    async def health(_request: Request) -> JSONResponse:
        models = {name: router.health() for name, router in routers.items()}
        status = "ok" if all(m["status"] == "ok" for m in models.values()) else "degraded"
        extra = {"feedback_writer": feedback_writer.stats()} if feedback_writer is not None else {}
        return JSONResponse(json_safe({"status": status, "models": models, **extra}))

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
