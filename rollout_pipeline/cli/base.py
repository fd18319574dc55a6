"""What every command shares: the exit codes, errors as one line, and the small helpers of parsing and printing.

Heavy imports (Dagster, Great Expectations, pandas) happen inside the commands
that need them, keeping ``--help`` and ``init-db`` fast (docs/performance.md).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import sys
from collections.abc import Iterator

import click

from rollout_pipeline.config import SettingsError, load_settings

# Exit codes (README, "CLI errors and exit codes"): every failure is one line on stderr naming the cause.
EXIT_REFUSED = 1  # refused, or bad input/configuration
EXIT_USAGE = 2  # click: unknown option, missing argument
EXIT_INFRASTRUCTURE = 3  # the database (or the Dagster run) failed
EXIT_INTERNAL = 4  # a bug: the one line says so, --verbose shows the traceback
VERBOSE = "rollout_pipeline.verbose"


class CliError(click.ClickException):
    """A refusal or bad input: one line on stderr, exit status 1."""

    exit_code = EXIT_REFUSED


class InfrastructureError(CliError):
    """The database or a Dagster run failed: one line on stderr naming the cause, exit status 3."""

    exit_code = EXIT_INFRASTRUCTURE


class InternalError(CliError):
    """An unexpected error: one line, exit status 4 (``--verbose`` shows the traceback)."""

    exit_code = EXIT_INTERNAL


def database_error(exc: BaseException) -> InfrastructureError:
    """A database that cannot be reached, as the one line naming it (its URL without the password)."""
    from rollout_pipeline.store.engine import redact

    text = str(getattr(exc, "orig", None) or exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    try:
        where = redact(load_settings().database_url)
    except Exception:  # noqa: BLE001 - the URL itself may be what is broken; the message is enough then
        where = "ROLLOUT_DATABASE_URL"
    return InfrastructureError(f"cannot connect to the database: {line} ({where})")


def _loaded_error(module: str, *names: str) -> tuple[type, ...]:
    """The exception classes ``names`` of ``module`` if it is imported (a command that never imported it cannot
    have raised them; importing it here would slow every error down)."""
    mod = sys.modules.get(module)
    return tuple(getattr(mod, n) for n in names) if mod is not None else ()


def as_cli_error(exc: BaseException) -> CliError:
    """Any error a command raised, as the one line the user sees."""
    if isinstance(exc, _loaded_error("sqlalchemy.exc", "OperationalError", "InterfaceError")):
        return database_error(exc)
    runner = sys.modules.get("rollout_pipeline.defs.runner")
    if runner is not None and isinstance(exc, runner.RunFailed):
        where = f" (Dagster run {exc.run_id})" if exc.run_id else ""
        cls = InfrastructureError if exc.kind == "infrastructure" else CliError
        return cls(f"{exc}{where}")
    if isinstance(exc, _loaded_error("rollout_pipeline.store.engine", "DatabaseUrlError")):
        return CliError(f"ROLLOUT_DATABASE_URL: {exc}")
    if isinstance(exc, _loaded_error("rollout_pipeline.store.migrate", "SchemaNotCurrent", "SchemaRevisionError")):
        return CliError(str(exc))  # e.g. never migrated: "run `rollout-pipeline init-db`"
    if isinstance(exc, SettingsError):
        return CliError(str(exc))
    if isinstance(exc, _loaded_error("rollout_pipeline.store.rollouts", "RolloutError")):
        return CliError(str(exc))  # e.g. a stored policy out of its documented ranges: refused, naming the field
    if isinstance(exc, OSError) and exc.filename is not None:
        # The state folder (or DAGSTER_HOME) cannot be created or written: a configuration to fix, not a bug.
        return CliError(f"cannot use {exc.filename}: {exc.strerror or exc} (ROLLOUT_STATE_DIR and DAGSTER_HOME "
                        "must name folders this user can write)")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return InternalError(f"internal error: {type(exc).__name__}: {first} (re-run with --verbose for the traceback)")


class OneLineGroup(click.Group):
    """A group whose commands fail in one line and the documented exit status; --verbose adds the traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if ctx.meta.get(VERBOSE):  # the traceback, then the same line and exit status as without --verbose
                import traceback

                traceback.print_exc(file=sys.stderr)
            raise as_cli_error(exc) from None


@contextlib.contextmanager
def refused(*errors: type[BaseException]) -> Iterator[None]:
    """The service's refusals ``errors`` as one line and exit status 1."""
    try:
        yield
    except errors as exc:
        raise CliError(str(exc)) from None


def engine(check_schema: bool = True):
    """The database's engine; unless ``check_schema`` is False (init-db), refused in one line when the database
    is not at this version's schema (never migrated: "run `rollout-pipeline init-db`")."""
    from rollout_pipeline.admin import open_engine
    from rollout_pipeline.store.engine import DatabaseUrlError
    from rollout_pipeline.store.migrate import SchemaNotCurrent, SchemaRevisionError

    try:
        return open_engine(check_schema)
    except DatabaseUrlError as exc:
        raise CliError(f"ROLLOUT_DATABASE_URL: {exc}") from exc
    except (SchemaNotCurrent, SchemaRevisionError) as exc:
        raise CliError(str(exc)) from None


def cli_actor(operator: str | None) -> str:
    """The audited actor of a CLI command: the operator (default: the OS user) and the surface, e.g. "alice (cli)"."""
    import getpass

    name = (operator or "").strip() or getpass.getuser()
    if len(name) > 64 or not name.isprintable():
        raise CliError("--operator must be a printable name of at most 64 characters")
    return f"{name} (cli)"


def parse_day(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date: use YYYY-MM-DD") from None


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def valid_model(model: str) -> str:
    """``model`` when it is a valid name, else refused in one line (before anything is opened)."""
    from rollout_pipeline.domain.routing import InvalidName, validate_name

    with refused(InvalidName):
        validate_name("model", model)
    return model


def echo_json(obj) -> None:
    import json

    click.echo(json.dumps(obj, indent=2, default=str))


def quiet_dagster() -> None:
    """Hide Dagster's Preview/Beta/Supersession warnings (they speak to developers, not to the CLI's users).

    Called before the definitions are imported: Dagster warns when they are built. Also the point where a
    command that runs Dagster starts its imports: see :func:`collect_less_often`."""
    import warnings

    collect_less_often()
    import dagster as dg  # heavy: imported only by the commands that run Dagster

    for category in (dg.PreviewWarning, dg.BetaWarning, dg.SupersessionWarning):
        warnings.filterwarnings("ignore", category=category)


def collect_less_often() -> None:
    """Python's garbage collector at thresholds for a batch process that imports a large, long-lived heap.

    A command that runs the pipeline imports Dagster, Great Expectations, pandas and SciPy (~430,000
    objects that live as long as the process) and then runs for seconds to minutes. At the default
    thresholds (700, 10, 10) the collector rescanned them in 7 full collections during a small day's
    `decide`; young collections every 10,000 allocations instead of 700 saved 0.6-0.9 of its ~7 CPU-s
    (docs/performance.md). Cycles are still collected; the young generation holds at most ~10,000 objects.
    """
    gc.set_threshold(10_000, 10, 10)


def dagster_log_level() -> str:
    """Dagster's step logs (and their tracebacks) only with --verbose."""
    ctx = click.get_current_context(silent=True)
    return "INFO" if ctx is not None and ctx.meta.get(VERBOSE) else "CRITICAL"


def verbose() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get(VERBOSE))
