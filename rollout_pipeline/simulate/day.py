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
import logging
import os
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from rollout_pipeline.domain.records import FeedbackRow
from rollout_pipeline.domain.routing import RoutingConfig, validate_name
from rollout_pipeline.serving.router import NoRouting, PredictionFailed, Router
from rollout_pipeline.serving.writer import LogWriter
from rollout_pipeline.simulate.answers import (
    SimVariant,
    caller_values,
    simulated_latency,
    variant_outputs,
    with_extremes,
)
from rollout_pipeline.simulate.logpath import FaultyLog, Ids, LakeLog, corrupt_rows, orphan_rows
from rollout_pipeline.simulate.models import ModelPair, load_pair
from rollout_pipeline.simulate.routing import stage_of, start_shadow_routing
from rollout_pipeline.simulate.scenarios import Knobs, knobs_for
from rollout_pipeline.simulate.traffic import Traffic, draw_traffic
from rollout_pipeline.store.lake import LakeWriter
from rollout_pipeline.store.logs import write_feedback
from rollout_pipeline.store.routing import read_routing

__all__ = ["SimulationSummary", "simulate_day", "start_shadow_routing"]

log = logging.getLogger(__name__)

UTC = dt.UTC
PROGRESS_EVERY = 1000  # requests between two reports to ``simulate_day``'s progress callback
SHADOW_PACING = 256  # requests replayed between waits for the shadow mirror
SHADOW_REAL_DEADLINE_MS = 120_000.0
FEEDBACK_BATCH = 50_000


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


@dataclass
class _Tally:
    """What the replay counted, and the feedback it drew."""

    served: Counter = field(default_factory=Counter)
    served_errors: Counter = field(default_factory=Counter)
    shadow_calls: Counter = field(default_factory=Counter)
    feedback: list[FeedbackRow] = field(default_factory=list)
    complaints: int = 0
    actuals: int = 0


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
    stores, the candidate's logging faults (``FaultyLog``) included.
    """
    started = time.perf_counter()
    settings, pair, config = _prepare(engine, model, requests, scenario, knobs, kind, day_index)
    rng, traffic_rng, ids = _generators(seed, model, day_index, day, seeded_ids)
    n = min(requests, settings.max_requests) if settings.max_requests else requests
    # The correlation ids are drawn after the traffic (from their own generator, or at random).
    traffic = draw_traffic(pair, settings, model, traffic_rng, rng, n, requests, ids.take(n))
    stage = stage_of(config)
    notes = _notes(scenario, knobs, settings, stage, config)
    variants = _day_variants(config, pair, settings, rng, n, traffic)
    candidate = config.candidate.variant if config.candidate else None
    lake_log, own_writer, log_path, router = _log_and_router(engine, model, sink, spill_dir, candidate, variants,
                                                             settings, rng, n, traffic.correlation_ids)
    day_start = dt.datetime.combine(day, dt.time(), UTC)
    try:
        tally = _replay(router, model, pair, settings, traffic, day_start, candidate, rng, n, progress)
        corrupt, orphans = _faulty_rows(model, config, pair, settings, candidate, day_start, traffic, rng, n, ids)
        for extra in (*corrupt, *orphans):
            own_writer.submit(extra)
    finally:
        router.close()
        own_writer.close()
    if progress is not None and n:
        progress(n - (n - 1) // PROGRESS_EVERY * PROGRESS_EVERY)  # the requests since the last report
    _write_feedback(engine, lake_log, tally.feedback)
    notes += _writer_notes(own_writer, sink)
    return _summarize(model, pair, day, scenario, stage, config, n, tally, corrupt, orphans, log_path, own_writer,
                      time.perf_counter() - started, notes)


def _generators(seed: int, model: str, day_index: int, day: dt.date,
                seeded_ids: bool) -> tuple[np.random.Generator, np.random.Generator, Ids]:
    """The day's generators: ``rng``, from which every draw of the day comes in order (never the date: same seed,
    same day of traffic), the traffic's own, and the correlation ids (seeded by the date too, or at random)."""
    model_key = zlib.crc32(model.encode())
    rng = np.random.default_rng([seed, model_key, day_index])
    ids = Ids(np.random.default_rng([seed, model_key, day_index, day.toordinal()]) if seeded_ids else None)
    return rng, np.random.default_rng([seed, model_key]), ids


def _faulty_rows(model: str, config: RoutingConfig, pair: ModelPair, settings: Knobs, candidate: str | None,
                 day_start: dt.datetime, traffic: Traffic, rng: np.random.Generator, n: int, ids: Ids):
    """The day's corrupt rows, then (with a candidate) its orphan rows, drawn from ``rng`` in that order."""
    corrupt = corrupt_rows(model, config, pair, day_start, traffic.times, rng,
                           round(n * settings.corrupt_fraction), ids)
    orphans = orphan_rows(model, candidate, pair, settings, day_start, traffic.times, traffic.rows,
                          traffic.entity_ids, rng, round(n * settings.orphan_fraction), ids) if candidate else []
    return corrupt, orphans


def _prepare(engine: sa.Engine, model: str, requests: int, scenario: str, knobs: dict[str, float] | None,
             kind: str | None, day_index: int) -> tuple[Knobs, ModelPair, RoutingConfig]:
    """The arguments checked, the scenario's knobs, the model pair and the routing to follow."""
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
    return settings, pair, config


def _notes(scenario: str, knobs: dict[str, float] | None, settings: Knobs, stage: str,
           config: RoutingConfig) -> list[str]:
    """What the scenario cannot show at this stage, in words."""
    notes: list[str] = []
    if config.candidate is None and (scenario != "healthy" or bool(knobs)):
        notes.append("no candidate in the routing: the scenario's candidate faults were not applied")
    if scenario == "complaints" and stage == "shadow":
        notes.append("shadow stage: the candidate serves nobody, so its extra complaints cannot show")
    if stage != "shadow" and (settings.shadow_answer_fraction < 1 or settings.orphan_fraction > 0):
        notes.append(f"{stage}: the candidate is not mirrored, so missing answers and orphan served rows "
                     "do not stand out as they do in shadow")
    return notes


def _day_variants(config: RoutingConfig, pair: ModelPair, settings: Knobs, rng: np.random.Generator, n: int,
                  traffic: Traffic) -> dict[str, SimVariant]:
    """Each routed variant's answers for the day (the candidate's with the scenario's faults)."""
    hours = traffic.hours
    variants: dict[str, SimVariant] = {}
    for route in config.routes:
        if route.traffic_percent <= 0 and not route.shadow or route.role == "retired":
            continue
        role = pair.variant_role(route.variant, route.role)
        faulty = route.role == "candidate"
        preds, labels = variant_outputs(pair, role, faulty, settings, rng)
        values = caller_values(preds, labels)
        base = settings.candidate_base_ms if role == "candidate" else settings.stable_base_ms
        latency = simulated_latency(rng, n, base, settings, faulty, traffic.latency_factor).tolist()
        error_p = np.full(n, settings.base_error_rate)
        if faulty and settings.error_rate:
            burst = (hours >= settings.error_start_hour) & (hours < settings.error_start_hour + settings.error_hours)
            error_p = np.where(burst, np.maximum(error_p, settings.error_rate), error_p)
        fails = set(np.flatnonzero(rng.random(n) < error_p).tolist())
        nulls = frozenset(np.flatnonzero(rng.random(n) < settings.null_fraction).tolist()) if faulty else frozenset()
        sim = SimVariant(route.variant, preds, labels, values, latency, fails, nulls)
        if faulty and settings.extreme_fraction:
            sim = with_extremes(sim, pair, settings, rng, n)
        variants[route.variant] = sim
    return variants


def _faulty_log(writer, candidate: str | None, settings: Knobs, rng: np.random.Generator, n: int,
                correlation_ids: list[str]) -> FaultyLog:
    """The writer as the candidate's faulty logging reaches it: which answers are lost and which doubled."""
    lost = rng.random(n) >= settings.shadow_answer_fraction
    doubled = rng.random(n) < settings.duplicate_fraction
    return FaultyLog(writer, candidate,
                     {cid for cid, x in zip(correlation_ids, lost.tolist()) if x},
                     {cid for cid, x in zip(correlation_ids, doubled.tolist()) if x})


def _log_and_router(engine: sa.Engine, model: str, sink: LakeWriter | None, spill_dir, candidate: str | None,
                    variants: dict[str, SimVariant], settings: Knobs, rng: np.random.Generator, n: int,
                    correlation_ids: list[str]) -> tuple[LakeLog | None, Any, FaultyLog, Router]:
    """The day's log path (the lake, or a LogWriter on the database), its candidate faults, and the Router."""
    lake_log = LakeLog(sink) if sink is not None else None
    own_writer = lake_log or LogWriter(
        engine, Path(spill_dir) if spill_dir is not None else _default_spill_dir(model),
        batch_rows=10_000, max_buffer_rows=200_000, flush_seconds=0.1, name=f"simulate-{model}")
    log_path = _faulty_log(own_writer, candidate, settings, rng, n, correlation_ids)
    router = Router(engine, model, variants, writer=log_path, refresh_seconds=None,
                    shadow_timeout_ms=settings.shadow_timeout_ms, shadow_workers=2,
                    # Latencies are simulated: a shadow call times out when its simulated latency
                    # exceeds the timeout, never because the machine replaying the day is busy.
                    shadow_deadline_ms=SHADOW_REAL_DEADLINE_MS,
                    max_pending_shadow=max(10_000, n), seed=int(rng.integers(2**31)))
    return lake_log, own_writer, log_path, router


def _replay(router: Router, model: str, pair: ModelPair, settings: Knobs, traffic: Traffic,
            day_start: dt.datetime, candidate: str | None, rng: np.random.Generator, n: int,
            progress: Callable[[int], None] | None) -> _Tally:
    """Every request through the router, in time order, with the complaints and actual outcomes it draws."""
    plan_shadows = router.shadow_variants
    feedback_end = day_start + dt.timedelta(days=2) - dt.timedelta(microseconds=1)
    u_complaint = rng.random(n).tolist()
    u_actual = rng.random(n).tolist()
    complaint_delay = rng.exponential(20 * 60e6, size=n).tolist()  # ~20 minutes
    actual_delay = rng.exponential(settings.actual_delay_hours * 3_600e6, size=n).tolist()
    candidate_complaint = (settings.candidate_complaint_rate if settings.candidate_complaint_rate is not None
                           else settings.complaint_rate)
    tally = _Tally()

    def feedback(correlation_id: str, at: dt.datetime, delay_us: float, kind: str, value, label=None) -> None:
        tally.feedback.append(FeedbackRow(correlation_id, min(at + dt.timedelta(microseconds=delay_us), feedback_end),
                                          model, kind, value, label))

    for i, (offset, row, entity) in enumerate(zip(traffic.times.tolist(), traffic.rows, traffic.entity_ids)):
        if progress is not None and i and i % PROGRESS_EVERY == 0:
            progress(PROGRESS_EVERY)
        if plan_shadows and i % SHADOW_PACING == 0:
            # A day is replayed in seconds: let the mirror catch up, so that a shadow call's real
            # wait in the queue (which counts against its timeout) stays far below the timeout
            # however loaded the machine is. Timeouts then come from the simulated latency only.
            router.drain()
        ts = day_start + dt.timedelta(microseconds=offset)
        try:
            answer = router.predict((i, row), entity, correlation_id=traffic.correlation_ids[i], ts=ts)
        except PredictionFailed as failed:
            tally.served_errors[failed.variant] += 1
            _count_shadows(tally, plan_shadows, failed.variant)
            if u_complaint[i] < settings.complaint_on_error * traffic.complaint_factor[i]:
                feedback(failed.correlation_id, ts, complaint_delay[i], "complaint", 1.0)
                tally.complaints += 1
            continue
        tally.served[answer.variant] += 1
        _count_shadows(tally, plan_shadows, answer.variant)
        rate = candidate_complaint if answer.variant == candidate else settings.complaint_rate
        if u_complaint[i] < rate * traffic.complaint_factor[i]:
            feedback(answer.correlation_id, ts, complaint_delay[i], "complaint", 1.0)
            tally.complaints += 1
        if u_actual[i] < settings.actual_fraction:
            value, label = pair.actual(row)
            feedback(answer.correlation_id, ts, actual_delay[i], "actual", value, label)
            tally.actuals += 1
    return tally


def _count_shadows(tally: _Tally, plan_shadows, serving: str) -> None:
    for name in plan_shadows:
        if name != serving:
            tally.shadow_calls[name] += 1


def _summarize(model: str, pair: ModelPair, day: dt.date, scenario: str, stage: str, config: RoutingConfig, n: int,
               tally: _Tally, corrupt: list, orphans: list, log_path: FaultyLog, writer, elapsed: float,
               notes: list[str]) -> SimulationSummary:
    """What the day did, from the simulation's own counts (the rows handed to the log path, not read back)."""
    logged = (sum(tally.served.values()) + sum(tally.served_errors.values()) + sum(tally.shadow_calls.values())
              + len(corrupt) + len(orphans) - log_path.dropped + log_path.duplicated)
    writer_stats = writer.stats()
    return SimulationSummary(
        model=model, kind=pair.kind, day=day, scenario=scenario, stage=stage, routing_version=config.version,
        requests=n, served=dict(tally.served), served_errors=dict(tally.served_errors),
        shadow_calls=dict(tally.shadow_calls), prediction_rows=logged, corrupt_rows=len(corrupt),
        complaints=tally.complaints, actuals=tally.actuals, feedback_rows=len(tally.feedback),
        spilled_rows=writer_stats["spilled"] + writer_stats["overflowed"], elapsed_s=round(elapsed, 3),
        notes=tuple(notes), missing_rows=log_path.dropped, duplicate_rows=log_path.duplicated,
        orphan_rows=len(orphans),
    )


def _write_feedback(engine: sa.Engine, lake_log: LakeLog | None, feedback: list[FeedbackRow]) -> None:
    for start in range(0, len(feedback), FEEDBACK_BATCH):
        if lake_log is not None:
            lake_log.write_feedback(feedback[start:start + FEEDBACK_BATCH])
        else:
            write_feedback(engine, feedback[start:start + FEEDBACK_BATCH])


def _writer_notes(writer, sink: LakeWriter | None) -> list[str]:
    """Where the rows went when it was not straight into the database."""
    notes = []
    stats = writer.stats()
    if sink is not None:
        notes.append(f"rows written to the lake {sink.root}, not to the database")
    if stats["pending_segments"]:
        notes.append(f"the database was unreachable: {stats['pending_segments']} spill segment(s) wait in "
                     f"{writer.spill_dir} and are replayed by the next writer on that folder")
    return notes


def _default_spill_dir(model: str) -> Path:
    from rollout_pipeline.config import state_dir

    return state_dir() / "spill" / f"simulate-{model}"
