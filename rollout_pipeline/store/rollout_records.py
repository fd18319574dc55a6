"""Rollouts and their decisions as stored, and the queries that read them (the audit trail).

The records (:class:`Rollout`, :class:`DecisionRecord`), the errors a rollout operation raises, and every read
of the ``rollouts`` and ``decisions`` tables. Writing them (starting a rollout, recording and applying a
decision) is ``store.rollouts``, which re-exports these names: callers keep ``rollouts as repo``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from rollout_pipeline.domain.decide import RolloutState
from rollout_pipeline.domain.policy import Policy, PolicyError, parse_policy
from rollout_pipeline.store.tables import decisions, rollouts


class RolloutError(RuntimeError):
    """A rollout operation that cannot be done; the message says why."""


class StoredPolicyError(RolloutError):
    """A rollout's stored policy is out of the documented ranges (written by an older version, or directly)."""


class ConcurrentDecision(RolloutError):
    """Another run decided the same model while this decision was being made: this one is not recorded."""


@dataclass(frozen=True)
class Rollout:
    """A rollout as stored."""

    id: int
    model_name: str
    stable_variant: str
    candidate_variant: str
    stage: str
    canary_percent: int
    active: bool
    policy: Policy
    policy_version: str

    @property
    def state(self) -> RolloutState:
        return RolloutState(self.stage, self.canary_percent)


@dataclass(frozen=True)
class DecisionRecord:
    """A stored decision."""

    id: int
    rollout_id: int
    model_name: str
    day: dt.date
    action: str
    forced: bool
    actor: str
    reasons: list[str]
    stage_before: str
    percent_before: int
    stage_after: str
    percent_after: int
    metrics: dict
    policy_version: str
    run_id: str | None
    applied_at: dt.datetime | None
    created_at: dt.datetime
    approval: str | None = None  # None: no approval needed; pending | approved | rejected | expired


def rollout_from_row(row) -> Rollout:
    try:
        policy = parse_policy(row.policy, f"stored with rollout {row.id} of {row.model_name}")
    except PolicyError as exc:  # checked on load as at `rollout start`: a refusal naming the field, not a crash later
        raise StoredPolicyError(f"{exc}; start a new rollout with a valid policy") from None
    return Rollout(row.id, row.model_name, row.stable_variant, row.candidate_variant, row.stage,
                   row.canary_percent, bool(row.active), policy, row.policy_version)


def decision_from_row(row) -> DecisionRecord:
    return DecisionRecord(row.id, row.rollout_id, row.model_name, row.day, row.action, bool(row.forced), row.actor,
                          list(row.reasons), row.stage_before, row.percent_before, row.stage_after, row.percent_after,
                          dict(row.metrics), row.policy_version, row.run_id, row.applied_at, row.created_at,
                          row.approval)


def active_rollout(connection: sa.Connection, model: str) -> Rollout | None:
    """The model's active rollout, if any."""
    row = connection.execute(sa.select(rollouts).where(rollouts.c.model_name == model, rollouts.c.active)).first()
    return rollout_from_row(row) if row else None


def latest_rollout(connection: sa.Connection, model: str) -> Rollout | None:
    """The model's most recent rollout, active or not."""
    row = connection.execute(
        sa.select(rollouts).where(rollouts.c.model_name == model).order_by(rollouts.c.id.desc()).limit(1)
    ).first()
    return rollout_from_row(row) if row else None


def get_rollout(connection: sa.Connection, rollout_id: int) -> Rollout | None:
    """The rollout with this id."""
    row = connection.execute(sa.select(rollouts).where(rollouts.c.id == rollout_id)).first()
    return rollout_from_row(row) if row else None


def active_models(connection: sa.Connection) -> list[str]:
    """Models with an active rollout, by name."""
    return list(connection.execute(
        sa.select(rollouts.c.model_name).where(rollouts.c.active).order_by(rollouts.c.model_name)).scalars())


def rollout_for_day(connection: sa.Connection, model: str, day: dt.date) -> Rollout:
    """The rollout ``model``'s ``day`` is decided under (its active one, else its latest); RolloutError if none."""
    rollout = active_rollout(connection, model) or latest_rollout(connection, model)
    if rollout is None:
        raise RolloutError(f"{model} has no rollout: start one with `rollout-pipeline rollout start --model {model} ...`")
    decided = live_decision(connection, model, day)
    if decided is not None and decided.rollout_id != rollout.id:
        raise RolloutError(f"{model} {day} was decided under rollout {decided.rollout_id}, not the current one")
    return rollout


def latest_rollout_ids() -> sa.Select:
    """The id of each model's latest rollout."""
    return sa.select(sa.func.max(rollouts.c.id)).group_by(rollouts.c.model_name)


def live_decision(connection: sa.Connection, model: str, day: dt.date) -> DecisionRecord | None:
    """The decision in force for ``model`` and ``day`` (not superseded)."""
    row = connection.execute(
        sa.select(decisions).where(decisions.c.model_name == model, decisions.c.day == day,
                                   decisions.c.superseded_by.is_(None))
    ).first()
    return decision_from_row(row) if row else None


def get_decision(connection: sa.Connection, decision_id: int) -> DecisionRecord | None:
    row = connection.execute(sa.select(decisions).where(decisions.c.id == decision_id)).first()
    return decision_from_row(row) if row else None


def decision_history(connection: sa.Connection, model: str, include_superseded: bool = False) -> list[DecisionRecord]:
    """The model's decisions, oldest first."""
    query = sa.select(decisions).where(decisions.c.model_name == model)
    if not include_superseded:
        query = query.where(decisions.c.superseded_by.is_(None))
    return [decision_from_row(r) for r in connection.execute(query.order_by(decisions.c.day, decisions.c.id))]


def latest_decided_day(connection: sa.Connection, rollout_id: int) -> dt.date | None:
    return connection.execute(
        sa.select(sa.func.max(decisions.c.day)).where(decisions.c.rollout_id == rollout_id,
                                                      decisions.c.superseded_by.is_(None))
    ).scalar_one_or_none()


def open_approval(connection: sa.Connection, rollout_id: int) -> DecisionRecord | None:
    """The rollout's promotion waiting for a person's approval (the latest, if several), or None."""
    row = connection.execute(
        sa.select(decisions).where(decisions.c.rollout_id == rollout_id, decisions.c.superseded_by.is_(None),
                                   decisions.c.approval == "pending")
        .order_by(decisions.c.day.desc(), decisions.c.id.desc()).limit(1)).first()
    return decision_from_row(row) if row else None


def decisions_after(connection: sa.Connection, rollout_id: int, day: dt.date) -> list[DecisionRecord]:
    """The rollout's live decisions of days after ``day``, oldest first."""
    query = sa.select(decisions).where(decisions.c.rollout_id == rollout_id, decisions.c.day > day,
                                       decisions.c.superseded_by.is_(None))
    return [decision_from_row(r) for r in connection.execute(query.order_by(decisions.c.day, decisions.c.id))]


def pending_decisions(connection: sa.Connection) -> list[DecisionRecord]:
    """Live decisions never applied to the routing, of each model's latest rollout, oldest first.

    A promotion waiting for approval is not among them: only ``approve`` applies it."""
    query = (sa.select(decisions)
             .where(decisions.c.rollout_id.in_(latest_rollout_ids()), decisions.c.superseded_by.is_(None),
                    decisions.c.applied_at.is_(None),
                    sa.or_(decisions.c.approval.is_(None), decisions.c.approval != "pending"))
             .order_by(decisions.c.day, decisions.c.id))
    return [decision_from_row(r) for r in connection.execute(query)]


def decisions_on(connection: sa.Connection, day: dt.date) -> list[DecisionRecord]:
    """Every live (not superseded) decision of ``day``, across models, by model name (the morning digest)."""
    query = (sa.select(decisions).where(decisions.c.day == day, decisions.c.superseded_by.is_(None))
             .order_by(decisions.c.model_name, decisions.c.id))
    return [decision_from_row(row) for row in connection.execute(query)]

