"""A simulated day's answers: what each variant says to each request, how long it takes, when it fails.

Outputs are precomputed for every data-set row (one batched ``predict`` per model) and
shifted, made inaccurate or absurd for a faulty candidate; latencies are drawn (base
time + a lognormal component, times the entity's slowness) and reported, never slept.
Every draw comes from the generator passed in, in a fixed order: the day's output is
the seed's.
"""

from __future__ import annotations

import json
import math

import numpy as np

from rollout_pipeline.serving.outputs import Output, encode_items
from rollout_pipeline.simulate.models import ModelPair
from rollout_pipeline.simulate.scenarios import Knobs, effective_shift


class SimulatedFailure(RuntimeError):
    """The error a simulated model raises in an error scenario."""


class SimVariant:
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


def variant_outputs(pair: ModelPair, role: str, faulty: bool, knobs: Knobs,
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
        preds, labels = inaccurate(pair, preds, labels, knobs.inaccuracy, rng)
    return (None if preds is None else preds.tolist()), (None if labels is None else labels.tolist())


def inaccurate(pair: ModelPair, preds, labels, ratio: float, rng: np.random.Generator):
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


def caller_values(preds: list | None, labels: list | None) -> list:
    if labels is None:
        return preds
    decoded = [json.loads(lbl) if isinstance(lbl, str) and lbl.startswith("[") else lbl for lbl in labels]
    return decoded if preds is None else [{"prediction": p, "label": lbl} for p, lbl in zip(preds, decoded)]


def simulated_latency(rng: np.random.Generator, n: int, base: float, knobs: Knobs, faulty: bool,
             entity_factor: np.ndarray) -> np.ndarray:
    sigma = knobs.latency_sigma + (knobs.candidate_latency_sigma if faulty else 0.0)
    latency = (base + rng.lognormal(math.log(knobs.median_extra_ms), sigma, size=n)) * entity_factor
    return latency * (knobs.candidate_latency_factor if faulty else 1.0)


def with_extremes(sim: SimVariant, pair: ModelPair, knobs: Knobs, rng: np.random.Generator, n: int) -> SimVariant:
    """Wrap ``sim`` so that a fraction of requests get an absurd answer."""
    extreme = set(np.flatnonzero(rng.random(n) < knobs.extreme_fraction).tolist())
    signs = (np.where(rng.random(n) < 0.5, -1.0, 1.0) * knobs.extreme_scale).tolist()

    class _Extreme(SimVariant):
        __slots__ = ()

        def __call__(self, features: tuple[int, int]) -> Output:
            output = SimVariant.__call__(self, features)
            i = features[0]
            if i not in extreme:
                return output
            if pair.task == "recommendation":
                return Output(label="[]", latency_ms=output.latency_ms, value=[])
            absurd = signs[i] if pair.task == "regression" else abs(signs[i])
            return Output(prediction=absurd, label=output.label, latency_ms=output.latency_ms, value=absurd)

    return _Extreme(sim.variant, sim.preds, sim.labels, sim.values, sim.latency, sim.fails)
