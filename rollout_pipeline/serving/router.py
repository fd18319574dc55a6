"""The Router: one per model; sticky split, shadow mirroring, and logging of every answer.

Embedding in a Python service::

    router = Router(engine, "churn", {"v1": old_model, "v2": new_model}, spill_dir=".state/spill/churn")
    answer = router.predict(features, entity_id="user-42")
    answer.value, answer.variant, answer.correlation_id
    router.close()  # drains shadow calls, flushes the log

The routing config is read from the store at construction (it must exist) and
re-read every ``refresh_seconds`` by a background thread; if the store cannot
be read, or the new config cannot be served (a variant with no model), the last
good config stays in force and the failure is logged and shown in ``health()``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from rollout_pipeline.domain.records import PredictionRow
from rollout_pipeline.domain.routing import RoutingConfig, validate_name
from rollout_pipeline.serving.outputs import Output, UnsupportedOutput, to_output
from rollout_pipeline.serving.shadow import ShadowMirror
from rollout_pipeline.serving.split import BUCKETS, RoutePlan, bucket_of, compile_plan
from rollout_pipeline.serving.writer import LogWriter
from rollout_pipeline.store.routing import read_routing

log = logging.getLogger(__name__)

Model = Callable[[Any], Any]
_perf = time.perf_counter


class NoRouting(LookupError):
    """The model has no routing config in the store: a rollout must be started first."""


class StoreUnavailable(RuntimeError):
    """The routing config could not be read at start, and no initial config was given."""


class PredictionFailed(RuntimeError):
    """The serving variant's model raised (or returned something unloggable); the row is logged as ``error``."""

    def __init__(self, model_name: str, variant: str, correlation_id: str, cause: BaseException):
        self.model_name, self.variant, self.correlation_id = model_name, variant, correlation_id
        self.cause_type = type(cause).__name__
        super().__init__(f"{model_name}/{variant} failed on request {correlation_id}: {type(cause).__name__}: {cause}")


@dataclass(frozen=True, slots=True)
class Served:
    """The answer returned to the caller, and how it was logged."""

    value: Any
    variant: str
    correlation_id: str
    latency_ms: float
    prediction: float | None
    label: str | None
    bucket: int


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_correlation_id() -> str:
    return os.urandom(16).hex()


class Router:
    """Routes one model's requests between its variants according to the stored routing config.

    ``models`` maps variant names to callables (features -> output, see
    ``serving.outputs``). Logging goes to ``writer`` when given (shared, not
    closed by the router), else to a LogWriter of the router's own in
    ``spill_dir`` (default: ``<state dir>/spill/<model>``).
    """

    def __init__(
        self,
        engine: sa.Engine,
        model_name: str,
        models: Mapping[str, Model],
        *,
        writer: LogWriter | None = None,
        spill_dir: str | os.PathLike | None = None,
        refresh_seconds: float | None = 5.0,
        shadow_timeout_ms: float = 1_000.0,
        shadow_deadline_ms: float | None = None,
        shadow_workers: int = 4,
        max_pending_shadow: int = 10_000,
        clock: Callable[[], dt.datetime] = _utcnow,
        seed: int | None = None,
        initial_config: RoutingConfig | None = None,
    ):
        self.model_name = validate_name("model", model_name)
        self.engine = engine
        self._models = dict(models)
        self._clock = clock
        self._random = random.Random(seed)
        self._randbelow = self._random.randrange
        self.refresh_seconds = refresh_seconds
        self._last_refresh_ok: float | None = None
        self._last_refresh_error: str | None = None
        self._stop = threading.Event()

        config = self._read_config(initial_config)
        self._plan: RoutePlan = compile_plan(config, self._models)
        self._last_refresh_ok = time.monotonic()

        if writer is None:
            if spill_dir is None:
                from rollout_pipeline.config import state_dir

                spill_dir = state_dir() / "spill" / model_name
            writer = LogWriter(engine, Path(spill_dir), name=f"log-{model_name}")
            self._owns_writer = True
        else:
            self._owns_writer = False
        self.writer = writer
        self._submit = writer.submit
        self.mirror = ShadowMirror(model_name, writer.submit, timeout_ms=shadow_timeout_ms,
                                   workers=shadow_workers, max_pending=max_pending_shadow,
                                   deadline_ms=shadow_deadline_ms)
        self._refresher: threading.Thread | None = None
        if refresh_seconds:
            self._refresher = threading.Thread(target=self._refresh_loop, name=f"routing-{model_name}", daemon=True)
            self._refresher.start()

    # --- config ----------------------------------------------------------------------------

    def _read_config(self, initial: RoutingConfig | None) -> RoutingConfig:
        try:
            with self.engine.connect() as connection:
                config = read_routing(connection, self.model_name)
        except sa.exc.SQLAlchemyError as exc:
            if initial is None:
                raise StoreUnavailable(f"{self.model_name}: cannot read the routing config: {exc}") from exc
            log.warning("%s: store unreachable at start, serving with the given initial config v%d",
                        self.model_name, initial.version)
            return initial
        if config is None:
            if initial is not None:
                return initial
            raise NoRouting(f"{self.model_name} has no routing config: start its rollout first "
                            "(the routing names the stable variant and the candidate)")
        return config

    @property
    def config(self) -> RoutingConfig:
        """The routing config in force."""
        return self._plan.config

    @property
    def shadow_variants(self) -> tuple[str, ...]:
        """Variants that currently get a mirrored copy of every request they do not serve."""
        return tuple(name for name, _ in self._plan.shadows)

    def refresh(self) -> bool:
        """Re-read the routing config now; True if it is current, False if the last good one stays."""
        try:
            with self.engine.connect() as connection:
                config = read_routing(connection, self.model_name)
            if config is None:
                raise NoRouting(f"{self.model_name}: routing config disappeared from the store")
            if config != self._plan.config:
                plan = compile_plan(config, self._models)
                old = self._plan.config
                self._plan = plan  # one reference swap: requests see the old plan or the new one, never a mix
                log.info("%s: routing v%d -> v%d", self.model_name, old.version, config.version)
        except Exception as exc:  # noqa: BLE001 - any failure keeps the last good config in force
            text = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            if text != self._last_refresh_error:
                log.warning("%s: keeping routing v%d: %s", self.model_name, self._plan.config.version, text)
            self._last_refresh_error = text
            return False
        if self._last_refresh_error:
            log.warning("%s: routing store readable again (v%d)", self.model_name, self._plan.config.version)
        self._last_refresh_error = None
        self._last_refresh_ok = time.monotonic()
        return True

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            self.refresh()

    # --- requests ----------------------------------------------------------------------------

    def bucket(self, entity_id: str | None) -> int:
        """The entity's bucket (a random one when there is no entity id)."""
        return self._randbelow(BUCKETS) if entity_id is None else bucket_of(self.model_name, entity_id)

    def assign(self, entity_id: str | None) -> str:
        """The variant that serves this entity under the config in force (no model is called, nothing logged)."""
        return self._plan.variant_for(self.bucket(entity_id))

    def predict(
        self,
        features: Any,
        entity_id: str | None = None,
        *,
        correlation_id: str | None = None,
        ts: dt.datetime | None = None,
    ) -> Served:
        """Answer one request with its variant's model; mirror it to the shadow variants; log every answer.

        ``ts`` is the request time logged with each row (default: the router's
        clock). Raises ``PredictionFailed`` if the serving model fails; shadow
        models never affect the answer or its timing.
        """
        if entity_id is not None and type(entity_id) is not str:
            raise TypeError(f"entity_id must be a string or None, got {type(entity_id).__name__}")
        plan = self._plan
        bucket = self._randbelow(BUCKETS) if entity_id is None else bucket_of(self.model_name, entity_id)
        variant, model = plan.pick(bucket)
        if correlation_id is None:
            correlation_id = _new_correlation_id()
        if ts is None:
            ts = self._clock()
        for shadow_variant, shadow_model in plan.shadows:
            if shadow_variant != variant:
                self.mirror.submit(shadow_variant, shadow_model, features, correlation_id, ts, entity_id)
        started = _perf()
        try:
            output = to_output(model(features))
        except Exception as exc:
            latency = (_perf() - started) * 1000.0
            self._submit(PredictionRow(correlation_id, ts, self.model_name, variant, True, entity_id, latency,
                                       "error", None, None))
            raise PredictionFailed(self.model_name, variant, correlation_id, exc) from exc
        latency = output.latency_ms if output.latency_ms is not None else (_perf() - started) * 1000.0
        self._submit(PredictionRow(correlation_id, ts, self.model_name, variant, True, entity_id, latency, "ok",
                                   output.prediction, output.label))
        return Served(output.caller_value(), variant, correlation_id, latency, output.prediction, output.label, bucket)

    # --- lifecycle -----------------------------------------------------------------------------

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every shadow call so far is logged; False on timeout."""
        return self.mirror.drain(timeout)

    def health(self) -> dict[str, Any]:
        """State for a health endpoint: config version, whether the store was readable, the writer's state."""
        age = None if self._last_refresh_ok is None else round(time.monotonic() - self._last_refresh_ok, 1)
        writer = self.writer.stats()
        degraded = bool(self._last_refresh_error) or not writer["database_up"]
        return {
            "status": "degraded" if degraded else "ok",
            "routing_version": self.config.version,
            "routing_age_s": age,
            "routing_error": self._last_refresh_error,
            "shadow_pending": self.mirror.pending,
            "writer": writer,
        }

    def close(self, timeout: float = 30.0) -> None:
        """Stop refreshing, log every outstanding shadow call, then flush the log (if the writer is the router's)."""
        self._stop.set()
        self.mirror.close()
        if self._owns_writer:
            self.writer.close(timeout)
        else:
            self.writer.flush(timeout)

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["Router", "Served", "PredictionFailed", "NoRouting", "StoreUnavailable", "Output", "UnsupportedOutput"]
