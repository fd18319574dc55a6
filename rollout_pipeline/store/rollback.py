"""Manual rollback: the previous stable variant back to 100% at once, decided like any decision.

This module says when there is something to roll back to; the decision itself
goes through the one decision service (``rollout_pipeline.decisions``), which
stores it and applies it in the caller's transaction.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from rollout_pipeline.decisions import DecisionOutcome, DecisionRequest, decide_in
from rollout_pipeline.domain.routing import validate_name
from rollout_pipeline.store.rollouts import RolloutError, latest_rollout, old_stable_route
from rollout_pipeline.store.teardown import last_teardown


def rollback(connection: sa.Connection, model: str, reason: str, *, actor: str, day: dt.date) -> DecisionOutcome:
    """Roll ``model``'s latest rollout back and apply it in this transaction.

    From shadow or canary the candidate goes to 0%; from production the old
    stable variant, kept inactive during the retention window, serves 100% again.
    Raises RolloutError saying why when there is nothing to roll back to.
    """
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
    outcome = decide_in(connection, DecisionRequest(model, day, actor, force="rollback", reason=reason,
                                                     source="manual_rollback"))
    if not outcome.applied:
        raise RolloutError(f"cannot roll back {model} now: {outcome.unapplied_reason or 'the routing did not change'}")
    return outcome
