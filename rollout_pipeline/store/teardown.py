"""Retention in the store: inactive variants, their teardown records, and retiring a variant's route."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.domain.retention import RetentionVerdict, retention_verdicts, retired_route
from rollout_pipeline.store.rollouts import latest_rollout
from rollout_pipeline.store.routing import read_routing, write_routing
from rollout_pipeline.store.tables import routing_config, teardowns


@dataclass(frozen=True)
class TeardownRecord:
    """One stored teardown attempt."""

    id: int
    model_name: str
    variant: str
    day: dt.date
    inactive_since: dt.date | None
    status: str
    attempts: int
    action: str
    detail: str
    actor: str
    run_id: str | None
    created_at: dt.datetime | None = None

    def as_dict(self) -> dict:
        return {"model": self.model_name, "variant": self.variant, "day": self.day.isoformat(),
                "inactive_since": self.inactive_since.isoformat() if self.inactive_since else None,
                "status": self.status, "attempts": self.attempts, "action": self.action, "detail": self.detail,
                "actor": self.actor, "run_id": self.run_id}


def _record(row) -> TeardownRecord:
    return TeardownRecord(row.id, row.model_name, row.variant, row.day, row.inactive_since, row.status, row.attempts,
                          row.action, row.detail, row.actor, row.run_id, row.created_at)


def models_with_inactive_variants(connection: sa.Connection) -> list[str]:
    return list(connection.execute(
        sa.select(routing_config.c.model_name).where(routing_config.c.role == "inactive").distinct()
        .order_by(routing_config.c.model_name)).scalars())


def retention_of(connection: sa.Connection, model: str) -> int:
    """The retention window of ``model``: its latest rollout's policy (the default policy's without one)."""
    rollout = latest_rollout(connection, model)
    return (rollout.policy if rollout else Policy()).retention_days


def verdicts(connection: sa.Connection, day: dt.date) -> list[tuple[str, RetentionVerdict]]:
    """Every inactive variant of every model, with whether it is due for teardown on ``day``."""
    out = []
    for model in models_with_inactive_variants(connection):
        routing = read_routing(connection, model)
        out.extend((model, v) for v in retention_verdicts(routing.routes, retention_of(connection, model), day))
    return out


def retire(connection: sa.Connection, model: str, variant: str, day: dt.date, *, actor: str, action: str,
           detail: str, attempts: int, run_id: str | None, reason: str,
           now: dt.datetime | None = None) -> TeardownRecord | None:
    """Retire ``variant`` in the routing (one new version) and record the teardown; None if it is not inactive any more."""
    now = now or dt.datetime.now(dt.UTC)
    routing = read_routing(connection, model)
    route = routing.route(variant) if routing else None
    if route is None or route.role != "inactive":
        return None
    routes = tuple(retired_route(r) if r.variant == variant else r for r in routing.routes)
    write_routing(connection, model, routes, expected_version=routing.version, actor=actor,
                  reason=f"teardown: {reason}", now=now)
    return _insert(connection, model, variant, day, route.inactive_since, "done", attempts, action, detail, actor,
                   run_id, now)


def record_failure(connection: sa.Connection, model: str, variant: str, day: dt.date, inactive_since: dt.date | None,
                   *, actor: str, action: str, detail: str, attempts: int, run_id: str | None,
                   now: dt.datetime | None = None) -> TeardownRecord:
    """Record a teardown whose action failed: the variant stays inactive (and deployable)."""
    return _insert(connection, model, variant, day, inactive_since, "failed", attempts, action, detail, actor, run_id,
                   now or dt.datetime.now(dt.UTC))


def _insert(connection, model, variant, day, inactive_since, status, attempts, action, detail, actor, run_id, now):
    new_id = connection.execute(teardowns.insert().values(
        model_name=model, variant=variant, day=day, inactive_since=inactive_since, status=status, attempts=attempts,
        action=action, detail=detail[:2000], actor=actor, run_id=run_id, created_at=now,
    ).returning(teardowns.c.id)).scalar_one()
    return _record(connection.execute(sa.select(teardowns).where(teardowns.c.id == new_id)).one())


def teardown_records(connection: sa.Connection, *, model: str | None = None,
                     day: dt.date | None = None) -> list[TeardownRecord]:
    """Stored teardown attempts, oldest first."""
    query = sa.select(teardowns)
    if model is not None:
        query = query.where(teardowns.c.model_name == model)
    if day is not None:
        query = query.where(teardowns.c.day == day)
    return [_record(r) for r in connection.execute(query.order_by(teardowns.c.id))]


def last_teardown(connection: sa.Connection, model: str, variant: str) -> TeardownRecord | None:
    """The variant's successful teardown, if it was torn down."""
    row = connection.execute(
        sa.select(teardowns).where(teardowns.c.model_name == model, teardowns.c.variant == variant,
                                   teardowns.c.status == "done").order_by(teardowns.c.id.desc()).limit(1)
    ).first()
    return _record(row) if row else None
