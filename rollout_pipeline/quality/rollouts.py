"""Whole rollouts of generated logs, night by night: the rollout-mode decision-quality benchmark's input.

Like ``quality.traffic`` (and independent of ``rollout_pipeline.simulate``: no Router,
no scikit-learn), plain numpy draws of the README's log contract -- but for a whole
rollout: one population of entities that comes back night after night (the same
users, with their own latency, complaint propensity and outcome level; a heavy-tailed
number of requests each, 10% anonymous requests), and a candidate whose traits are
drawn once per rollout. Each night is generated for the stage and share the rollout
is at, as a serving system would log it: sticky assignment by entity bucket, and
either **mirrored** rows (the other model answers every request in shadow, as our
Router does with ``shadow_stable_during_canary`` and ``shadow_candidate_during_canary``)
or, in canary, **served rows only** (logs from a system that does not mirror).

A faulty rollout carries one fault from a stage on (``fault_from``): the fault is
off before the rollout reaches that stage and on from then. Its size is a multiple
(``size``, 1.2-3 for "near the limit") of the regression the default policy promises
to stop before production (each gate's ``*_detectable``, ``FAULTS``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.domain.records import FeedbackRow, PredictionRow
from rollout_pipeline.domain.scan_rows import blake2b_bucket

ORDER = {"shadow": 0, "canary-1": 1, "canary-20": 20, "canary-50": 50, "production": 100}


@dataclass(frozen=True)
class Fault:
    """One way a candidate can be wrong, its unit of size, and where it can be seen."""

    name: str
    unit: str  # what size 1 means, in the policy's terms
    served_only: bool = False  # only visible in what users were shown (complaints)


FAULTS: dict[str, Fault] = {f.name: f for f in (
    Fault("latency", "share of answers above the stable's p99 + 20%: latency_tail_detectable (3%)"),
    Fault("errors", "extra errors: error_rate_detectable (3 points)"),
    Fault("broken", "ok answers that are empty: broken_answers_detectable (1%)"),
    Fault("extreme", "absurd answers (+-1e6): extreme_share_detectable (1%)"),
    Fault("shifted", "mean shift: prediction_shift_detectable (1 stable sd)"),
    Fault("inaccurate", "growth of the mean absolute error: accuracy_detectable (50%)"),
    Fault("complaints", "extra complaints on served answers: complaint_detectable (3 points)", served_only=True),
)}
FAULT_STAGES = ("shadow", "canary-1", "canary-20", "canary-50")


@dataclass(frozen=True)
class RolloutSpec:
    """One rollout to generate: volume, seed, what the logs carry, and at most one fault."""

    requests: int  # per night
    seed: int
    fault: str | None = None
    size: float = 0.0  # multiple of the fault's unit
    fault_from: str = "shadow"  # the stage from which the fault is on
    outcomes: bool = True  # the service sends actual outcomes
    mirrored: bool = True  # canary logs carry the other model's shadow answers (our Router)
    labels: bool = False  # a classifier (label outputs) instead of a regression
    stable: str = "v1"
    candidate: str = "v2"

    def fault_on(self, stage: str, percent: int) -> bool:
        """Whether the fault is on at this stage and share."""
        if self.fault is None:
            return False
        where = ORDER["shadow"] if stage == "shadow" else (100 if stage == "production" else percent)
        return where >= ORDER[self.fault_from]


@dataclass(frozen=True)
class Population:
    """The rollout's users and the candidate's traits, drawn once."""

    weight: np.ndarray  # each entity's share of the requests
    lat_factor: np.ndarray
    complaint_p: np.ndarray
    level: np.ndarray
    bucket: np.ndarray  # sticky bucket 0..9999
    ids: list[str]
    cand_sigma: float  # the candidate's noise, relative to the stable's
    cand_speed: float  # the candidate's latency, relative to the stable's
    slow_factor: float  # latency fault: the factor that puts `size` x 3% of answers above the stable's p99 + 20%


STABLE_SIGMA = 35.0


def population(spec: RolloutSpec, policy: Policy = Policy()) -> Population:
    """The entities of the rollout (about one per 8 requests a night) and the candidate's traits."""
    rng = np.random.default_rng([spec.seed, 1])
    count = max(30, spec.requests // 8)
    weight = rng.lognormal(0.0, 1.2, count)
    ids = [f"e{spec.seed}-{k}" for k in range(count)]
    bucket = np.array([blake2b_bucket(i) for i in ids])
    pop = Population(weight / weight.sum(), rng.lognormal(0.0, 0.25, count), rng.beta(0.5, 50.0, count),
                     rng.normal(0.0, 1.0, count), bucket, ids, float(rng.uniform(0.9, 1.05)),
                     float(rng.uniform(0.95, 1.1)), 1.0)
    if spec.fault == "latency":
        pop = _with_slow_factor(pop, spec, policy)
    return pop


def _latency(rng, pop: Population, entity: np.ndarray) -> np.ndarray:
    return rng.lognormal(np.log(6.0), 0.45, len(entity)) * pop.lat_factor[entity] + 3.0


def _with_slow_factor(pop: Population, spec: RolloutSpec, policy: Policy) -> Population:
    """The latency factor whose share of answers above the stable's p99 x (1 + allowed) is size x the detectable."""
    rng = np.random.default_rng([spec.seed, 2])
    entity = rng.choice(len(pop.weight), size=200_000, p=pop.weight)
    base = _latency(rng, pop, entity)
    stable = base * rng.lognormal(0, 0.1, len(base))
    cand = base * pop.cand_speed * rng.lognormal(0, 0.1, len(base))
    limit = np.quantile(stable, 0.99) * (1 + (policy.latency_regression_allowed or 0.0))
    target = min(0.9, spec.size * policy.latency_tail_detectable)
    lo, hi = 1.0, 20.0
    for _ in range(50):
        mid = (lo + hi) / 2
        if (cand * mid > limit).mean() < target:
            lo = mid
        else:
            hi = mid
    return Population(pop.weight, pop.lat_factor, pop.complaint_p, pop.level, pop.bucket, pop.ids, pop.cand_sigma,
                      pop.cand_speed, hi)


@dataclass
class _Night:
    """One night's draws, request by request (arrays of ``n``), before they become rows."""

    entity: np.ndarray
    anonymous: np.ndarray
    cand_serves: np.ndarray
    seconds: np.ndarray
    truth: np.ndarray
    stable_pred: np.ndarray
    cand_pred: np.ndarray
    stable_lat: np.ndarray
    cand_lat: np.ndarray
    stable_err: np.ndarray
    cand_err: np.ndarray
    cand_empty: np.ndarray
    absurd: np.ndarray


def night(spec: RolloutSpec, pop: Population, model: str, day: dt.date, index: int, stage: str, percent: int,
          policy: Policy = Policy()) -> tuple[list[PredictionRow], list[FeedbackRow], bool]:
    """One night's prediction and feedback rows at (stage, percent); whether the fault was on."""
    # One generator, drawn in a fixed order (requests, then feedback): the night is the seed's.
    rng = np.random.default_rng([spec.seed, 3, index])
    n = spec.requests
    fault_on = spec.fault_on(stage, percent)
    fault = spec.fault if fault_on else None
    d = _draw_night(spec, pop, rng, n, stage, percent, fault, policy)
    ts0 = dt.datetime.combine(day, dt.time(), dt.UTC)
    times = [ts0 + dt.timedelta(seconds=float(s)) for s in d.seconds]
    cids = [f"{model}-{index}-{k}" for k in range(n)]
    ents = [None if a else pop.ids[e] for a, e in zip(d.anonymous.tolist(), d.entity.tolist())]
    rows = _night_rows(spec, model, d, stage, times, cids, ents)
    feedback = _night_feedback(spec, pop, model, d, rng, n, fault, policy, times, cids)
    return rows, feedback, fault_on


def _draw_night(spec: RolloutSpec, pop: Population, rng: np.random.Generator, n: int, stage: str, percent: int,
                fault: str | None, policy: Policy) -> _Night:
    """Who asks, who serves, the true outcomes, both models' answers and latencies, with the fault if it is on."""
    entity = rng.choice(len(pop.weight), size=n, p=pop.weight)
    anonymous = rng.random(n) < 0.1
    bucket = np.where(anonymous, rng.integers(0, 10_000, n), pop.bucket[entity])
    if stage == "production":
        cand_serves = np.ones(n, bool)
    elif stage == "canary":
        cand_serves = bucket < percent * 100
    else:
        cand_serves = np.zeros(n, bool)
    seconds = np.sort(rng.uniform(0, 86_400, n))
    truth = 150.0 + 40.0 * pop.level[entity] + rng.normal(0, 30.0, n)
    stable_pred = truth + rng.normal(0, STABLE_SIGMA, n)
    sigma = STABLE_SIGMA * pop.cand_sigma
    if fault == "inaccurate":
        sigma = STABLE_SIGMA * (1 + spec.size * policy.accuracy_detectable)
    cand_pred = truth + rng.normal(0, sigma, n)
    if fault == "shifted":
        cand_pred = cand_pred + spec.size * policy.prediction_shift_detectable * float(np.std(stable_pred))
    base = _latency(rng, pop, entity)
    stable_lat = base * rng.lognormal(0, 0.1, n)
    cand_lat = base * pop.cand_speed * rng.lognormal(0, 0.1, n) * (pop.slow_factor if fault == "latency" else 1.0)
    stable_err = rng.random(n) < 0.002
    cand_err = rng.random(n) < 0.002 + (spec.size * policy.error_rate_detectable if fault == "errors" else 0.0)
    cand_empty = rng.random(n) < (spec.size * policy.broken_answers_detectable if fault == "broken" else 0.0)
    if fault == "extreme":
        absurd = rng.random(n) < spec.size * policy.extreme_share_detectable
        cand_pred = np.where(absurd, rng.choice([-1e6, 1e6], n), cand_pred)
    else:
        absurd = np.zeros(n, bool)
    return _Night(entity, anonymous, cand_serves, seconds, truth, stable_pred, cand_pred, stable_lat, cand_lat,
                  stable_err, cand_err, cand_empty, absurd)


def _label(pred: float, odd: bool = False) -> str:
    return "\u00bf?" if odd else ("high" if pred > 150.0 else "low")


def _night_rows(spec: RolloutSpec, model: str, d: _Night, stage: str, times: list, cids: list[str],
                ents: list) -> list[PredictionRow]:
    """Each request's served row and, where the stage mirrors, the other model's shadow answer."""
    def row(i: int, variant: str, served: bool, lat: float, err: bool, pred: float, empty: bool = False,
            odd: bool = False) -> PredictionRow:
        status = "error" if err else ("timeout" if not served and lat > 300 else "ok")
        if status != "ok" or empty:
            p, lab = None, None
        elif spec.labels:
            p, lab = None, _label(pred, odd)
        else:
            p, lab = float(pred), None
        return PredictionRow(cids[i], times[i], model, variant, served, ents[i],
                             float(lat if served else min(lat, 300.0)), status, p, lab)

    mirror = stage != "canary" or spec.mirrored
    rows: list[PredictionRow] = []
    c, s = spec.candidate, spec.stable
    for i in range(len(cids)):
        if d.cand_serves[i]:
            rows.append(row(i, c, True, d.cand_lat[i], d.cand_err[i], d.cand_pred[i], d.cand_empty[i], d.absurd[i]))
            if mirror:  # the old stable in production, the stable in canary
                rows.append(row(i, s, False, d.stable_lat[i], d.stable_err[i], d.stable_pred[i]))
        else:
            rows.append(row(i, s, True, d.stable_lat[i], d.stable_err[i], d.stable_pred[i]))
            if stage == "shadow" or (stage == "canary" and spec.mirrored):
                rows.append(row(i, c, False, d.cand_lat[i], d.cand_err[i], d.cand_pred[i], d.cand_empty[i],
                                d.absurd[i]))
    return rows


def _night_feedback(spec: RolloutSpec, pop: Population, model: str, d: _Night, rng: np.random.Generator, n: int,
                    fault: str | None, policy: Policy, times: list, cids: list[str]) -> list[FeedbackRow]:
    """Complaints on served answers; actual outcomes for 60% of requests within a day."""
    extra = spec.size * policy.complaint_detectable if fault == "complaints" else 0.0
    p_complaint = pop.complaint_p[d.entity] + np.where(d.cand_serves, extra, 0.0)
    complained = rng.random(n) < np.minimum(p_complaint, 1.0)
    feedback = [FeedbackRow(cids[i], times[i] + dt.timedelta(minutes=5), model, "complaint", 1.0, None)
                for i in np.flatnonzero(complained)]
    if spec.outcomes:
        delay = np.minimum(rng.exponential(6 * 3600, n), 86_400)
        for i in np.flatnonzero(rng.random(n) < 0.6):
            when = times[i] + dt.timedelta(seconds=float(delay[i]))
            if spec.labels:
                feedback.append(FeedbackRow(cids[i], when, model, "actual", None, _label(d.truth[i])))
            else:
                feedback.append(FeedbackRow(cids[i], when, model, "actual", float(d.truth[i]), None))
    return feedback
