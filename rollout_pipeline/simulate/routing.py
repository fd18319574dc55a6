"""The routing a simulated day follows: its stage in words, and a shadow-stage routing for tests and demos."""

from __future__ import annotations

import sqlalchemy as sa

from rollout_pipeline.domain.routing import RoutingConfig, VariantRoute, validate_name
from rollout_pipeline.simulate.models import load_pair
from rollout_pipeline.store.routing import read_routing, write_routing


def stage_of(config: RoutingConfig) -> str:
    """shadow | canary-N% | production | no-candidate-traffic."""
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
