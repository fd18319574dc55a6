"""Real models trained on data sets that ship inside scikit-learn (nothing is downloaded).

Each catalog entry trains a stable model and a better candidate (or, for a
first rollout, a baseline as the stable) in well under a second, and offers:

* ``serving``: variant -> callable on one request's features (for the Router
  and ``rollout-pipeline serve``);
* ``batch_outputs(role)``: the outputs for every data-set row at once (numpy,
  one ``predict`` call), which the simulator precomputes so that a day of
  20,000 requests costs lookups instead of 20,000 single-row predictions.

| kind | task | stable | candidate |
|---|---|---|---|
| diabetes | regression (disease progression) | linear on BMI alone (v1) | ridge on all 10 features (v2) |
| diabetes-first | regression, first model | constant: training mean (baseline) | ridge on all features (v1) |
| cancer | binary classification (probability + class) | logistic on 2 features (v1) | scaled logistic on all 30 (v2) |
| wine | 3-class labels | decision stump (v1) | scaled logistic (v2) |
| recs | recommendations (item lists), first model | top-10 popular (baseline) | item co-occurrence (v1) |

The recommender's interactions are synthetic (sessions drawn from latent
taste groups with numpy): scikit-learn ships no interaction data.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rollout_pipeline.serving.baselines import ConstantModel, TopNPopular
from rollout_pipeline.serving.outputs import Output, encode_items


@dataclass
class ModelPair:
    """A stable model and its candidate, trained, with their outputs on every data-set row."""

    kind: str
    task: str  # regression | binary | multiclass | recommendation
    stable_variant: str
    candidate_variant: str
    rows: int  # data-set rows: the feature rows a population draws from
    features: Any  # rows x features array (or per-row histories for recs)
    targets: np.ndarray  # regression target, or class index, per row
    class_names: tuple[str, ...] = ()
    # role -> (prediction per row or None, label per row or None)
    outputs: dict[str, tuple[np.ndarray | None, np.ndarray | None]] = field(default_factory=dict)
    serving: dict[str, Callable[[Any], Any]] = field(default_factory=dict)
    items: tuple[str, ...] = ()  # recommendation catalog
    truth_labels: np.ndarray | None = None  # per row: the actual outcome label (class name, or JSON item list)

    def variant_role(self, variant: str, role: str) -> str:
        """Which trained model ('stable' or 'candidate') plays ``variant`` (by name; unknown names by role)."""
        if variant == self.stable_variant:
            return "stable"
        if variant == self.candidate_variant:
            return "candidate"
        return "candidate" if role == "candidate" else "stable"

    def actual(self, row: int) -> tuple[float | None, str | None]:
        """The true outcome for a data-set row, as (value, label) of an ``actual`` feedback row."""
        if self.task == "regression":
            return float(self.targets[row]), None
        return None, str(self.truth_labels[row])


def _as_2d(features: Any) -> np.ndarray:
    return np.asarray(features, dtype=float).reshape(1, -1)


def _regression(kind: str, first: bool) -> ModelPair:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression, Ridge

    X, y = load_diabetes(return_X_y=True)
    train = np.arange(len(y)) % 3 != 0  # deterministic 2/3 train split
    candidate = Ridge(alpha=0.1).fit(X[train], y[train])
    if first:
        baseline = ConstantModel.mean_of(y[train])
        stable_pred = np.full(len(y), baseline.value, dtype=float)
        stable_call: Callable[[Any], Any] = baseline
        names = ("baseline", "v1")
    else:
        stable = LinearRegression().fit(X[train][:, [2]], y[train])
        stable_pred = stable.predict(X[:, [2]])

        def stable_call(features: Any) -> float:
            return float(stable.predict(_as_2d(features)[:, [2]])[0])

        names = ("v1", "v2")
    cand_pred = candidate.predict(X)

    def candidate_call(features: Any) -> float:
        return float(candidate.predict(_as_2d(features))[0])

    return ModelPair(
        kind=kind, task="regression", stable_variant=names[0], candidate_variant=names[1], rows=len(y),
        features=X, targets=y.astype(float),
        outputs={"stable": (stable_pred.astype(float), None), "candidate": (cand_pred.astype(float), None)},
        serving={names[0]: stable_call, names[1]: candidate_call},
    )


def _classifier_call(model, columns, class_names: tuple[str, ...], binary: bool) -> Callable[[Any], Output]:
    def call(features: Any) -> Output:
        x = _as_2d(features)
        if columns is not None:
            x = x[:, columns]
        proba = model.predict_proba(x)[0]
        if binary:
            return Output(prediction=float(proba[0]), label=class_names[int(proba[0] < 0.5)])
        k = int(np.argmax(proba))
        return Output(prediction=float(proba[k]), label=class_names[k])

    return call


def _cancer() -> ModelPair:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    X, y = data.data, data.target
    names = tuple(str(n) for n in data.target_names)  # ('malignant', 'benign')
    train = np.arange(len(y)) % 3 != 0
    cols = [0, 1]  # mean radius, mean texture: a weak but honest model
    stable = make_pipeline(StandardScaler(), LogisticRegression()).fit(X[train][:, cols], y[train])
    candidate = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X[train], y[train])
    out = {}
    for role, model, x in (("stable", stable, X[:, cols]), ("candidate", candidate, X)):
        p_malignant = model.predict_proba(x)[:, 0]
        out[role] = (p_malignant, np.where(p_malignant >= 0.5, names[0], names[1]).astype(object))
    return ModelPair(
        kind="cancer", task="binary", stable_variant="v1", candidate_variant="v2", rows=len(y), features=X,
        targets=y.astype(float), class_names=names, outputs=out,
        serving={"v1": _classifier_call(stable, cols, names, True), "v2": _classifier_call(candidate, None, names, True)},
        truth_labels=np.array([names[k] for k in y], dtype=object),
    )


def _wine() -> ModelPair:
    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    data = load_wine()
    X, y = data.data, data.target
    names = tuple(str(n) for n in data.target_names)
    train = np.arange(len(y)) % 3 != 0
    stable = DecisionTreeClassifier(max_depth=1, random_state=0).fit(X[train], y[train])
    candidate = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X[train], y[train])
    out = {}
    for role, model in (("stable", stable), ("candidate", candidate)):
        proba = model.predict_proba(X)
        k = proba.argmax(axis=1)
        out[role] = (proba.max(axis=1), np.array([names[i] for i in k], dtype=object))
    return ModelPair(
        kind="wine", task="multiclass", stable_variant="v1", candidate_variant="v2", rows=len(y), features=X,
        targets=y.astype(float), class_names=names, outputs=out,
        serving={"v1": _classifier_call(stable, None, names, False), "v2": _classifier_call(candidate, None, names, False)},
        truth_labels=np.array([names[k] for k in y], dtype=object),
    )


class CoOccurrenceRecommender:
    """Recommends the items most often consumed together with the user's recent items (cosine-normalized).

    Seen items stay eligible: in this synthetic world users consume favourites
    again. Popularity breaks ties, so a user with no history gets the popular items.
    """

    def __init__(self, n: int, items: tuple[str, ...], cooc: np.ndarray, popularity: np.ndarray):
        self.n, self.items, self._pop = n, items, popularity
        norm = np.sqrt(popularity + 1.0)
        self._sim = cooc / np.outer(norm, norm)
        self._index = {item: i for i, item in enumerate(items)}

    def scores(self, histories: np.ndarray) -> np.ndarray:
        """Scores for a batch of histories (rows x items, 0/1)."""
        return histories @ self._sim + 1e-6 * self._pop

    def top(self, histories: np.ndarray) -> list[list[str]]:
        """Top-n item lists for a batch of histories."""
        scores = self.scores(histories)
        part = np.argpartition(-scores, self.n, axis=1)[:, : self.n]
        order = np.take_along_axis(part, np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1), axis=1)
        return [[self.items[i] for i in row] for row in order]

    def __call__(self, features: Any) -> list[str]:
        """``features``: the user's recent item ids."""
        history = np.zeros((1, len(self.items)))
        for item in features or ():
            i = self._index.get(str(item))
            if i is not None:
                history[0, i] = 1.0
        return self.top(history)[0]


def _recs(n_items: int = 200, n_groups: int = 8, n_users: int = 3_000, top_n: int = 10) -> ModelPair:
    rng = np.random.default_rng(20260314)
    items = tuple(f"item-{i:03d}" for i in range(n_items))
    # Each taste group prefers its own slice of the catalog, on top of global popularity.
    global_pop = 1.0 / np.arange(1, n_items + 1) ** 0.7
    group_pref = np.ones((n_groups, n_items))
    for g in range(n_groups):
        group_pref[g, rng.choice(n_items, size=n_items // n_groups, replace=False)] = 12.0
    groups = rng.integers(0, n_groups, size=n_users)
    probs = group_pref[groups] * global_pop
    probs /= probs.sum(axis=1, keepdims=True)
    # Each user: 6 past items (the features) and 3 next items (the truth).
    cum = probs.cumsum(axis=1)
    draws = (rng.random((n_users, 9, 1)) < cum[:, None, :]).argmax(axis=2)
    past, future = draws[:, :6], draws[:, 6:]
    histories = np.zeros((n_users, n_items))
    np.put_along_axis(histories, past, 1.0, axis=1)
    train = np.arange(n_users) % 3 != 0
    popularity = np.bincount(past[train].ravel(), minlength=n_items).astype(float)
    cooc = histories[train].T @ histories[train]
    np.fill_diagonal(cooc, 0.0)
    baseline = TopNPopular(top_n).fit(items[i] for i in past[train].ravel())
    candidate = CoOccurrenceRecommender(top_n, items, cooc, popularity)
    stable_labels = np.array([encode_items(baseline.items)] * n_users, dtype=object)
    cand_labels = np.array([encode_items(r) for r in candidate.top(histories)], dtype=object)
    truth = np.array([encode_items([items[i] for i in row]) for row in future], dtype=object)
    user_histories = [[items[i] for i in row] for row in past]
    return ModelPair(
        kind="recs", task="recommendation", stable_variant="baseline", candidate_variant="v1", rows=n_users,
        features=user_histories, targets=groups.astype(float),
        outputs={"stable": (None, stable_labels), "candidate": (None, cand_labels)},
        serving={"baseline": baseline, "v1": candidate}, items=items, truth_labels=truth,
    )


_BUILDERS: dict[str, Callable[[], ModelPair]] = {
    "diabetes": lambda: _regression("diabetes", first=False),
    "diabetes-first": lambda: _regression("diabetes-first", first=True),
    "cancer": _cancer,
    "wine": _wine,
    "recs": _recs,
}
KINDS = tuple(_BUILDERS)


class UnknownKind(LookupError):
    """No catalog entry of that name."""


@functools.cache
def load_pair(kind: str) -> ModelPair:
    """Train (once per process) the catalog entry ``kind``."""
    try:
        builder = _BUILDERS[kind]
    except KeyError:
        raise UnknownKind(f"unknown simulated model {kind!r}: one of {', '.join(KINDS)}") from None
    return builder()


def demo_registry() -> Mapping[str, Mapping[str, Callable[[Any], Any]]]:
    """Model name -> variant -> callable for every catalog entry (``rollout-pipeline serve``'s default)."""
    return {kind: load_pair(kind).serving for kind in KINDS}
