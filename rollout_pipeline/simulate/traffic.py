"""A simulated day's requests: when they come, who sends them and which data-set row they ask about.

Traffic is clustered like real users: a heavy-tailed number of requests per entity
(the same population every day), entities that differ in how prone they are to
complain and how slow their requests are, and a share of anonymous requests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rollout_pipeline.simulate.models import ModelPair
from rollout_pipeline.simulate.scenarios import Knobs


@dataclass(frozen=True)
class Traffic:
    """The day's requests: when, which data-set row, which entity (None: anonymous), and its clusters' factors."""

    times: np.ndarray  # microseconds since midnight UTC, sorted
    rows: list[int]
    entity_ids: list[str | None]
    complaint_factor: list[float]
    latency_factor: np.ndarray
    correlation_ids: list[str]

    @property
    def hours(self) -> np.ndarray:
        return self.times / 3_600_000_000


def daily_curve(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` sorted request times in microseconds since midnight UTC: trough ~03:00, peak ~15:00."""
    minutes = np.arange(1440)
    weights = 1.0 + 0.75 * np.sin(2 * np.pi * (minutes / 60.0 - 9.0) / 24.0)
    minute = rng.choice(1440, size=n, p=weights / weights.sum())
    offsets = rng.integers(0, 60_000_000, size=n)
    return np.sort(minute.astype(np.int64) * 60_000_000 + offsets)


def draw_traffic(pair: ModelPair, settings: Knobs, model: str, population_rng: np.random.Generator,
                  rng: np.random.Generator, n: int, requests: int, correlation_ids) -> Traffic:
    """The day's ``n`` requests from a population that is the same every day (``population_rng``)."""
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

    times = daily_curve(rng, n)
    anonymous = rng.random(n) < settings.anonymous_fraction
    visitor = rng.choice(size, size=n, p=visit_weights)
    random_rows = rng.integers(0, pair.rows, size=n)
    return Traffic(
        times=times,
        rows=np.where(anonymous, random_rows, entity_rows[visitor]).tolist(),
        entity_ids=[None if a else f"{model}-e{v:06d}" for a, v in zip(anonymous.tolist(), visitor.tolist())],
        complaint_factor=np.where(anonymous, 1.0, propensity[visitor]).tolist(),
        latency_factor=np.where(anonymous, 1.0, slowness[visitor]),
        correlation_ids=correlation_ids,
    )
