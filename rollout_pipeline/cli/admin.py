"""Running the installation: `init-db` (migrate, partitions, roles), `teardown` (the retention job), `demo`, `ui`."""

from __future__ import annotations

import logging
import sys
import time

import click

from rollout_pipeline.cli.base import (CliError, InfrastructureError, dagster_log_level, database_error, echo_json,
                                       engine, parse_day, quiet_dagster, refused, today, verbose)

log = logging.getLogger("rollout_pipeline.cli")


@click.command("init-db")
@click.option(
    "--partition-days-ahead",
    default=7,
    show_default=True,
    type=click.IntRange(0, 366),
    help="PostgreSQL: create day partitions of the log tables this many days ahead.",
)
@click.option("--grant-roles", is_flag=True,
              help="PostgreSQL, as the tables' owner: then create the least-privilege roles rollout_pipeline and "
                   "rollout_serving if missing and grant them their privileges (docs/roles.sql; idempotent).")
def init_db(partition_days_ahead: int, grant_roles: bool) -> None:
    """Create or migrate the database to the newest schema (a no-op when it is already there)."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from rollout_pipeline.admin import RolesRefused, init_database
    from rollout_pipeline.store.engine import redact
    from rollout_pipeline.store.migrate import SchemaRevisionError
    from rollout_pipeline.store.roles import PIPELINE_ROLE, SERVING_ROLE

    db = engine(check_schema=False)
    started = time.perf_counter()
    try:
        with refused(RolesRefused, SchemaRevisionError):
            done = init_database(db, partition_days_ahead=partition_days_ahead, roles=grant_roles)
    except OperationalError as exc:
        raise database_error(exc) from None
    except ProgrammingError as exc:  # e.g. not the owner of the tables: one line, no traceback
        raise CliError(f"cannot grant the roles as {db.url.username}: "
                       f"{str(getattr(exc, 'orig', exc)).strip().splitlines()[0]}") from None
    finally:
        db.dispose()
    where, result, created = redact(db.url), done.migration, done.partitions
    if result.changed:
        click.echo(f"migrated {where} from {result.before or 'an empty database'} to {result.after}")
    else:
        click.echo(f"{where} is already at the newest schema ({result.after}); nothing to do")
    if created:
        click.echo(f"created {len(created)} day partitions ({created[0]} .. {created[-1]})")
    if done.granted:
        click.echo(f"granted {PIPELINE_ROLE} and {SERVING_ROLE} their privileges (docs/roles.sql)")
    log.info("init-db took %.2f s", time.perf_counter() - started)


@click.command()
@click.option("--date", "day", default=None, help="The UTC day to apply the retention rules for (default: today).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def teardown(day: str | None, as_json: bool) -> None:
    """Tear down variants inactive for longer than their retention window (the nightly retention job)."""
    quiet_dagster()
    from rollout_pipeline.defs.runner import retention

    the_day = parse_day(day) if day else today()
    report = retention(the_day, log_level=dagster_log_level())
    out = report.out
    if as_json:
        echo_json(out)
    else:
        click.echo(f"retention {the_day}: {len(out['torn_down'])} torn down, {len(out['failed'])} failed, "
                   f"{len(out['kept'])} kept (run {out['run_id']}, {out['seconds']} s)")
        for r in out["torn_down"]:
            click.echo(f"    torn down {r['model']}/{r['variant']} (inactive since {r['inactive_since']}): {r['detail']}")
        for r in out["failed"]:
            click.echo(f"    FAILED    {r['model']}/{r['variant']}: {r['detail']}")
        for k in out["kept"]:
            click.echo(f"    kept      {k['model']}/{k['variant']}: {k['reason']}")
    if not report.success:
        # A misconfigured action or bad input is refused (exit 1); the action's system or the database failing
        # is infrastructure (exit 3), as the README's table of exit codes says.
        raise (InfrastructureError if report.infrastructure else CliError)(report.failure)


@click.command()
@click.option("--days", default=6, show_default=True, type=click.IntRange(1, 30), help="Days to simulate per rollout.")
@click.option("--requests", default=16_000, show_default=True, type=click.IntRange(100, 1_000_000),
              help="Requests per simulated day.")
def demo(days: int, requests: int) -> None:
    """Run three rollouts day by day on the embedded default (state in <state>/demo, wiped first).

    Progress lines of the pipeline and Dagster's step logs show with --verbose or --log-level INFO."""
    quiet_dagster()
    from rollout_pipeline.demo import run_demo

    started = time.perf_counter()
    run_demo(days=days, requests=requests, log_level=dagster_log_level())
    click.echo(f"demo finished in {time.perf_counter() - started:.0f} s")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (keep it local).")
@click.option("--port", default=3000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--no-daemon", is_flag=True, help="Without the daemon (schedules, sensors, the run queue).")
def ui(host: str, port: int, no_daemon: bool) -> None:
    """The Dagster UI for the morning review, the reports served at /reports beside it, and the daemon.

    Prints its URL first; Dagster's warnings and INFO lines show only with --verbose."""
    url = f"http://{host}:{port}"
    click.echo(f"Dagster UI: {url}   (the reports: {url}/reports/; Ctrl-C stops it)", err=False)
    sys.stdout.flush()
    from rollout_pipeline.webui import serve

    serve(host, port, with_daemon=not no_daemon, verbose=verbose())


COMMANDS = (init_db, teardown, demo, ui)
