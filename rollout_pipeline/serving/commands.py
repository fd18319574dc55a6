"""`rollout-pipeline serve`: the Router behind HTTP (Starlette on uvicorn)."""

from __future__ import annotations

import importlib
import ipaddress
import logging

import click

log = logging.getLogger("rollout_pipeline.serve")

DEFAULT_REGISTRY = "rollout_pipeline.simulate.models:demo_registry"


def load_registry(spec: str):
    """Resolve ``module:attribute`` to {model: {variant: callable}} (calling the attribute if it is a function)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise click.BadParameter(f"{spec!r}: expected module:attribute", param_hint="--registry")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise click.BadParameter(f"{spec!r}: {exc}", param_hint="--registry") from exc
    registry = target() if callable(target) else target
    if not hasattr(registry, "items"):
        raise click.BadParameter(f"{spec!r} must give a mapping model -> variant -> callable", param_hint="--registry")
    return registry


def is_loopback(host: str) -> bool:
    """True when ``host`` names this machine only (localhost, 127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind. The default keeps the server local; use 0.0.0.0 only behind a trusted network.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option("--registry", default=DEFAULT_REGISTRY, show_default=True,
              help="module:attribute giving {model: {variant: callable}} (or a function returning it). "
                   "The default serves the simulator's scikit-learn demo models.")
@click.option("--model", "models", multiple=True,
              help="Serve only this model (repeatable). Default: every model of the registry that has a routing config.")
@click.option("--refresh-seconds", default=5.0, show_default=True, type=click.FloatRange(0.1),
              help="How often each router re-reads its routing config from the store.")
@click.option("--shadow-timeout-ms", default=1000.0, show_default=True, type=click.FloatRange(1),
              help="A shadow answer later than this is logged as a timeout.")
@click.option("--insecure", is_flag=True,
              help="Serve on a non-loopback --host without ROLLOUT_SERVE_TOKEN (anyone who reaches the port may "
                   "predict and post feedback). Without it, that is refused.")
def serve(host: str, port: int, registry: str, models: tuple[str, ...], refresh_seconds: float,
          shadow_timeout_ms: float, insecure: bool) -> None:
    """Serve POST /predict/{model}, POST /feedback/{model} and GET /health over HTTP.

    Each model gets a Router that follows its routing config in the database
    (ROLLOUT_DATABASE_URL): sticky canary split by entity_id, shadow mirroring,
    and every answer logged to prediction_log. When the database is unreachable,
    routers keep their last good config and log rows spill to
    <state dir>/spill/<model>, replayed exactly once when it is back.

    With ROLLOUT_SERVE_TOKEN set, /predict and /feedback need
    "Authorization: Bearer <token>" (/health stays open). Bodies are limited to
    ROLLOUT_SERVE_MAX_BODY_BYTES (default 1 MiB); feedback timestamps to
    ROLLOUT_FEEDBACK_MAX_AGE_SECONDS before and ROLLOUT_FEEDBACK_MAX_AHEAD_SECONDS
    after the server's clock (defaults 3 days, 5 minutes).
    """
    import uvicorn

    from rollout_pipeline.config import SettingsError, load_serve_settings, load_settings
    from rollout_pipeline.serving.app import create_app

    settings = load_settings()
    try:
        serve_settings = load_serve_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    if not serve_settings.token and not is_loopback(host) and not insecure:
        raise click.ClickException(
            f"refusing to serve on {host} without authentication: set ROLLOUT_SERVE_TOKEN (clients send "
            "'Authorization: Bearer <token>'), or pass --insecure on a network you trust")
    engine = _migrated_engine(settings.database_url)
    available = load_registry(registry)
    unknown = sorted(set(models) - set(available))
    if unknown:
        raise click.ClickException(f"not in the registry: {', '.join(unknown)} (it has: {', '.join(sorted(available))})")
    routers, feedback_writer = _start_routers(engine, available, models, settings.state_dir,
                                              refresh_seconds=refresh_seconds, shadow_timeout_ms=shadow_timeout_ms)
    _announce(routers, host, port, authenticated=bool(serve_settings.token))
    app = create_app(routers, feedback_writer=feedback_writer, settings=serve_settings)
    uvicorn.run(app, host=host, port=port, log_level=logging.getLevelName(logging.getLogger().level).lower())


def _migrated_engine(database_url: str):
    """The store's engine, refused in one line when the URL is unusable or the schema is not current."""
    from rollout_pipeline.store.engine import DatabaseUrlError, make_engine
    from rollout_pipeline.store.migrate import SchemaNotCurrent, SchemaRevisionError, require_current_schema

    try:
        engine = make_engine(database_url)
    except DatabaseUrlError as exc:
        raise click.ClickException(f"ROLLOUT_DATABASE_URL: {exc}") from exc
    try:
        with engine.connect() as connection:
            require_current_schema(connection)
    except (SchemaNotCurrent, SchemaRevisionError) as exc:
        engine.dispose()
        raise click.ClickException(str(exc)) from exc
    return engine


def _start_routers(engine, available, models: tuple[str, ...], state_dir, *, refresh_seconds: float,
                   shadow_timeout_ms: float):
    """A Router per model served (those named, else every registry model with a routing config) and the
    feedback writer; on any failure the routers already started are closed."""
    from rollout_pipeline.serving.router import NoRouting, Router, StoreUnavailable
    from rollout_pipeline.serving.split import UnusableRouting
    from rollout_pipeline.serving.writer import LogWriter, SpillFolderInUse
    from rollout_pipeline.store.engine import redact

    routers: dict[str, Router] = {}
    try:
        for name in models or sorted(available):
            try:
                routers[name] = Router(engine, name, available[name], refresh_seconds=refresh_seconds,
                                       shadow_timeout_ms=shadow_timeout_ms, spill_dir=state_dir / "spill" / name)
            except NoRouting as exc:
                if models:
                    raise click.ClickException(str(exc)) from exc
                log.info("not serving %s: %s", name, exc)
            except (StoreUnavailable, UnusableRouting, SpillFolderInUse) as exc:
                raise click.ClickException(str(exc)) from exc
        if not routers:
            raise click.ClickException(
                f"no model of the registry has a routing config in {redact(engine.url)}: start a rollout first "
                "(or `rollout-pipeline simulate --start-shadow ...` for a demo)")
        feedback_writer = LogWriter(engine, state_dir / "spill" / "_feedback", kind="feedback", name="log-feedback")
    except BaseException:
        for router in routers.values():
            router.close()
        raise
    return routers, feedback_writer


def _announce(routers, host: str, port: int, *, authenticated: bool) -> None:
    """One line per model served (its routing) and one on authentication."""
    for name, router in sorted(routers.items()):
        click.echo(f"serving {name} (routing v{router.config.version}: "
                   + ", ".join(f"{r.variant} {r.role} {r.traffic_percent:g}%{' shadow' if r.shadow else ''}"
                               for r in router.config.routes) + ")")
    click.echo("authentication: bearer token required on /predict and /feedback" if authenticated else
               "authentication: none (set ROLLOUT_SERVE_TOKEN to require a bearer token)"
               + ("" if is_loopback(host) else f"; --insecure: anyone reaching {host}:{port} may call it"))
