"""Rollouts and their decisions: starting a rollout, recording a decision, and applying it to the routing.

The records and the reads of the audit trail are ``store.rollout_records``; this module re-exports them
(``__all__``), so a caller imports one module (``from rollout_pipeline.store import rollouts as repo``).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from rollout_pipeline.domain.decide import Decision, RolloutState
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.domain.routing import VariantRoute, validate_name
from rollout_pipeline.store.rollout_records import (ConcurrentDecision, DecisionRecord, Rollout, RolloutError,
                                                    StoredPolicyError, active_models, active_rollout,
                                                    decision_from_row, decision_history, decisions_after, decisions_on,
                                                    get_decision, get_rollout, latest_decided_day, latest_rollout,
                                                    latest_rollout_ids, live_decision, open_approval,
                                                    pending_decisions, rollout_for_day, rollout_from_row)
from rollout_pipeline.store.routing import read_routing, write_routing
from rollout_pipeline.store.tables import decisions, insert_superseding, rollouts

__all__ = [
    "ConcurrentDecision", "DECISION_LOCK_SPACE", "DecisionRecord", "Rollout", "RolloutError", "RolloutState",
    "StoredPolicyError", "active_models", "active_rollout", "apply_decision", "decision_from_row",
    "decision_history", "decisions_after", "decisions_on", "get_decision", "get_rollout", "latest_decided_day",
    "latest_rollout", "latest_rollout_ids", "live_decision", "old_stable_route", "old_variant_deployable",
    "open_approval", "pending_decisions", "record_decision", "rollout_for_day", "rollout_from_row", "routes_for",
    "start_rollout", "state_before", "step_days", "watched_models",
]


def routes_for(rollout: Rollout, state: RolloutState, day: dt.date | None) -> tuple[VariantRoute, ...]:
    """The routing that puts ``rollout`` in ``state``."""
    stable, cand = rollout.stable_variant, rollout.candidate_variant
    if state.stage == "shadow":
        return (VariantRoute(stable, "stable", 100.0), VariantRoute(cand, "candidate", 0.0, shadow=True))
    if state.stage == "canary":
        # The stable model shadows the candidate's own requests, and the candidate the stable's (the Router
        # mirrors a request only to the shadow variants that did not serve it): the per-request pairing of
        # shadow goes on in canary, on the full volume.
        p = float(state.canary_percent)
        policy = rollout.policy
        return (VariantRoute(stable, "stable", 100.0 - p, shadow=policy.shadow_stable_during_canary),
                VariantRoute(cand, "candidate", p, shadow=policy.shadow_candidate_during_canary))
    if state.stage == "production":
        # The candidate is the stable model now; the old one stays deployable for the retention window.
        shadow = rollout.policy.shadow_old_model_during_retention
        return (VariantRoute(cand, "stable", 100.0), VariantRoute(stable, "inactive", 0.0, shadow=shadow, inactive_since=day))
    if state.stage == "rolled_back":
        return (VariantRoute(stable, "stable", 100.0), VariantRoute(cand, "inactive", 0.0, inactive_since=day))
    raise RolloutError(f"unknown stage {state.stage!r}")


def _with_others(current, routes: tuple[VariantRoute, ...]) -> tuple[VariantRoute, ...]:
    """``routes`` plus the variants of other rollouts the routing still knows, kept without traffic."""
    if current is None:
        return routes
    ours = {r.variant for r in routes}
    return routes + tuple(
        r if r.role == "retired" else VariantRoute(r.variant, "inactive", 0.0, r.shadow and r.role == "inactive",
                                                    r.inactive_since)
        for r in current.routes
        if r.variant not in ours
    )


def _keep_inactive_since(current, routes: tuple[VariantRoute, ...]) -> tuple[VariantRoute, ...]:
    """A variant that was inactive already keeps the day it went inactive: the retention clock never restarts."""
    if current is None:
        return routes
    was = {r.variant: r.inactive_since for r in current.routes if r.role == "inactive" and r.inactive_since}
    return tuple(
        VariantRoute(r.variant, r.role, r.traffic_percent, r.shadow, was[r.variant])
        if r.role == "inactive" and r.variant in was else r
        for r in routes
    )


def start_rollout(connection: sa.Connection, model: str, stable: str, candidate: str, policy: Policy,
                  actor: str = "cli", now: dt.datetime | None = None) -> Rollout:
    """Register a rollout in stage shadow and route: stable 100%, candidate shadows."""
    validate_name("model", model)
    validate_name("variant", stable)
    validate_name("variant", candidate)
    if stable == candidate:
        raise RolloutError("the stable and the candidate variant must differ")
    existing = active_rollout(connection, model)
    if existing is not None:
        raise RolloutError(
            f"{model} already has an active rollout ({existing.stable_variant} -> {existing.candidate_variant}, "
            f"stage {existing.stage}); finish or roll it back first"
        )
    now = now or dt.datetime.now(dt.UTC)
    rollout_id = connection.execute(
        rollouts.insert().values(model_name=model, stable_variant=stable, candidate_variant=candidate, stage="shadow",
                                 canary_percent=0, active=True, policy=policy.model_dump(mode="json"),
                                 policy_version=policy.version, created_at=now, updated_at=now)
        .returning(rollouts.c.id)
    ).scalar_one()
    rollout = active_rollout(connection, model)
    current = read_routing(connection, model)
    routes = _with_others(current, routes_for(rollout, RolloutState("shadow", 0), None))
    write_routing(connection, model, routes, expected_version=current.version if current else None, actor=actor,
                  reason=f"rollout {rollout_id} started: {candidate} shadows {stable}", now=now)
    return rollout


def state_before(connection: sa.Connection, rollout: Rollout, day: dt.date) -> RolloutState:
    """The rollout's state before ``day``'s decision: a re-run starts where the first run started."""
    existing = live_decision(connection, rollout.model_name, day)
    earlier = [d for d in decision_history(connection, rollout.model_name) if d.rollout_id == rollout.id and d.day < day]
    if existing is not None and existing.rollout_id == rollout.id:
        stage, percent = existing.stage_before, existing.percent_before
    elif earlier:
        # The previous day's decision, applied or not yet (the routing sensor may lag behind); see _state_after.
        stage, percent = _state_after(connection, earlier[-1])
    else:
        stage, percent = rollout.stage, rollout.canary_percent
    holds = 0
    for d in reversed(earlier):
        if (d.stage_before, d.percent_before, d.stage_after, d.percent_after) != (stage, percent, stage, percent):
            break
        holds += 1
    return RolloutState(stage, percent, holds)


def step_days(connection: sa.Connection, rollout: Rollout, day: dt.date) -> list[dt.date]:
    """The earlier days of the step ``day`` is decided in (oldest first): the holds at the same stage and share
    that ``state_before`` counts, whose evidence the step pools."""
    state = state_before(connection, rollout, day)
    earlier = [d for d in decision_history(connection, rollout.model_name) if d.rollout_id == rollout.id and d.day < day]
    return [d.day for d in earlier[len(earlier) - state.days_in_step:]] if state.days_in_step else []


def _state_after(connection: sa.Connection, record: DecisionRecord) -> tuple[str, int]:
    """Where ``record`` leaves the rollout: a promotion waiting for approval has not moved it yet, and a hold
    that waited for one leaves it where that promotion took it once approved."""
    if record.approval == "pending":
        return record.stage_before, record.percent_before
    waited = record.metrics.get("waiting_for")
    if waited:
        awaited = live_decision(connection, record.model_name, dt.date.fromisoformat(waited))
        if awaited is not None and awaited.approval == "approved":
            return awaited.stage_after, awaited.percent_after
    return record.stage_after, record.percent_after


_UNCHECKED = object()


DECISION_LOCK_SPACE = 7_261_002  # first key of the (space, hashtext(model)) advisory lock; partitions use 7_261_001


def record_decision(connection: sa.Connection, rollout: Rollout, day: dt.date, decision: Decision, *, actor: str,
                    metrics: dict, run_id: str | None, now: dt.datetime | None = None,
                    expected_previous: int | None | object = _UNCHECKED,
                    approval: str | None = None) -> DecisionRecord:
    """Store ``decision`` for ``day``, superseding the day's earlier decision if there is one.

    On PostgreSQL a transaction-scoped advisory lock on the model serializes the
    recorders of one model: it is held until the caller's transaction ends (so
    through an ``apply_decision`` in the same transaction). ``expected_previous``
    is the id of the day's live decision the caller saw before it computed
    ``decision`` (None: there was none). If another run recorded a decision for
    the model and day since, or moved the rollout, ``ConcurrentDecision`` is raised
    saying so, and nothing is written: two runs at once never both decide.
    Without ``expected_previous`` the decision supersedes whatever is live.
    """
    now = now or dt.datetime.now(dt.UTC)
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:space, hashtext(:model))"),
                           {"space": DECISION_LOCK_SPACE, "model": rollout.model_name})
    previous = live_decision(connection, rollout.model_name, day)
    if expected_previous is not _UNCHECKED:
        seen = expected_previous
        if (previous.id if previous else None) != seen:
            if previous is None:
                what = f"decision #{seen} of {rollout.model_name} {day} is no longer live"
            else:
                what = (f"{rollout.model_name} {day} was decided by another run while this one was deciding "
                        f"(decision #{previous.id}: {previous.action} by {previous.actor}, run {previous.run_id})")
            raise ConcurrentDecision(f"{what}; this decision is not recorded. Re-run the day to supersede it.")
        fresh = rollout_from_row(connection.execute(sa.select(rollouts).where(rollouts.c.id == rollout.id)).one())
        now_state = state_before(connection, fresh, day)
        if (now_state.stage, now_state.canary_percent) != (decision.before.stage, decision.before.canary_percent):
            raise ConcurrentDecision(
                f"{rollout.model_name} moved from {decision.before.stage} {decision.before.canary_percent}% to "
                f"{now_state.stage} {now_state.canary_percent}% while {day} was being decided; this decision is "
                "not recorded. Re-run the day to decide from the new state.")
    new_id = insert_superseding(connection, decisions, previous.id if previous else None, dict(
        rollout_id=rollout.id, model_name=rollout.model_name, day=day, action=decision.action,
        forced=decision.forced, actor=actor, reasons=list(decision.reasons),
        stage_before=decision.before.stage, percent_before=decision.before.canary_percent,
        stage_after=decision.stage_after, percent_after=decision.percent_after, metrics=metrics,
        policy_version=rollout.policy_version, run_id=run_id, created_at=now, approval=approval,
    ))
    return get_decision(connection, new_id)


def apply_decision(connection: sa.Connection, decision_id: int, *, actor: str,
                   now: dt.datetime | None = None) -> bool:
    """Apply a stored decision to the rollout and its routing, once; False if it was applied already.

    Locks the decision row (PostgreSQL), so two appliers cannot both apply it.
    """
    now = now or dt.datetime.now(dt.UTC)
    query = sa.select(decisions).where(decisions.c.id == decision_id)
    if connection.dialect.name == "postgresql":
        query = query.with_for_update()
    row = connection.execute(query).first()
    if row is None:
        raise RolloutError(f"no decision {decision_id}")
    record = decision_from_row(row)
    if record.applied_at is not None:
        return False
    if row.superseded_by is not None:
        raise RolloutError(f"decision {decision_id} was superseded by decision {row.superseded_by}; apply that one")
    if record.approval == "pending":
        raise RolloutError(f"decision {decision_id} waits for approval: `rollout-pipeline approve --model "
                           f"{record.model_name} --date {record.day} --reason ...` applies it")
    rollout_row = connection.execute(sa.select(rollouts).where(rollouts.c.id == record.rollout_id)).first()
    rollout = rollout_from_row(rollout_row)
    later = connection.execute(
        sa.select(sa.func.count()).select_from(decisions).where(
            decisions.c.rollout_id == record.rollout_id, decisions.c.day > record.day,
            decisions.c.superseded_by.is_(None), decisions.c.applied_at.is_not(None))
    ).scalar_one()
    if later and not record.forced and record.approval != "approved":
        # A later day is applied already: this older decision is history now, it must not step the rollout back.
        connection.execute(decisions.update().where(decisions.c.id == decision_id).values(applied_at=now))
        return False
    if record.action == "rollback" and record.stage_before == "production" and not old_variant_deployable(connection,
                                                                                                          rollout):
        raise RolloutError(f"cannot apply decision {decision_id}: {rollout.stable_variant} was torn down, "
                           "there is nothing to roll back to")
    after = RolloutState(record.stage_after, record.percent_after)
    active = after.stage not in ("production", "rolled_back")
    connection.execute(rollouts.update().where(rollouts.c.id == rollout.id).values(
        stage=after.stage, canary_percent=after.canary_percent, active=active, updated_at=now))
    current = read_routing(connection, rollout.model_name)
    routes = _keep_inactive_since(current, _with_others(current, routes_for(rollout, after, record.day)))
    if current is None or set(current.routes) != set(routes):
        write_routing(connection, rollout.model_name, routes,
                      expected_version=current.version if current else None, actor=actor,
                      reason=f"{record.action} on {record.day}: " + "; ".join(record.reasons)[:500],
                      decision_id=record.id, now=now)
    connection.execute(decisions.update().where(decisions.c.id == decision_id).values(applied_at=now))
    return True


def old_stable_route(connection: sa.Connection, rollout: Rollout) -> VariantRoute | None:
    """Where the rollout's old stable variant stands in the model's routing now (None: not in it)."""
    routing = read_routing(connection, rollout.model_name)
    return routing.route(rollout.stable_variant) if routing else None


def old_variant_deployable(connection: sa.Connection, rollout: Rollout) -> bool:
    """True while the rollout's old stable variant is still in the routing and not torn down."""
    route = old_stable_route(connection, rollout)
    return route is not None and route.role in ("stable", "candidate", "inactive")


def watched_models(connection: sa.Connection) -> list[str]:
    """Models in production whose old variant still shadows the new one (the retention window's watch)."""
    query = sa.select(rollouts).where(rollouts.c.id.in_(latest_rollout_ids()), rollouts.c.stage == "production")
    out = []
    for rollout in map(rollout_from_row, connection.execute(query)):
        route = old_stable_route(connection, rollout)
        if route is not None and route.role == "inactive" and route.shadow:
            out.append(rollout.model_name)
    return sorted(out)

