"""Manual rollback: whether there is something to roll back to (the decision itself is the service's).

From shadow or canary the candidate goes to 0%; from production the old stable
variant, kept inactive during the retention window, serves 100% again. The
decision goes through the one decision service (``decisions.manual_rollback``).
"""

from __future__ import annotations

import sqlalchemy as sa

from rollout_pipeline.domain.routing import validate_name
from rollout_pipeline.store.rollouts import Rollout, RolloutError, latest_rollout, old_stable_route
from rollout_pipeline.store.teardown import last_teardown


def rollback_target(connection: sa.Connection, model: str) -> Rollout:
    """``model``'s latest rollout, when it can be rolled back now; else RolloutError saying why not."""
    validate_name("model", model)
    rollout = latest_rollout(connection, model)
    if rollout is None:
        raise RolloutError(f"{model} has no rollout to roll back")
    old = rollout.stable_variant
    if rollout.stage == "rolled_back":
        raise RolloutError(f"{model} is already rolled back: {old} serves 100%")
    if rollout.stage == "production":
        route = old_stable_route(connection, rollout)
        if route is None or route.role == "retired":
            torn = last_teardown(connection, model, old)
            when = f" on {torn.day} (inactive since {torn.inactive_since})" if torn else ""
            raise RolloutError(
                f"cannot roll back {model}: the previous stable variant {old} was torn down{when} after the "
                f"{rollout.policy.retention_days}-day retention window. Deploy {old} again and start a new rollout: "
                f"rollout-pipeline rollout start --model {model} --stable {rollout.candidate_variant} --candidate {old}"
            )
        if route.role != "inactive":
            raise RolloutError(f"cannot roll back {model}: {old} is {route.role}, not inactive")
    return rollout
