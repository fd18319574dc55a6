"""Days of prediction logs written the way another serving system would: the decision-quality benchmark's input.

Deliberately independent of ``rollout_pipeline.simulate`` (no Router, no scikit-learn):
plain numpy draws of the README's log contract, with what real traffic has and a
per-request test gets wrong -- entities (users) that send many requests each
(heavy-tailed), and differ from each other in latency, complaint propensity and
outcome. Healthy candidates are as good as the stable model (a little better or
worse at random); faulty ones carry one fault of a size the default policy is
meant to catch (documented per fault in ``FAULTS``).

Stages follow the product: ``shadow`` (stable serves, the candidate answers every
request in shadow), ``canary-P`` (the candidate serves the entities of its P% of
buckets; the stable model answers those requests in shadow), ``production`` (the
new model serves, the old one shadows it).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import numpy as np

from rollout_pipeline.domain.records import FeedbackRow, PredictionRow

STAGES = ("shadow", "canary-1", "canary-20", "canary-50", "production")


@dataclass(frozen=True)
class Fault:
    """One way a candidate can be wrong, where it is visible, and its size range."""

    name: str
    description: str
    stages: tuple[str, ...]  # where the fault can be seen in the logs at all


FAULTS: dict[str, Fault] = {f.name: f for f in (
    Fault("latency", "candidate 2-4x slower on every request", STAGES),
    Fault("errors", "candidate fails 5-30% of its calls", STAGES),
    Fault("error_burst", "candidate fails half its calls for 2-4 hours", STAGES),
    Fault("shifted", "candidate predictions shifted by 1-2 stable standard deviations", STAGES),
    Fault("extreme", "1-5% of candidate answers absurd (+-1e6)", STAGES),
    Fault("null", "10-20% of the candidate's ok answers carry no prediction", STAGES),
    Fault("inaccurate", "candidate's error against actual outcomes 3-6x the stable's", STAGES),
    Fault("complaints", "candidate-served answers draw 4-8x more complaints", ("canary-1", "canary-20", "canary-50")),
    Fault("missing", "the candidate answers only 10-50% of the mirrored requests (the rest absent)", ("shadow",)),
    Fault("orphan", "100 candidate rows served=true during shadow with no stable twin", ("shadow",)),
    Fault("duplicates", "30 exact duplicate candidate rows", STAGES),
)}


@dataclass(frozen=True)
class DaySpec:
    """What to generate: a stage, a size, a seed, and at most one fault."""

    stage: str
    requests: int
    seed: int
    fault: str | None = None
    labels: bool = False  # a classifier (label outputs) instead of a regression
    stable: str = "v1"
    candidate: str = "v2"
    day: dt.date = dt.date(2026, 3, 2)

    @property
    def canary_share(self) -> float:
        """The candidate's share of entities in canary (0 in shadow; production is handled apart)."""
        stage, percent = stage_state(self.stage)
        return percent / 100 if stage == "canary" else 0.0


@dataclass
class _Draws:
    """The day's draws, request by request (arrays of ``n``), before they become rows."""

    entity: np.ndarray
    anonymous: np.ndarray
    complaint_p: np.ndarray  # per entity
    seconds: np.ndarray
    truth: np.ndarray
    stable_pred: np.ndarray
    cand_pred: np.ndarray
    cand_serves: np.ndarray
    stable_lat: np.ndarray
    cand_lat: np.ndarray
    stable_err: np.ndarray
    cand_err: np.ndarray
    cand_null: np.ndarray
    complaint_mult: float = 1.0


STABLE_SIGMA = 35.0


def generate(spec: DaySpec, model: str) -> tuple[list[PredictionRow], list[FeedbackRow], dict]:
    """The day's prediction and feedback rows for ``model``, and what was drawn (sizes of the fault)."""
    # One generator, drawn in a fixed order (the steps below, in turn): the day is the seed's.
    rng = np.random.default_rng(spec.seed)
    n = spec.requests
    draws = _draw_requests(spec, rng, n)
    drawn = _apply_fault(draws, spec.fault, rng, n)
    ts0 = dt.datetime.combine(spec.day, dt.time(), dt.UTC)
    times = [ts0 + dt.timedelta(seconds=float(s)) for s in draws.seconds]
    ids = [uuid.UUID(int=int(x)).hex for x in rng.integers(0, 2**63, n)]
    ents = [None if a else f"u{e}" for a, e in zip(draws.anonymous.tolist(), draws.entity.tolist())]
    rows = _prediction_rows(spec, model, draws, rng, n, drawn, times, ids, ents)
    return rows, _feedback_rows(spec, model, draws, rng, n, times, ids), drawn


def _draw_requests(spec: DaySpec, rng: np.random.Generator, n: int) -> _Draws:
    """Entities, request times, true outcomes, both models' predictions and latencies, who serves, errors."""
    # Entities: a heavy-tailed number of requests each (mean ~8), 10% anonymous requests.
    population = max(30, n // 8)
    weight = rng.lognormal(0.0, 1.2, population)
    entity = rng.choice(population, size=n, p=weight / weight.sum())
    anonymous = rng.random(n) < 0.1
    # Entity traits: a latency factor, a complaint propensity, an outcome level.
    lat_factor = rng.lognormal(0.0, 0.25, population)
    complaint_p = rng.beta(0.5, 50.0, population)  # mean ~1%, concentrated on a few entities
    level = rng.normal(0.0, 1.0, population)
    # Requests: when, the true outcome, each model's prediction.
    seconds = np.sort(rng.uniform(0, 86_400, n))
    truth = 150.0 + 40.0 * level[entity] + rng.normal(0, 30.0, n)
    cand_sigma = STABLE_SIGMA * rng.uniform(0.9, 1.05)
    stable_pred = truth + rng.normal(0, STABLE_SIGMA, n)
    cand_pred = truth + rng.normal(0, cand_sigma, n)
    # Who serves: sticky by entity bucket in canary; anonymous requests get a random bucket.
    bucket = np.where(anonymous, rng.integers(0, 10_000, n), (entity * 2_654_435_761) % 10_000)
    share = spec.canary_share
    if spec.stage == "production":
        cand_serves = np.ones(n, bool)
    elif share:
        cand_serves = bucket < share * 10_000
    else:
        cand_serves = np.zeros(n, bool)
    base = rng.lognormal(np.log(6.0), 0.45, n) * lat_factor[entity] + 3.0
    stable_lat = base * rng.lognormal(0, 0.1, n)
    cand_lat = base * rng.uniform(0.95, 1.1) * rng.lognormal(0, 0.1, n)
    stable_err = rng.random(n) < 0.002
    cand_err = rng.random(n) < 0.002
    return _Draws(entity, anonymous, complaint_p, seconds, truth, stable_pred, cand_pred, cand_serves, stable_lat,
                  cand_lat, stable_err, cand_err, cand_null=np.zeros(n, bool))


def _apply_fault(d: _Draws, fault: str | None, rng: np.random.Generator, n: int) -> dict:
    """The candidate's fault drawn into ``d`` (the faults that change answers); what was drawn, by name."""
    drawn: dict = {}
    if fault == "latency":
        drawn["factor"] = f = rng.uniform(2.0, 4.0)
        d.cand_lat = d.cand_lat * f
    elif fault == "errors":
        drawn["rate"] = r = rng.uniform(0.05, 0.30)
        d.cand_err |= rng.random(n) < r
    elif fault == "error_burst":
        start = rng.uniform(6, 16) * 3600
        drawn["start_hour"] = start / 3600
        drawn["hours"] = hours = rng.uniform(2, 4)
        d.cand_err |= (d.seconds >= start) & (d.seconds < start + hours * 3600) & (rng.random(n) < 0.5)
    elif fault == "shifted":
        drawn["sd"] = k = rng.uniform(1.0, 2.0) * rng.choice([-1, 1])
        d.cand_pred = d.cand_pred + k * np.std(d.stable_pred)
    elif fault == "extreme":
        drawn["share"] = s = rng.uniform(0.01, 0.05)
        hit = rng.random(n) < s
        d.cand_pred = np.where(hit, rng.choice([-1e6, 1e6], n), d.cand_pred)
    elif fault == "null":
        drawn["share"] = s = rng.uniform(0.10, 0.20)
        d.cand_null = rng.random(n) < s
    elif fault == "inaccurate":
        drawn["factor"] = f = rng.uniform(3.0, 6.0)
        d.cand_pred = d.truth + rng.normal(0, STABLE_SIGMA * f, n)
    elif fault == "complaints":
        drawn["factor"] = d.complaint_mult = rng.uniform(4.0, 8.0)
    return drawn


def _label_of(pred):
    return np.where(pred > 150.0, "high", "low")


def _prediction_rows(spec: DaySpec, model: str, d: _Draws, rng: np.random.Generator, n: int, drawn: dict,
                     times: list, ids: list[str], ents: list) -> list[PredictionRow]:
    """Each request's served row and its shadow twin, then the logging faults (missing, orphan, duplicates)."""
    keep_shadow = np.ones(n, bool)
    if spec.fault == "missing":
        drawn["answered"] = a = rng.uniform(0.10, 0.50)
        keep_shadow = rng.random(n) < a
    s_lab, c_lab = _label_of(d.stable_pred), _label_of(d.cand_pred)
    if spec.fault == "extreme":  # a classifier's absurd answer: a label it was never trained to give
        c_lab = np.where(np.abs(d.cand_pred) >= 1e6, "\u00bf?", c_lab)

    def row(i, variant, served, lat, err, pred, lab, null=False):
        status = "error" if err else ("timeout" if not served and lat > 300 else "ok")
        if status != "ok" or null:
            p, label = None, None
        elif spec.labels:
            p, label = None, str(lab)
        else:
            p, label = float(pred), None
        return PredictionRow(ids[i], times[i], model, variant, served, ents[i], float(min(lat, 300.0) if not served
                                                                                     else lat), status, p, label)

    rows: list[PredictionRow] = []
    for i in range(n):
        cand = (d.cand_lat[i], d.cand_err[i], d.cand_pred[i], c_lab[i], d.cand_null[i])
        if spec.stage == "production" or bool(d.cand_serves[i]):
            rows.append(row(i, spec.candidate, True, *cand))
            rows.append(row(i, spec.stable, False, d.stable_lat[i], d.stable_err[i], d.stable_pred[i], s_lab[i]))
        else:
            rows.append(row(i, spec.stable, True, d.stable_lat[i], d.stable_err[i], d.stable_pred[i], s_lab[i]))
            if spec.stage == "shadow" and keep_shadow[i]:
                rows.append(row(i, spec.candidate, False, *cand))
    if spec.fault == "orphan":
        for _ in range(100):
            i = int(rng.integers(0, n))
            rows.append(PredictionRow(uuid.uuid4().hex, times[i], model, spec.candidate, True, ents[i], 9.0, "ok",
                                      None if spec.labels else float(d.cand_pred[i]), "high" if spec.labels else None))
    if spec.fault == "duplicates":
        cand_rows = [r for r in rows if r.variant == spec.candidate]
        for k in rng.choice(len(cand_rows), size=min(30, len(cand_rows)), replace=False):
            rows.append(cand_rows[int(k)])
    return rows


def _feedback_rows(spec: DaySpec, model: str, d: _Draws, rng: np.random.Generator, n: int, times: list,
                   ids: list[str]) -> list[FeedbackRow]:
    """Complaints on served answers, outcomes for 60% of served requests within a day."""
    feedback: list[FeedbackRow] = []
    served_by_cand = (d.cand_serves | (spec.stage == "production"))
    p_complaint = d.complaint_p[d.entity] * np.where(served_by_cand, d.complaint_mult, 1.0)
    complained = rng.random(n) < np.minimum(p_complaint, 1.0)
    with_actual = rng.random(n) < 0.6
    delay = rng.exponential(6 * 3600, n)
    for i in np.flatnonzero(complained):
        feedback.append(FeedbackRow(ids[i], times[i] + dt.timedelta(minutes=5), model, "complaint", 1.0, None))
    for i in np.flatnonzero(with_actual):
        when = times[i] + dt.timedelta(seconds=float(min(delay[i], 86_400)))
        if spec.labels:
            feedback.append(FeedbackRow(ids[i], when, model, "actual", None, str(_label_of(d.truth[i:i + 1])[0])))
        else:
            feedback.append(FeedbackRow(ids[i], when, model, "actual", float(d.truth[i]), None))
    return feedback


def stage_state(stage: str) -> tuple[str, int]:
    """The rollout stage and canary share of a generated stage name."""
    if stage.startswith("canary"):
        return "canary", int(stage.split("-")[1])
    return stage, (100 if stage == "production" else 0)

