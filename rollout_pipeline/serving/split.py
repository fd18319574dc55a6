"""Sticky, monotone traffic split.

A request with an ``entity_id`` falls into one of ``BUCKETS`` buckets by a stable
hash of (model, entity_id) — the same in every process and on every machine,
unlike Python's ``hash()``. The serving variants own consecutive bucket ranges:
the candidate(s) from bucket 0 up to their share, the stable variant the rest.
Raising the candidate's share therefore only moves stable entities to the
candidate, never the other way round (20% -> 50% keeps every entity that had
the candidate), and lowering it only moves candidate entities back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rollout_pipeline.domain.routing import RoutingConfig

BUCKETS = 10_000
_SEPARATOR = "\x1f"  # unit separator: cannot be confused with a character of a model name


def bucket_of(model_name: str, entity_id: str) -> int:
    """The entity's bucket in 0..BUCKETS-1 for this model (blake2b of model and entity, stable everywhere)."""
    digest = hashlib.blake2b(f"{model_name}{_SEPARATOR}{entity_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


class UnusableRouting(ValueError):
    """A routing config the router cannot serve with (no traffic, or a variant it has no model for)."""


@dataclass(frozen=True)
class RoutePlan:
    """A routing config compiled for the request path: bucket ranges and the shadow variants."""

    config: RoutingConfig
    limits: tuple[int, ...]  # exclusive upper bucket of each serving variant, increasing, last == BUCKETS
    serving: tuple[tuple[str, Callable[[Any], Any]], ...]
    shadows: tuple[tuple[str, Callable[[Any], Any]], ...]

    def pick(self, bucket: int) -> tuple[str, Callable[[Any], Any]]:
        """The (variant, model) that serves ``bucket``."""
        for limit, entry in zip(self.limits, self.serving):
            if bucket < limit:
                return entry
        return self.serving[-1]

    def variant_for(self, bucket: int) -> str:
        """The name of the variant that serves ``bucket``."""
        return self.pick(bucket)[0]


def serving_order(config: RoutingConfig) -> list[tuple[str, float]]:
    """(variant, percent) of the variants with traffic, in bucket order: non-stable first (by name), stable last."""
    with_traffic = [r for r in config.routes if r.traffic_percent > 0]
    with_traffic.sort(key=lambda r: (r.role == "stable", r.variant))
    return [(r.variant, r.traffic_percent) for r in with_traffic]


def compile_plan(config: RoutingConfig, models: Mapping[str, Callable[[Any], Any]]) -> RoutePlan:
    """Compile ``config`` against the available models; raise UnusableRouting if it cannot be served."""
    order = serving_order(config)
    if not order:
        raise UnusableRouting(f"{config.model_name} v{config.version}: no variant gets any traffic")
    shadow_names = sorted(r.variant for r in config.routes if r.shadow and r.role != "retired")
    missing = sorted(({name for name, _ in order} | set(shadow_names)) - set(models))
    if missing:
        raise UnusableRouting(
            f"{config.model_name} v{config.version}: no model loaded for variant(s) {', '.join(missing)} "
            f"(loaded: {', '.join(sorted(models)) or 'none'})"
        )
    limits, cumulative = [], 0
    for _variant, percent in order:
        cumulative += round(percent * BUCKETS / 100)
        limits.append(min(cumulative, BUCKETS))
    limits[-1] = BUCKETS  # the last variant (the stable one, when there is one) takes any rounding remainder
    return RoutePlan(
        config=config,
        limits=tuple(limits),
        serving=tuple((name, models[name]) for name, _ in order),
        shadows=tuple((name, models[name]) for name in shadow_names),
    )
