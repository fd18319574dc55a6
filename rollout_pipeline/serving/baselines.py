"""Baselines that play the stable role for a model's first rollout.

A constant for a regressor or classifier, and the top-N most popular items for
recommendations: something real to compare the first model against.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import Any

import numpy as np

from rollout_pipeline.serving.outputs import Output, encode_items


class ConstantModel:
    """Answers every request with the same value: a number (e.g. the training mean) or a label (the majority class)."""

    def __init__(self, value: float | str):
        self.value = value
        self._output = Output(label=value, value=value) if isinstance(value, str) else Output(
            prediction=float(value), value=float(value))

    @classmethod
    def mean_of(cls, targets: Iterable[float]) -> ConstantModel:
        """The constant regressor: the mean of the training targets."""
        return cls(float(np.mean(np.asarray(list(targets), dtype=float))))

    @classmethod
    def majority_of(cls, labels: Iterable[Any]) -> ConstantModel:
        """The constant classifier: the most frequent training label (ties: the smallest)."""
        counts = collections.Counter(str(label) for label in labels)
        best = max(counts.values())
        return cls(min(label for label, count in counts.items() if count == best))

    def __call__(self, features: Any = None) -> Output:
        return self._output

    def predict_batch(self, n: int) -> list[Output]:
        """``n`` answers at once (the simulator precomputes answers)."""
        return [self._output] * n

    def __repr__(self) -> str:
        return f"ConstantModel({self.value!r})"


class TopNPopular:
    """Recommends the ``n`` most popular items seen in training, the same list for everyone.

    Ties in popularity are broken by item id so the list is deterministic.
    """

    def __init__(self, n: int = 10):
        if n < 1:
            raise ValueError("n must be at least 1")
        self.n = n
        self.items: list[str] = []
        self._output: Output | None = None

    def fit(self, interactions: Iterable[Any]) -> TopNPopular:
        """Learn from an iterable of consumed item ids (one per interaction)."""
        counts = collections.Counter(str(item) for item in interactions)
        self.items = [item for item, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: self.n]]
        self._output = Output(label=encode_items(self.items), value=list(self.items))
        return self

    def __call__(self, features: Any = None) -> Output:
        if self._output is None:
            raise RuntimeError("TopNPopular is not fitted: call fit() with training interactions first")
        return self._output

    def __repr__(self) -> str:
        return f"TopNPopular(n={self.n}, items={self.items[:3]}...)"
