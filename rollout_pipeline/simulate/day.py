"""Replay one synthetic day of traffic through the real Router into the store.

The day follows the rollout's current stage, read from the routing config: in
shadow every request is mirrored to the candidate; in canary the candidate
serves its share of entities (sticky), and a stable route marked ``shadow``
answers the candidate's requests in the background. Traffic is clustered like
real users: a heavy-tailed number of requests per entity, and entities that
differ (their features, how prone they are to complain, how slow their requests
are) the same way for both variants. Outcomes depend on (seed, model, day index),
never on the calendar date. Model outputs are precomputed for every
data-set row with one batched ``predict`` per model, and latency is simulated
(base time + a lognormal component) and reported to the router instead of
slept, so a day of 20,000 requests takes a few seconds while every request
still goes through the Router's split, mirror and log writer.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from rollout_pipeline.domain.records import FeedbackRow, PredictionRow
from rollout_pipeline.domain.routing import RoutingConfig, VariantRoute, validate_name
from rollout_pipeline.serving.outputs import Output, encode_items
from rollout_pipeline.serving.router import NoRouting, PredictionFailed, Router
from rollout_pipeline.serving.writer import LogWriter
from rollout_pipeline.simulate.models import ModelPair, load_pair
from rollout_pipeline.simulate.scenarios import Knobs, effective_shift, knobs_for
from rollout_pipeline.store.lake import LakeWriter
from rollout_pipeline.store.logs import write_feedback
from rollout_pipeline.store.routing import read_routing, write_routing

log = logging.getLogger(__name__)

UTC = dt.UTC
PROGRESS_EVERY = 1000  # requests between two reports to ``simulate_day``'s progress callback
_DAY_US = 86_400_000_000


class SimulatedFailure(RuntimeError):
    """The error a simulated model raises in an error scenario."""


@dataclass(frozen=True)
class SimulationSummary:
    """What a simulated day did (counts from the simulation itself, not read back from the store)."""

    model: str
    kind: str
    day: dt.date
    scenario: str
    stage: str  # shadow | canary-N% | production | no-candidate-traffic
    routing_version: int
    requests: int
    served: dict[str, int]  # variant -> requests it answered
    served_errors: dict[str, int]  # variant -> requests where the serving model failed
    shadow_calls: dict[str, int]  # variant -> requests mirrored to it
    prediction_rows: int  # rows handed to the log writer (router rows + contract-breaking rows)
    corrupt_rows: int
    complaints: int
    actuals: int
    feedback_rows: int
    spilled_rows: int  # rows that went through the spill folder (the database was slow or down)
    elapsed_s: float
    notes: tuple[str, ...] = field(default_factory=tuple)
    missing_rows: int = 0  # candidate shadow answers kept out of the log (`missing`)
    duplicate_rows: int = 0  # candidate rows logged a second time (`duplicates`)
    orphan_rows: int = 0  # candidate rows served=true with no stable twin (`orphan`)

    def describe(self) -> str:
        """A few human-readable lines."""
        served = ", ".join(f"{v} {n}" for v, n in sorted(self.served.items())) or "none"
        shadow = ", ".join(f"{v} {n}" for v, n in sorted(self.shadow_calls.items())) or "none"
        lines = [
            f"{self.model} ({self.kind}) {self.day} scenario={self.scenario} stage={self.stage} "
            f"routing v{self.routing_version}",
            f"  requests {self.requests}: served by {served}; mirrored to {shadow}; "
            f"served errors {sum(self.served_errors.values())}",
            f"  rows: {self.prediction_rows} predictions ({self.corrupt_rows} contract-breaking), "
            f"{self.feedback_rows} feedback ({self.complaints} complaints, {self.actuals} actuals); "
            f"spilled {self.spilled_rows}; {self.elapsed_s:.2f} s",
        ]
        faults = [f"{n} {what}" for n, what in ((self.missing_rows, "candidate answers missing"),
                                                 (self.duplicate_rows, "duplicated candidate rows"),
                                                 (self.orphan_rows, "orphan candidate rows")) if n]
        if faults:
            lines.append(f"  log faults: {', '.join(faults)}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _stage(config: RoutingConfig) -> str:
    candidate = config.candidate
    if candidate is None:
        return "production"
    if candidate.traffic_percent > 0:
        return f"canary-{candidate.traffic_percent:g}%"
    return "shadow" if candidate.shadow else "no-candidate-traffic"


def start_shadow_routing(engine: sa.Engine, model: str, kind: str | None = None) -> RoutingConfig:
    """Give ``model`` a shadow-stage routing (stable 100%, candidate 0% shadowing), for tests and demos.

    Variant names come from the simulated catalog entry ``kind`` (default: the
    model name). Written with actor "simulator". A model that already has a
    routing keeps it (returned unchanged).
    """
    validate_name("model", model)
    pair = load_pair(kind or model)
    with engine.begin() as connection:
        existing = read_routing(connection, model)
        if existing is not None:
            return existing
        routes = (
            VariantRoute(pair.stable_variant, "stable", 100.0, False),
            VariantRoute(pair.candidate_variant, "candidate", 0.0, True),
        )
        return write_routing(connection, model, routes, expected_version=None, actor="simulator",
                             reason=f"simulator: shadow stage for {pair.kind} ({pair.stable_variant} stable, "
                                    f"{pair.candidate_variant} candidate)")


class _SimVariant:
    """One variant's answers for the day: looked up per request, latency reported, failures raised."""

    __slots__ = ("variant", "preds", "labels", "values", "latency", "fails", "nulls")

    def __init__(self, variant: str, preds: list | None, labels: list | None, values: list, latency: list,
                 fails: set[int], nulls: frozenset[int] = frozenset()):
        self.variant = variant
        self.preds, self.labels, self.values, self.latency, self.fails = preds, labels, values, latency, fails
        self.nulls = nulls

    def __call__(self, features: tuple[int, int]) -> Output:
        i, row = features
        if i in self.fails:
            raise SimulatedFailure(f"{self.variant}: simulated failure on request {i}")
        if i in self.nulls:  # an answer that says nothing
            return Output(prediction=None, label=None, latency_ms=self.latency[i], value=None)
        return Output(
            prediction=None if self.preds is None else self.preds[row],
            label=None if self.labels is None else self.labels[row],
            latency_ms=self.latency[i],
            value=self.values[row],
        )


def _daily_curve(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` sorted request times in microseconds since midnight UTC: trough ~03:00, peak ~15:00."""
    minutes = np.arange(1440)
    weights = 1.0 + 0.75 * np.sin(2 * np.pi * (minutes / 60.0 - 9.0) / 24.0)
    minute = rng.choice(1440, size=n, p=weights / weights.sum())
    offsets = rng.integers(0, 60_000_000, size=n)
    return np.sort(minute.astype(np.int64) * 60_000_000 + offsets)


def _variant_outputs(pair: ModelPair, role: str, faulty: bool, knobs: Knobs,
                     rng: np.random.Generator) -> tuple[list | None, list | None]:
    """(prediction per data-set row, label per data-set row) of one variant, shifted if it is the faulty one."""
    preds, labels = pair.outputs[role]
    preds = None if preds is None else preds.copy()
    labels = None if labels is None else labels.copy()
    shift = effective_shift(knobs, pair.task) if faulty else 0.0
    if shift:
        if pair.task == "regression":
            preds = preds + shift * float(np.std(pair.targets))
        elif pair.task == "binary":
            preds = np.clip(preds + shift, 0.0, 1.0)
            labels = np.where(preds >= 0.5, pair.class_names[0], pair.class_names[1]).astype(object)
        elif pair.task == "multiclass":
            moved = rng.random(pair.rows) < shift
            index = {name: k for k, name in enumerate(pair.class_names)}
            labels = np.array([pair.class_names[(index[lbl] + 1) % len(pair.class_names)] if m else lbl
                               for lbl, m in zip(labels, moved)], dtype=object)
        else:  # recommendation: the list replaced by long-tail items
            moved = rng.random(pair.rows) < shift
            tail = pair.items[len(pair.items) // 2:]
            labels = np.array([encode_items(rng.choice(tail, size=10, replace=False)) if m else lbl
                               for lbl, m in zip(labels, moved)], dtype=object)
    if faulty and knobs.inaccuracy > 0:
        preds, labels = _inaccurate(pair, preds, labels, knobs.inaccuracy, rng)
    return (None if preds is None else preds.tolist()), (None if labels is None else labels.tolist())


def _inaccurate(pair: ModelPair, preds, labels, ratio: float, rng: np.random.Generator):
    """The candidate's outputs made ``ratio`` times as wrong as the stable's against the true outcomes.

    Numbers: its residuals scaled so that its mean absolute error is ``ratio`` x the
    stable's (same mean prediction). Labels: correct answers turned wrong until its
    error rate is ``ratio`` x the stable's (at most 95%). Item lists: that share of
    lists replaced by long-tail items.
    """
    stable_preds, stable_labels = pair.outputs["stable"]
    if pair.task == "regression":
        truth = pair.targets
        target = ratio * float(np.mean(np.abs(stable_preds - truth)))
        own = float(np.mean(np.abs(preds - truth))) or 1.0
        return truth + (preds - truth) * (target / own), labels
    if pair.task == "recommendation":
        share = min(0.95, ratio * 0.1)
        moved = rng.random(pair.rows) < share
        tail = pair.items[len(pair.items) // 2:]
        return preds, np.array([encode_items(rng.choice(tail, size=10, replace=False)) if m else lbl
                                for lbl, m in zip(labels, moved)], dtype=object)
    truth = np.asarray(pair.truth_labels, dtype=object)
    target = min(0.95, ratio * float(np.mean(stable_labels != truth)))
    wrong = labels != truth
    correct = np.flatnonzero(~wrong)
    extra = max(0, round(target * pair.rows) - int(wrong.sum()))
    flip = rng.choice(correct, size=min(extra, len(correct)), replace=False)
    labels = labels.copy()
    index = {name: k for k, name in enumerate(pair.class_names)}
    for r in flip.tolist():
        labels[r] = pair.class_names[(index[labels[r]] + 1) % len(pair.class_names)]
    if preds is not None and pair.task == "binary":  # the probability of the first class follows the label
        preds = preds.copy()
        preds[flip] = 1.0 - preds[flip]
    return preds, labels


def _caller_values(preds: list | None, labels: list | None) -> list:
    if labels is None:
        return preds
    decoded = [json.loads(lbl) if isinstance(lbl, str) and lbl.startswith("[") else lbl for lbl in labels]
    return decoded if preds is None else [{"prediction": p, "label": lbl} for p, lbl in zip(preds, decoded)]


SHADOW_PACING = 256  # requests replayed between waits for the shadow mirror
SHADOW_REAL_DEADLINE_MS = 120_000.0


def _latency(rng: np.random.Generator, n: int, base: float, knobs: Knobs, faulty: bool,
             entity_factor: np.ndarray) -> np.ndarray:
    sigma = knobs.latency_sigma + (knobs.candidate_latency_sigma if faulty else 0.0)
    latency = (base + rng.lognormal(math.log(knobs.median_extra_ms), sigma, size=n)) * entity_factor
    return latency * (knobs.candidate_latency_factor if faulty else 1.0)


class _FaultyLog:
    """The log writer as a faulty candidate's logging path reaches it: some of its rows lost, some doubled.

    Wraps the day's LogWriter for the Router (``submit`` from the request path and the
    shadow threads; everything else delegated). Which requests are hit is drawn per
    request index beforehand, so the counts are the seed's, whatever the threads' order.

    A simulated failure takes no simulated time: its ``error`` row is logged with 0 ms,
    not with the microseconds the replaying machine took to raise it (which the Router
    measures), so a day's rows depend on its arguments only, never on the machine's load.
    """

    def __init__(self, writer: LogWriter, candidate: str | None, drop_shadow: set[str], duplicate: set[str]):
        self._writer, self._candidate = writer, candidate
        self._drop, self._duplicate = drop_shadow, duplicate
        self._lock = threading.Lock()
        self.dropped = self.duplicated = 0

    def submit(self, row: PredictionRow) -> None:
        if row.status == "error":
            row = row._replace(latency_ms=0.0)
        if row.variant == self._candidate:
            if not row.served and row.correlation_id in self._drop:
                with self._lock:
                    self.dropped += 1
                return
            if row.correlation_id in self._duplicate:
                self._writer.submit(row)
                with self._lock:
                    self.duplicated += 1
        self._writer.submit(row)

    def __getattr__(self, name: str):
        return getattr(self._writer, name)


class _LakeLog:
    """The day's log path into a lake instead of the database, with the LogWriter interface the Router uses.

    ``submit`` comes from the request path and the shadow threads, so appends to the
    (not thread-safe) LakeWriter hold a lock. Nothing spills: the rows reach the
    writer's buffers at once; the caller owns the LakeWriter and closes it.
    """

    def __init__(self, sink: LakeWriter):
        self._sink = sink
        self._lock = threading.Lock()

    def submit(self, row: PredictionRow) -> None:
        with self._lock:
            self._sink.append("prediction_log", (row,))

    def write_feedback(self, rows: list[FeedbackRow]) -> None:
        with self._lock:
            self._sink.append("feedback", rows)

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float | None = None) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {"queued": 0, "database_up": True, "pending_segments": 0, "last_error": None, "written": 0,
                "spilled": 0, "overflowed": 0, "replayed": 0, "already_present": 0, "rejected": 0,
                "quarantined": 0, "sink": self._sink.root}


class _Ids:
    """Correlation ids: random (``os.urandom``), or drawn from a generator seeded by the day's arguments."""

    def __init__(self, rng: np.random.Generator | None):
        self._rng = rng

    def take(self, n: int) -> list[str]:
        if self._rng is None:
            return [os.urandom(16).hex() for _ in range(n)]
        raw = self._rng.bytes(16 * n).hex()
        return [raw[32 * k:32 * k + 32] for k in range(n)]

    def one(self) -> str:
        return self.take(1)[0]


def simulate_day(
    engine: sa.Engine,
    model: str,
    day: dt.date,
    requests: int,
    scenario: str = "healthy",
    seed: int = 0,
    *,
    day_index: int = 0,
    kind: str | None = None,
    knobs: dict[str, float] | None = None,
    spill_dir: str | os.PathLike | None = None,
    sink: LakeWriter | None = None,
    seeded_ids: bool = False,
    progress: Callable[[int], None] | None = None,
) -> SimulationSummary:
    """Simulate ``requests`` requests to ``model`` on UTC ``day`` through the real Router, and their feedback.

    ``kind`` picks the simulated catalog entry (default: the model name).
    Raises ``NoRouting`` if the model has no routing config (start its rollout,
    or call ``start_shadow_routing``), ``UnknownScenario`` / ``UnknownKind`` for
    bad names. The traffic is a function of (seed, model, ``day_index``) and the
    routing, never of ``day``, which only places the timestamps: pass a different
    seed or day index for each day of a series. Deterministic apart from
    correlation ids (random, so that re-simulating a day adds distinct requests);
    with ``seeded_ids`` they are drawn from (seed, model, ``day_index``, ``day``) too,
    so that two calls with the same arguments log the very same rows.

    With ``sink`` (a ``store.lake.LakeWriter``, opened and closed by the caller), the
    prediction rows and the feedback go to the lake instead of the database; the
    routing is still read from ``engine``. The rows are those the database path
    stores, the candidate's logging faults (``_FaultyLog``) included.
    """
    started = time.perf_counter()
    validate_name("model", model)
    if requests < 0:
        raise ValueError("requests must be >= 0")
    settings = knobs_for(scenario, knobs)
    pair = load_pair(kind or model)
    with engine.connect() as connection:
        config = read_routing(connection, model)
    if config is None:
        raise NoRouting(f"{model} has no routing config: start its rollout first "
                        f"(or create a shadow-stage routing with start_shadow_routing / simulate --start-shadow)")

    if day_index < 0:
        raise ValueError("day_index must be >= 0")
    model_key = zlib.crc32(model.encode())
    rng = np.random.default_rng([seed, model_key, day_index])  # never the date: same seed, same day of traffic
    population_rng = np.random.default_rng([seed, model_key])  # the same visitors every day
    n = min(requests, settings.max_requests) if settings.max_requests else requests
    size = settings.population or max(50, requests // 5)
    entity_rows = population_rng.integers(0, pair.rows, size=size)
    visit_weights = 1.0 / np.arange(1, size + 1) ** settings.visit_skew  # a few frequent visitors, a long tail
    population_rng.shuffle(visit_weights)
    visit_weights /= visit_weights.sum()
    # Entities differ, alike for both variants: how prone to complain (gamma, mean 1) and how slow their
    # requests are (lognormal factor, median 1). Per-request tests that ignore this read clusters as effects.
    shape = settings.entity_complaint_shape
    propensity = population_rng.gamma(shape, 1.0 / shape, size=size) if shape > 0 else np.ones(size)
    slowness = population_rng.lognormal(0.0, settings.entity_latency_sigma, size=size)

    times = _daily_curve(rng, n)
    anonymous = rng.random(n) < settings.anonymous_fraction
    visitor = rng.choice(size, size=n, p=visit_weights)
    random_rows = rng.integers(0, pair.rows, size=n)
    rows = np.where(anonymous, random_rows, entity_rows[visitor]).tolist()
    entity_ids = [None if a else f"{model}-e{v:06d}" for a, v in zip(anonymous.tolist(), visitor.tolist())]
    complaint_factor = np.where(anonymous, 1.0, propensity[visitor]).tolist()
    latency_factor = np.where(anonymous, 1.0, slowness[visitor])
    hours = times / 3_600_000_000
    ids = _Ids(np.random.default_rng([seed, model_key, day_index, day.toordinal()]) if seeded_ids else None)
    correlation_ids = ids.take(n)

    notes: list[str] = []
    stage = _stage(config)
    candidate_route = config.candidate
    faults = scenario != "healthy" or bool(knobs)
    if candidate_route is None and faults:
        notes.append("no candidate in the routing: the scenario's candidate faults were not applied")
    if scenario == "complaints" and stage == "shadow":
        notes.append("shadow stage: the candidate serves nobody, so its extra complaints cannot show")
    if stage != "shadow" and (settings.shadow_answer_fraction < 1 or settings.orphan_fraction > 0):
        notes.append(f"{stage}: the candidate is not mirrored, so missing answers and orphan served rows "
                     "do not stand out as they do in shadow")

    variants: dict[str, _SimVariant] = {}
    for route in config.routes:
        if route.traffic_percent <= 0 and not route.shadow or route.role == "retired":
            continue
        role = pair.variant_role(route.variant, route.role)
        faulty = route.role == "candidate"
        preds, labels = _variant_outputs(pair, role, faulty, settings, rng)
        values = _caller_values(preds, labels)
        base = settings.candidate_base_ms if role == "candidate" else settings.stable_base_ms
        latency = _latency(rng, n, base, settings, faulty, latency_factor).tolist()
        error_p = np.full(n, settings.base_error_rate)
        if faulty and settings.error_rate:
            burst = (hours >= settings.error_start_hour) & (hours < settings.error_start_hour + settings.error_hours)
            error_p = np.where(burst, np.maximum(error_p, settings.error_rate), error_p)
        fails = set(np.flatnonzero(rng.random(n) < error_p).tolist())
        nulls = frozenset(np.flatnonzero(rng.random(n) < settings.null_fraction).tolist()) if faulty else frozenset()
        sim = _SimVariant(route.variant, preds, labels, values, latency, fails, nulls)
        if faulty and settings.extreme_fraction:
            sim = _with_extremes(sim, pair, settings, rng, n)
        variants[route.variant] = sim

    lake_log = _LakeLog(sink) if sink is not None else None
    own_writer = lake_log or LogWriter(
        engine,
        Path(spill_dir) if spill_dir is not None else _default_spill_dir(model),
        batch_rows=10_000, max_buffer_rows=200_000, flush_seconds=0.1, name=f"simulate-{model}",
    )
    candidate_name = candidate_route.variant if candidate_route else None
    lost = rng.random(n) >= settings.shadow_answer_fraction
    doubled = rng.random(n) < settings.duplicate_fraction
    log_path = _FaultyLog(own_writer, candidate_name,
                          {cid for cid, x in zip(correlation_ids, lost.tolist()) if x},
                          {cid for cid, x in zip(correlation_ids, doubled.tolist()) if x})
    router = Router(engine, model, variants, writer=log_path, refresh_seconds=None,
                    shadow_timeout_ms=settings.shadow_timeout_ms, shadow_workers=2,
                    # Latencies are simulated: a shadow call times out when its simulated latency
                    # exceeds the timeout, never because the machine replaying the day is busy.
                    shadow_deadline_ms=SHADOW_REAL_DEADLINE_MS,
                    max_pending_shadow=max(10_000, n), seed=int(rng.integers(2**31)))
    plan_shadows = router.shadow_variants

    day_start = dt.datetime.combine(day, dt.time(), UTC)
    feedback_end = day_start + dt.timedelta(days=2) - dt.timedelta(microseconds=1)
    served: Counter = Counter()
    served_errors: Counter = Counter()
    shadow_calls: Counter = Counter()
    feedback: list[FeedbackRow] = []
    u_complaint = rng.random(n).tolist()
    u_actual = rng.random(n).tolist()
    complaint_delay = rng.exponential(20 * 60e6, size=n).tolist()  # ~20 minutes
    actual_delay = rng.exponential(settings.actual_delay_hours * 3_600e6, size=n).tolist()
    base_complaint = settings.complaint_rate
    candidate_complaint = (settings.candidate_complaint_rate if settings.candidate_complaint_rate is not None
                           else settings.complaint_rate)
    timedelta = dt.timedelta
    complaints = actuals = 0
    try:
        for i, (offset, row, entity) in enumerate(zip(times.tolist(), rows, entity_ids)):
            if progress is not None and i and i % PROGRESS_EVERY == 0:
                progress(PROGRESS_EVERY)
            if plan_shadows and i % SHADOW_PACING == 0:
                # A day is replayed in seconds: let the mirror catch up, so that a shadow call's real
                # wait in the queue (which counts against its timeout) stays far below the timeout
                # however loaded the machine is. Timeouts then come from the simulated latency only.
                router.drain()
            ts = day_start + timedelta(microseconds=offset)
            try:
                answer = router.predict((i, row), entity, correlation_id=correlation_ids[i], ts=ts)
            except PredictionFailed as failed:
                served_errors[failed.variant] += 1
                for name in plan_shadows:
                    if name != failed.variant:
                        shadow_calls[name] += 1
                if u_complaint[i] < settings.complaint_on_error * complaint_factor[i]:
                    feedback.append(FeedbackRow(failed.correlation_id, min(ts + timedelta(microseconds=complaint_delay[i]),
                                                                          feedback_end), model, "complaint", 1.0))
                    complaints += 1
                continue
            served[answer.variant] += 1
            for name in plan_shadows:
                if name != answer.variant:
                    shadow_calls[name] += 1
            rate = candidate_complaint if answer.variant == candidate_name else base_complaint
            if u_complaint[i] < rate * complaint_factor[i]:
                feedback.append(FeedbackRow(answer.correlation_id, min(ts + timedelta(microseconds=complaint_delay[i]),
                                                                      feedback_end), model, "complaint", 1.0))
                complaints += 1
            if u_actual[i] < settings.actual_fraction:
                value, label = pair.actual(row)
                feedback.append(FeedbackRow(answer.correlation_id, min(ts + timedelta(microseconds=actual_delay[i]),
                                                                      feedback_end), model, "actual", value, label))
                actuals += 1
        corrupt = _corrupt_rows(model, config, pair, day_start, times, rng, round(n * settings.corrupt_fraction),
                                ids)
        orphans = _orphan_rows(model, candidate_name, pair, settings, day_start, times, rows, entity_ids, rng,
                               round(n * settings.orphan_fraction), ids) if candidate_name else []
        for extra in (*corrupt, *orphans):
            own_writer.submit(extra)
    finally:
        router.close()
        own_writer.close()
    if progress is not None and n:
        progress(n - (n - 1) // PROGRESS_EVERY * PROGRESS_EVERY)  # the requests since the last report
    for start in range(0, len(feedback), 50_000):
        if lake_log is not None:
            lake_log.write_feedback(feedback[start:start + 50_000])
        else:
            write_feedback(engine, feedback[start:start + 50_000])
    writer_stats = own_writer.stats()
    if lake_log is not None:
        notes.append(f"rows written to the lake {sink.root}, not to the database")
    if writer_stats["pending_segments"]:
        notes.append(f"the database was unreachable: {writer_stats['pending_segments']} spill segment(s) wait in "
                     f"{own_writer.spill_dir} and are replayed by the next writer on that folder")
    logged = (sum(served.values()) + sum(served_errors.values()) + sum(shadow_calls.values()) + len(corrupt)
              + len(orphans) - log_path.dropped + log_path.duplicated)
    return SimulationSummary(
        model=model, kind=pair.kind, day=day, scenario=scenario, stage=stage, routing_version=config.version,
        requests=n, served=dict(served), served_errors=dict(served_errors), shadow_calls=dict(shadow_calls),
        prediction_rows=logged, corrupt_rows=len(corrupt), complaints=complaints, actuals=actuals,
        feedback_rows=len(feedback), spilled_rows=writer_stats["spilled"] + writer_stats["overflowed"],
        elapsed_s=round(time.perf_counter() - started, 3), notes=tuple(notes),
        missing_rows=log_path.dropped, duplicate_rows=log_path.duplicated, orphan_rows=len(orphans),
    )


def _default_spill_dir(model: str) -> Path:
    from rollout_pipeline.config import state_dir

    return state_dir() / "spill" / f"simulate-{model}"


def _with_extremes(sim: _SimVariant, pair: ModelPair, knobs: Knobs, rng: np.random.Generator, n: int) -> _SimVariant:
    """Wrap ``sim`` so that a fraction of requests get an absurd answer."""
    extreme = set(np.flatnonzero(rng.random(n) < knobs.extreme_fraction).tolist())
    signs = (np.where(rng.random(n) < 0.5, -1.0, 1.0) * knobs.extreme_scale).tolist()

    class _Extreme(_SimVariant):
        __slots__ = ()

        def __call__(self, features: tuple[int, int]) -> Output:
            output = _SimVariant.__call__(self, features)
            i = features[0]
            if i not in extreme:
                return output
            if pair.task == "recommendation":
                return Output(label="[]", latency_ms=output.latency_ms, value=[])
            absurd = signs[i] if pair.task == "regression" else abs(signs[i])
            return Output(prediction=absurd, label=output.label, latency_ms=output.latency_ms, value=absurd)

    return _Extreme(sim.variant, sim.preds, sim.labels, sim.values, sim.latency, sim.fails)


def _corrupt_rows(model: str, config: RoutingConfig, pair: ModelPair, day_start: dt.datetime, times: np.ndarray,
                  rng: np.random.Generator, count: int, ids: _Ids) -> list[PredictionRow]:
    """Rows that break the log contract, cycling through the kinds of breach the validation must catch."""
    if count <= 0:
        return []
    stable = config.stable.variant if config.stable else config.routes[0].variant
    shadow = config.candidate.variant if config.candidate else stable
    preds, labels = pair.outputs["stable"]
    out = []
    for k in range(count):
        ts = day_start + dt.timedelta(microseconds=int(times[rng.integers(len(times))]) if len(times) else
                                      int(rng.integers(_DAY_US)))
        row = int(rng.integers(pair.rows))
        pred = None if preds is None else float(preds[row])
        label = None if labels is None else labels[row]
        cid = ids.one()
        entity = f"{model}-corrupt-{k}"
        breach = k % 5
        if breach == 0:  # missing correlation id
            out.append(PredictionRow(None, ts, model, stable, True, entity, 10.0, "ok", pred, label))
        elif breach == 1:  # unknown status
            out.append(PredictionRow(cid, ts, model, stable, True, entity, 10.0, "exploded", pred, label))
        elif breach == 2:  # negative latency
            out.append(PredictionRow(cid, ts, model, stable, True, entity, -5.0, "ok", pred, label))
        elif breach == 3:  # NaN latency
            out.append(PredictionRow(cid, ts, model, stable, True, entity, float("nan"), "ok", pred, label))
        else:  # a shadow answer with no served twin
            out.append(PredictionRow(cid, ts, model, shadow, False, entity, 10.0, "ok", pred, label))
    return out


def _orphan_rows(model: str, candidate: str, pair: ModelPair, knobs: Knobs, day_start: dt.datetime,
                 times: np.ndarray, rows: list[int], entity_ids: list, rng: np.random.Generator,
                 count: int, ids: _Ids) -> list[PredictionRow]:
    """Candidate rows marked served, for requests no stable answer exists for (a mis-wired candidate)."""
    if count <= 0 or not len(times):
        return []
    preds, labels = pair.outputs["candidate"]
    out = []
    for _ in range(count):
        i = int(rng.integers(len(times)))
        ts = day_start + dt.timedelta(microseconds=int(times[i]))
        row = rows[i]
        latency = knobs.candidate_base_ms + float(rng.lognormal(math.log(knobs.median_extra_ms), knobs.latency_sigma))
        out.append(PredictionRow(ids.one(), ts, model, candidate, True, entity_ids[i], latency, "ok",
                                 None if preds is None else float(preds[row]),
                                 None if labels is None else labels[row]))
    return out


def parse_knobs(pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``["name=value", ...]`` -> {name: float}; raises ValueError on a malformed pair."""
    out: dict[str, Any] = {}
    for text in pairs:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"knob {text!r}: expected name=value")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"knob {text!r}: value must be a number") from None
    return out
