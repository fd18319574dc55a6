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


def generate(spec: DaySpec, model: str) -> tuple[list[PredictionRow], list[FeedbackRow], dict]:
    """The day's prediction and feedback rows for ``model``, and what was drawn (sizes of the fault)."""
    rng = np.random.default_rng(spec.seed)
    n = spec.requests
    drawn: dict = {}
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
    stable_sigma = 35.0
    cand_sigma = stable_sigma * rng.uniform(0.9, 1.05)
    stable_pred = truth + rng.normal(0, stable_sigma, n)
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
    cand_null = np.zeros(n, bool)
    complaint_mult = 1.0
    fault = spec.fault
    if fault == "latency":
        drawn["factor"] = f = rng.uniform(2.0, 4.0)
        cand_lat = cand_lat * f
    elif fault == "errors":
        drawn["rate"] = r = rng.uniform(0.05, 0.30)
        cand_err |= rng.random(n) < r
    elif fault == "error_burst":
        start = rng.uniform(6, 16) * 3600
        drawn["start_hour"] = start / 3600
        drawn["hours"] = hours = rng.uniform(2, 4)
        cand_err |= (seconds >= start) & (seconds < start + hours * 3600) & (rng.random(n) < 0.5)
    elif fault == "shifted":
        drawn["sd"] = k = rng.uniform(1.0, 2.0) * rng.choice([-1, 1])
        cand_pred = cand_pred + k * np.std(stable_pred)
    elif fault == "extreme":
        drawn["share"] = s = rng.uniform(0.01, 0.05)
        hit = rng.random(n) < s
        cand_pred = np.where(hit, rng.choice([-1e6, 1e6], n), cand_pred)
    elif fault == "null":
        drawn["share"] = s = rng.uniform(0.10, 0.20)
        cand_null = rng.random(n) < s
    elif fault == "inaccurate":
        drawn["factor"] = f = rng.uniform(3.0, 6.0)
        cand_pred = truth + rng.normal(0, stable_sigma * f, n)
    elif fault == "complaints":
        drawn["factor"] = complaint_mult = rng.uniform(4.0, 8.0)

    def label_of(pred):
        return np.where(pred > 150.0, "high", "low")

    ts0 = dt.datetime.combine(spec.day, dt.time(), dt.UTC)
    times = [ts0 + dt.timedelta(seconds=float(s)) for s in seconds]
    ids = [uuid.UUID(int=int(x)).hex for x in rng.integers(0, 2**63, n)]
    ents = [None if a else f"u{e}" for a, e in zip(anonymous.tolist(), entity.tolist())]
    rows: list[PredictionRow] = []
    keep_shadow = np.ones(n, bool)
    if fault == "missing":
        drawn["answered"] = a = rng.uniform(0.10, 0.50)
        keep_shadow = rng.random(n) < a
    s_lab, c_lab = label_of(stable_pred), label_of(cand_pred)
    if fault == "extreme":  # a classifier's absurd answer: a label it was never trained to give
        c_lab = np.where(np.abs(cand_pred) >= 1e6, "\u00bf?", c_lab)

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

    for i in range(n):
        cs = bool(cand_serves[i])
        if spec.stage == "production" or cs:
            rows.append(row(i, spec.candidate, True, cand_lat[i], cand_err[i], cand_pred[i], c_lab[i], cand_null[i]))
            rows.append(row(i, spec.stable, False, stable_lat[i], stable_err[i], stable_pred[i], s_lab[i]))
        else:
            rows.append(row(i, spec.stable, True, stable_lat[i], stable_err[i], stable_pred[i], s_lab[i]))
            if spec.stage == "shadow" and keep_shadow[i]:
                rows.append(row(i, spec.candidate, False, cand_lat[i], cand_err[i], cand_pred[i], c_lab[i],
                                cand_null[i]))
    if fault == "orphan":
        for k in range(100):
            i = int(rng.integers(0, n))
            rows.append(PredictionRow(uuid.uuid4().hex, times[i], model, spec.candidate, True, ents[i], 9.0, "ok",
                                      None if spec.labels else float(cand_pred[i]), "high" if spec.labels else None))
    if fault == "duplicates":
        cand_rows = [r for r in rows if r.variant == spec.candidate]
        for k in rng.choice(len(cand_rows), size=min(30, len(cand_rows)), replace=False):
            rows.append(cand_rows[int(k)])
    # Feedback: complaints on served answers, outcomes for 60% of served requests within a day.
    feedback: list[FeedbackRow] = []
    served_by_cand = (cand_serves | (spec.stage == "production"))
    p_complaint = complaint_p[entity] * np.where(served_by_cand, complaint_mult, 1.0)
    complained = rng.random(n) < np.minimum(p_complaint, 1.0)
    with_actual = rng.random(n) < 0.6
    delay = rng.exponential(6 * 3600, n)
    for i in np.flatnonzero(complained):
        feedback.append(FeedbackRow(ids[i], times[i] + dt.timedelta(minutes=5), model, "complaint", 1.0, None))
    for i in np.flatnonzero(with_actual):
        when = times[i] + dt.timedelta(seconds=float(min(delay[i], 86_400)))
        if spec.labels:
            feedback.append(FeedbackRow(ids[i], when, model, "actual", None, str(label_of(truth[i:i + 1])[0])))
        else:
            feedback.append(FeedbackRow(ids[i], when, model, "actual", float(truth[i]), None))
    return rows, feedback, drawn


def stage_state(stage: str) -> tuple[str, int]:
    """The rollout stage and canary share of a generated stage name."""
    if stage.startswith("canary"):
        return "canary", int(stage.split("-")[1])
    return stage, (100 if stage == "production" else 0)

