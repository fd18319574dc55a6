"""The routing repository: versioned routing config per model, with a history row per change."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from rollout_pipeline.domain.routing import RoutingConfig, VariantRoute, check_routes
from rollout_pipeline.store.tables import routing_config, routing_history, routing_version


class ConcurrentUpdate(RuntimeError):
    """The routing changed since it was read: the caller must re-read and decide again."""


def _config_json(routes: tuple[VariantRoute, ...]) -> list[dict]:
    return [
        {
            "variant": r.variant,
            "role": r.role,
            "traffic_percent": r.traffic_percent,
            "shadow": r.shadow,
            "inactive_since": r.inactive_since.isoformat() if r.inactive_since else None,
        }
        for r in routes
    ]


def read_routing(connection: sa.Connection, model_name: str) -> RoutingConfig | None:
    """The model's current routing, or None if it has never had one."""
    version = connection.execute(
        sa.select(routing_version.c.version).where(routing_version.c.model_name == model_name)
    ).scalar_one_or_none()
    if version is None:
        return None
    rows = connection.execute(
        sa.select(routing_config).where(routing_config.c.model_name == model_name).order_by(routing_config.c.variant)
    ).all()
    routes = tuple(
        VariantRoute(r.variant, r.role, float(r.traffic_percent), bool(r.shadow), r.inactive_since) for r in rows
    )
    return RoutingConfig(model_name, version, routes)


def write_routing(
    connection: sa.Connection,
    model_name: str,
    routes: tuple[VariantRoute, ...],
    *,
    expected_version: int | None,
    actor: str,
    reason: str,
    decision_id: int | None = None,
    now: dt.datetime | None = None,
) -> RoutingConfig:
    """Replace the model's routing inside the caller's transaction, bumping its version.

    ``expected_version`` is the version the caller read (None: the model has no
    routing yet). If another writer got there first, ``ConcurrentUpdate`` is
    raised and nothing is written: the version row is locked (PostgreSQL) or the
    database is (SQLite), so two writers can never both succeed from one version.
    """
    check_routes(model_name, routes)
    now = now or dt.datetime.now(dt.UTC)
    new_version = _bump_version(connection, model_name, expected_version, now)
    _replace_routes(connection, model_name, routes)
    connection.execute(
        routing_history.insert().values(
            model_name=model_name,
            version=new_version,
            decision_id=decision_id,
            actor=actor,
            reason=reason,
            config=_config_json(routes),
            created_at=now,
        )
    )
    return RoutingConfig(model_name, new_version, tuple(routes))


def _bump_version(connection: sa.Connection, model_name: str, expected_version: int | None, now: dt.datetime) -> int:
    """The model's next routing version, claimed from ``expected_version``; ``ConcurrentUpdate`` if another
    writer claimed it first (nothing written then)."""
    if expected_version is None:
        try:
            with connection.begin_nested():
                connection.execute(
                    routing_version.insert().values(model_name=model_name, version=1, updated_at=now)
                )
        except sa.exc.IntegrityError as exc:
            raise ConcurrentUpdate(f"{model_name}: routing was created by another writer") from exc
        return 1
    new_version = expected_version + 1
    updated = connection.execute(
        routing_version.update()
        .where(routing_version.c.model_name == model_name, routing_version.c.version == expected_version)
        .values(version=new_version, updated_at=now)
    )
    if updated.rowcount != 1:
        raise ConcurrentUpdate(f"{model_name}: routing changed since version {expected_version} was read")
    return new_version


def _replace_routes(connection: sa.Connection, model_name: str, routes: tuple[VariantRoute, ...]) -> None:
    """The model's ``routing_config`` rows replaced by ``routes``."""
    connection.execute(routing_config.delete().where(routing_config.c.model_name == model_name))
    connection.execute(
        routing_config.insert(),
        [
            {
                "model_name": model_name,
                "variant": r.variant,
                "role": r.role,
                "traffic_percent": r.traffic_percent,
                "shadow": r.shadow,
                "inactive_since": r.inactive_since,
            }
            for r in routes
        ],
    )


def routing_history_rows(connection: sa.Connection, model_name: str) -> list[sa.Row]:
    """The model's routing history, oldest first."""
    return connection.execute(
        sa.select(routing_history).where(routing_history.c.model_name == model_name).order_by(routing_history.c.version)
    ).all()
