"""`rollout-pipeline`: the automation surface.

Commands that analyse or decide run the same Dagster definitions in-process, so
the audit trail is the one the schedule would leave. Heavy imports (Dagster,
Great Expectations) happen inside the commands that need them, keeping
``--help`` and ``init-db`` fast.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import sys
import time

import click

from rollout_pipeline import __version__
from rollout_pipeline.config import load_settings
from rollout_pipeline.logs import configure_logging

log = logging.getLogger("rollout_pipeline.cli")


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


def _database_error(exc: BaseException) -> InfrastructureError:
    from rollout_pipeline.store.engine import redact

    text = str(getattr(exc, "orig", None) or exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    try:
        where = redact(load_settings().database_url)
    except Exception:  # noqa: BLE001 - the URL itself may be what is broken; the message is enough then
        where = "ROLLOUT_DATABASE_URL"
    return InfrastructureError(f"cannot connect to the database: {line} ({where})")


def as_cli_error(exc: BaseException) -> CliError:
    """Any error a command raised, as the one line the user sees."""
    from rollout_pipeline.config import SettingsError

    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None and isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)):
        return _database_error(exc)
    runner = sys.modules.get("rollout_pipeline.defs.runner")
    if runner is not None and isinstance(exc, runner.RunFailed):
        where = f" (Dagster run {exc.run_id})" if exc.run_id else ""
        cls = InfrastructureError if exc.kind == "infrastructure" else CliError
        return cls(f"{exc}{where}")
    engine_mod = sys.modules.get("rollout_pipeline.store.engine")
    if engine_mod is not None and isinstance(exc, engine_mod.DatabaseUrlError):
        return CliError(f"ROLLOUT_DATABASE_URL: {exc}")
    if isinstance(exc, SettingsError):
        return CliError(str(exc))
    rollouts_mod = sys.modules.get("rollout_pipeline.store.rollouts")
    if rollouts_mod is not None and isinstance(exc, rollouts_mod.RolloutError):
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


def _engine(check_schema: bool = True):
    """The database's engine; unless ``check_schema`` is False (init-db), refused in one line when the database
    is not at this version's schema (never migrated: "run `rollout-pipeline init-db`")."""
    from rollout_pipeline.store.engine import DatabaseUrlError, make_engine
    from rollout_pipeline.store.migrate import SchemaNotCurrent, SchemaRevisionError, require_current_schema

    settings = load_settings()
    try:
        engine = make_engine(settings.database_url)
    except DatabaseUrlError as exc:
        raise CliError(f"ROLLOUT_DATABASE_URL: {exc}") from exc
    if check_schema:
        try:
            with engine.connect() as connection:
                require_current_schema(connection)
        except (SchemaNotCurrent, SchemaRevisionError) as exc:
            engine.dispose()
            raise CliError(str(exc)) from None
    return engine


@click.group(cls=OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rollout-pipeline")
@click.option("--log-level", default=None,
              help="DEBUG, INFO, WARNING (default; INFO with --verbose) or ERROR; or set ROLLOUT_LOG_LEVEL.")
@click.option("--verbose", "-v", is_flag=True,
              help="Show INFO lines, Python's warnings, Dagster's step logs and the traceback of an error.")
@click.pass_context
def cli(ctx: click.Context, log_level: str | None, verbose: bool) -> None:
    """Take a new ML model from shadow through canary to production, one data-driven step a day.

    The database is named by ROLLOUT_DATABASE_URL (default: an embedded SQLite
    file in the state folder, ROLLOUT_STATE_DIR, default ./.state). Errors are one
    line on stderr; exit status 1: refused or bad input, 2: usage, 3: the database
    or a Dagster run failed, 4: internal error (--verbose shows the traceback).
    """
    ctx.meta[VERBOSE] = verbose
    # A quiet terminal: what went wrong, the command's own lines and a progress bar; INFO lines and Python's
    # warnings (Dagster's Preview/Beta, pandas, ...) only with --verbose (or an explicit level).
    configure_logging(log_level, default="INFO" if verbose else "WARNING")
    if not verbose:
        import warnings

        warnings.filterwarnings("ignore")


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


def _dagster_log_level() -> str:
    """Dagster's step logs (and their tracebacks) only with --verbose."""
    ctx = click.get_current_context(silent=True)
    return "INFO" if ctx is not None and ctx.meta.get(VERBOSE) else "CRITICAL"


@cli.command("init-db")
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

    from rollout_pipeline.store.engine import is_postgres, redact
    from rollout_pipeline.store.migrate import SchemaRevisionError, upgrade
    from rollout_pipeline.store.partitions import ensure_partitions_around
    from rollout_pipeline.store.roles import PIPELINE_ROLE, SERVING_ROLE
    from rollout_pipeline.store.roles import grant_roles as grant

    engine = _engine(check_schema=False)
    if grant_roles and not is_postgres(engine):
        engine.dispose()
        raise CliError("--grant-roles: roles exist in PostgreSQL only (the embedded SQLite file has none)")
    started = time.perf_counter()
    try:
        result = upgrade(engine)
        created = (
            ensure_partitions_around(engine, dt.datetime.now(dt.UTC).date(), days_ahead=partition_days_ahead)
            if is_postgres(engine)
            else []
        )
        if grant_roles:
            grant(engine)
    except SchemaRevisionError as exc:
        raise CliError(str(exc)) from exc
    except OperationalError as exc:
        raise _database_error(exc) from None
    except ProgrammingError as exc:  # e.g. not the owner of the tables: one line, no traceback
        raise CliError(f"cannot grant the roles as {engine.url.username}: "
                       f"{str(getattr(exc, 'orig', exc)).strip().splitlines()[0]}") from None
    finally:
        engine.dispose()
    where = redact(engine.url)
    if result.changed:
        click.echo(f"migrated {where} from {result.before or 'an empty database'} to {result.after}")
    else:
        click.echo(f"{where} is already at the newest schema ({result.after}); nothing to do")
    if created:
        click.echo(f"created {len(created)} day partitions ({created[0]} .. {created[-1]})")
    if grant_roles:
        click.echo(f"granted {PIPELINE_ROLE} and {SERVING_ROLE} their privileges (docs/roles.sql)")
    log.info("init-db took %.2f s", time.perf_counter() - started)


def cli_actor(operator: str | None) -> str:
    """The audited actor of a CLI command: the operator (default: the OS user) and the surface, e.g. "alice (cli)"."""
    import getpass

    name = (operator or "").strip() or getpass.getuser()
    if len(name) > 64 or not name.isprintable():
        raise CliError("--operator must be a printable name of at most 64 characters")
    return f"{name} (cli)"


def _parse_day(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date: use YYYY-MM-DD") from None


def _echo_json(obj) -> None:
    import json

    click.echo(json.dumps(obj, indent=2, default=str))


@cli.group()
def rollout() -> None:
    """Start and inspect rollouts."""


@rollout.command("start")
@click.option("--model", required=True, help="Model name (letters, digits, '.', '_', '-').")
@click.option("--stable", required=True, help="The variant serving today (for a first model: a baseline).")
@click.option("--candidate", required=True, help="The new variant to roll out.")
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False), default=None,
              help="Policy YAML over the preset (default: the documented defaults; see `rollout-pipeline policy`).")
@click.option("--preset", type=click.Choice(["default", "first-model"]), default="default", show_default=True,
              help="A shipped policy: first-model when the stable variant is a baseline (a constant, top-N items).")
@click.option("--first-model", "first_model", is_flag=True, help="Same as --preset first-model.")
def rollout_start(model: str, stable: str, candidate: str, policy_path: str | None, preset: str,
                  first_model: bool) -> None:
    """Register a rollout in stage shadow: the stable model serves 100%, the candidate shadows it."""
    from rollout_pipeline.domain.policy import PolicyError, load_policy
    from rollout_pipeline.domain.routing import InvalidName
    from rollout_pipeline.store.rollouts import RolloutError, start_rollout

    try:
        policy = load_policy(policy_path, "first-model" if first_model else preset)
    except PolicyError as exc:
        raise CliError(str(exc)) from None
    from rollout_pipeline.planning import plan_for, plan_lines

    engine = _engine()
    try:
        with engine.begin() as conn:
            r = start_rollout(conn, model, stable, candidate, policy, actor="cli")
        with engine.connect() as conn:
            profile, steps = plan_for(conn, model, policy, today=dt.datetime.now(dt.UTC).date())
    except (RolloutError, InvalidName) as exc:
        raise CliError(str(exc)) from None
    finally:
        engine.dispose()
    _register_model(model)
    click.echo(f"rollout {r.id} of {model} started: {candidate} shadows {stable} (policy {r.policy_version})")
    click.echo("\n".join(plan_lines(profile, steps)))


@cli.command()
@click.option("--model", required=True, help="A model with a rollout (its policy) and some days of logs.")
@click.option("--days", type=click.IntRange(1, 60), default=7, show_default=True,
              help="The last UTC days of traffic the plan is made from.")
@click.option("--until", "until", default=None, help="The last of those days, YYYY-MM-DD (default: yesterday, UTC).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def plan(model: str, days: int, until: str | None, as_json: bool) -> None:
    """Expected nights at each step and the gate that decides it, from the last days' traffic; warns when a step
    cannot decide within a week and says what would help."""
    from rollout_pipeline.domain.routing import InvalidName, validate_name
    from rollout_pipeline.planning import plan_for, plan_json, plan_lines
    from rollout_pipeline.store.rollouts import latest_rollout

    try:
        validate_name("model", model)
    except InvalidName as exc:
        raise CliError(str(exc)) from None
    today = _parse_day(until) + dt.timedelta(days=1) if until else dt.datetime.now(dt.UTC).date()
    engine = _engine()
    try:
        with engine.connect() as conn:
            r = latest_rollout(conn, model)
            if r is None:
                raise CliError(f"{model} has no rollout: the plan follows its policy "
                               f"(`rollout-pipeline rollout start --model {model} ...`)")
            profile, steps = plan_for(conn, model, r.policy, today=today, days=days)
    finally:
        engine.dispose()
    if as_json:
        _echo_json({"model": model, **plan_json(profile, steps)})
        return
    click.echo("\n".join(plan_lines(profile, steps)))


def _register_model(model: str) -> None:
    import dagster as dg

    quiet_dagster()
    from rollout_pipeline.defs.partitions import register_partitions
    from rollout_pipeline.defs.runner import ensure_dagster_home

    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        register_partitions(instance, [], [model])


@cli.command()
@click.option("--preset", type=click.Choice(["default", "first-model"]), default="default", show_default=True,
              help="Print this shipped policy instead of the defaults.")
def policy(preset: str) -> None:
    """Print the default policy (or a preset) as YAML (copy it, edit it, pass it with --policy)."""
    from rollout_pipeline.domain.policy import default_policy_yaml

    click.echo(default_policy_yaml(preset), nl=False)


@cli.command()
@click.option("--model", required=True)
@click.option("--date", "day", required=True, help="The UTC day to analyse, YYYY-MM-DD.")
@click.option("--force", type=click.Choice(["promote", "hold", "rollback"]), default=None,
              help="Override the policy's decision (needs --reason; kept in the audit).")
@click.option("--reason", default=None, help="Why the decision is forced.")
@click.option("--dry-run", is_flag=True, help="Compute and print the decision; store and apply nothing.")
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False), default=None,
              help="With --dry-run: what this policy (YAML over --preset) would decide, from the stored evidence.")
@click.option("--preset", type=click.Choice(["default", "first-model"]), default=None,
              help="With --dry-run: the shipped policy under --policy (default: default).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--operator", default=None, help="Who decides (default: the OS user); audited as 'NAME (cli)'.")
def decide(model: str, day: str, force: str | None, reason: str | None, dry_run: bool, policy_path: str | None,
           preset: str | None, as_json: bool, operator: str | None) -> None:
    """Analyse a model's day (collect, validate, judge, decide); the decision is stored and applied at once."""
    from rollout_pipeline.domain.routing import InvalidName, validate_name

    try:
        validate_name("model", model)
    except InvalidName as exc:
        raise CliError(str(exc)) from None
    the_day = _parse_day(day)
    if force and not (reason and reason.strip()):
        raise CliError("--force needs --reason: forced decisions are audited")
    if reason and not force:
        raise CliError("--reason is only used with --force")
    if policy_path or preset:
        if not dry_run or force:
            raise CliError("--policy/--preset answer a what-if: only with --dry-run and without --force "
                           "(a rollout's policy is set when it starts)")
        _what_if(model, the_day, _load_policy(policy_path, preset), as_json)
        return
    quiet_dagster()
    from rollout_pipeline.runs import decide_day

    out = decide_day(model, the_day, force, reason, dry_run, actor=cli_actor(operator),
                     log_level=_dagster_log_level())
    if out.get("failed_checks") and out.get("decision_id") is not None and not dry_run:
        _notify(out, actor=cli_actor(operator))  # a blocked day's hold is decided after the run: notify it here
    if as_json:
        _echo_json(out)
        return
    click.echo(_describe(out))


def _load_policy(path: str | None, preset: str | None):
    from rollout_pipeline.domain.policy import PolicyError, load_policy

    try:
        return load_policy(path, preset or "default")
    except PolicyError as exc:
        raise CliError(str(exc)) from None


def _backtest_rows(model: str, start: dt.date, end: dt.date, policy) -> list:
    """Re-decide the days read-only; the input checked as ``decide`` checks it (one line, exit 1)."""
    from rollout_pipeline.backtest import BacktestError, run_backtest
    from rollout_pipeline.progress import progress_bar

    engine = _engine()
    try:
        with progress_bar((end - start).days + 1, f"backtest {model}", "day") as advance:
            return run_backtest(engine, model, start, end, policy, progress=advance)
    except BacktestError as exc:
        raise CliError(str(exc)) from None
    finally:
        engine.dispose()


def _what_if(model: str, day: dt.date, policy, as_json: bool) -> None:
    (row,) = _backtest_rows(model, day, day, policy)
    out = {"model": model, "date": day.isoformat(), "dry_run": True, "applied": False, "policy_what_if": True,
           **row.as_dict()}
    if as_json:
        _echo_json(out)
        return
    click.echo(f"{model} {day} [dry run, what-if policy] from {row.state}: now {row.now}; then {row.then}"
               f"{'' if row.differs else ' (same)'}")
    click.echo("\n".join(f"    - {r}" for r in row.reasons or (row.difference,)))


@cli.command()
@click.option("--model", required=True)
@click.option("--from", "start", required=True, help="First UTC day, YYYY-MM-DD.")
@click.option("--to", "end", required=True, help="Last UTC day (over), YYYY-MM-DD.")
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False), default=None,
              help="The policy to test: YAML over --preset (see `rollout-pipeline policy`).")
@click.option("--preset", type=click.Choice(["default", "first-model"]), default=None,
              help="The shipped policy under --policy (default: default).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def backtest(model: str, start: str, end: str, policy_path: str | None, preset: str | None, as_json: bool) -> None:
    """Re-decide past days from their stored evidence under another policy; never touches routing or the audit."""
    from rollout_pipeline.domain.routing import InvalidName, validate_name

    try:
        validate_name("model", model)
    except InvalidName as exc:
        raise CliError(str(exc)) from None
    first, last = _parse_day(start), _parse_day(end)
    if not (policy_path or preset):
        raise CliError("name the policy to test: --policy FILE and/or --preset NAME")
    policy = _load_policy(policy_path, preset)
    rows = _backtest_rows(model, first, last, policy)
    differing = [r for r in rows if r.differs]
    if as_json:
        _echo_json({"model": model, "from": first.isoformat(), "to": last.isoformat(), "days": len(rows),
                    "differing": len(differing), "rows": [r.as_dict() for r in rows]})
        return
    from rollout_pipeline.backtest import table

    t = table(rows)
    widths = [max(len(str(x)) for x in col) for col in zip(t.header, *t.rows)]
    for line in (t.header, *t.rows):
        click.echo("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip())
    for r in differing:  # why each differing day was decided then, and why it would be decided otherwise now
        click.echo(f"\ndiffers on {r.day} ({r.difference}):")
        click.echo("  then:" + "".join(f"\n    - {x}" for x in r.then_reasons or ("(no reasons stored)",)))
        click.echo("  now: " + "".join(f"\n    - {x}" for x in r.reasons or ("(none)",)))
    click.echo(f"{len(differing)} of {len(rows)} days would be decided differently")


def _describe(out: dict) -> str:
    f, t = out["from"], out["to"]
    head = (f"{out['model']} {out['date']}: {out['action'].upper()}{' (forced)' if out['forced'] else ''} "
            f"{f['stage']} {f['canary_percent']}% -> {t['stage']} {t['canary_percent']}%"
            f"{' [dry run]' if out.get('dry_run') else ''}"
            + (" [approval " + out["approval"] + "]" if out.get("approval") else ""))
    return "\n".join([head, *(f"    - {r}" for r in out["reasons"])])


@cli.command()
@click.option("--model", default=None, help="One model (default: every model with a rollout).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(model: str | None, as_json: bool) -> None:
    """Show each model's stage, canary share and routing."""
    import sqlalchemy as sa

    from rollout_pipeline.decisions import pending_approval
    from rollout_pipeline.domain.plan import total_nights
    from rollout_pipeline.planning import plan_for
    from rollout_pipeline.store.rollouts import latest_rollout
    from rollout_pipeline.store.routing import read_routing
    from rollout_pipeline.store.tables import rollouts

    engine = _engine()
    with engine.connect() as conn:
        models = [model] if model else list(conn.execute(
            sa.select(rollouts.c.model_name).distinct().order_by(rollouts.c.model_name)).scalars())
        items = []
        for m in models:
            r = latest_rollout(conn, m)
            routing = read_routing(conn, m)
            if r is None and routing is None:
                raise CliError(f"no rollout and no routing for model {m!r}")
            items.append({
                "model": m,
                "stage": r.stage if r else None,
                "canary_percent": r.canary_percent if r else None,
                "active": r.active if r else False,
                "stable": r.stable_variant if r else None,
                "candidate": r.candidate_variant if r else None,
                "routing_version": routing.version if routing else None,
                "routing": [{"variant": x.variant, "role": x.role, "traffic_percent": x.traffic_percent,
                             "shadow": x.shadow} for x in (routing.routes if routing else ())],
                "approval": pending_approval(conn, m),  # a promotion waiting for a person, or None
                "plan": _status_plan(conn, r, plan_for, total_nights),
            })
    engine.dispose()
    if as_json:
        _echo_json(items[0] if model else items)
        return
    if not items:
        click.echo("no rollouts yet: start one with `rollout-pipeline rollout start`")
        return
    click.echo(_status_table(items))
    for it in items:
        if it["plan"]:
            click.echo(f"{it['model']}: {it['plan']['says']}")
        if it["approval"]:
            a = it["approval"]
            click.echo(f"{it['model']}: waiting for approval of {a['date']}'s promotion to {a['to']['stage']} "
                       f"{a['to']['canary_percent']}% (until {a['expires_after']}): `rollout-pipeline approve "
                       f"--model {it['model']} --date {a['date']} --reason ...` or `reject`")


def _status_plan(conn, rollout, plan_for, total_nights) -> dict | None:
    """An active rollout's remaining plan from the last week's traffic (status shows its one line)."""
    if rollout is None or not rollout.active:
        return None
    profile, steps = plan_for(conn, rollout.model_name, rollout.policy, today=dt.datetime.now(dt.UTC).date())
    if profile is None:
        return {"nights_to_production": None, "says": "plan: no traffic in the last 7 days"}
    here = "shadow" if rollout.stage == "shadow" else f"canary {rollout.canary_percent}%"
    labels = [s.step for s in steps]
    ahead = steps[labels.index(here):] if here in labels else ()
    nights = total_nights(ahead) if ahead else None
    warn = next((s.warning for s in ahead if s.warning), "")
    says = (f"plan: production in ~{nights} nights at the last {profile.days} day(s)' traffic "
            f"(~{profile.requests:,.0f} requests a night)" if nights is not None
            else "plan: production not reachable at the last days' traffic")
    return {"nights_to_production": nights, "says": says + (f"; {warn}" if warn else "")}


def _status_table(items: list[dict]) -> str:
    """One row per model and routed variant: stage and share of the rollout, then each variant's route."""
    header = ("model", "stage", "share", "rollout", "routing", "variant", "role", "traffic", "shadow")
    rows = []
    for it in items:
        lead = (it["model"], it["stage"] or "-", "-" if it["canary_percent"] is None else f"{it['canary_percent']}%",
                "active" if it["active"] else "finished",
                "-" if it["routing_version"] is None else f"v{it['routing_version']}")
        for k, x in enumerate(it["routing"] or [None]):
            route = ("-", "-", "-", "") if x is None else (
                x["variant"], x["role"], f"{x['traffic_percent']:.1f}%", "shadow" if x["shadow"] else "")
            rows.append((lead if k == 0 else ("",) * len(lead)) + route)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *map(line, rows)])


@cli.command()
@click.option("--model", required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object per event, each with its kind.")
@click.option("--all", "include_superseded", is_flag=True, help="Include superseded decisions.")
def history(model: str, as_json: bool, include_superseded: bool) -> None:
    """A model's audit on one timeline: its decisions (with their reasons), routing changes and teardowns."""
    from rollout_pipeline.review.timeline import lines, timeline
    from rollout_pipeline.store.rollouts import decision_history
    from rollout_pipeline.store.routing import routing_history_rows
    from rollout_pipeline.store.teardown import teardown_records

    engine = _engine()
    with engine.connect() as conn:
        rows = decision_history(conn, model, include_superseded)
        events = timeline(rows, routing_history_rows(conn, model), teardown_records(conn, model=model),
                          superseded_by(rows))
    engine.dispose()
    if as_json:
        _echo_json([e.as_dict() for e in events])
        return
    if not events:
        click.echo(f"no decisions for {model}")
    for line in lines(events):
        click.echo(line)


def superseded_by(rows) -> dict[int, int]:
    """Which decision replaced which: a model's day has one live decision, and each new one supersedes the
    previous (``store.rollouts.record_decision``), so within a (model, day) each row is superseded by the next id."""
    by_day: dict[tuple[str, dt.date], list[int]] = {}
    for d in rows:
        by_day.setdefault((d.model_name, d.day), []).append(d.id)
    return {a: b for ids in by_day.values() for a, b in zip(sorted(ids), sorted(ids)[1:])}


@cli.command()
@click.option("--model", required=True)
@click.option("--reason", required=True, help="Why (kept in the audit trail).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--operator", default=None, help="Who rolls back (default: the OS user); audited as 'NAME (cli)'.")
def rollback(model: str, reason: str, as_json: bool, operator: str | None) -> None:
    """Roll a model back at once: the candidate to 0%, or after promotion the previous stable back to 100%.

    Works within the retention window, while the previous stable variant is
    still deployable; after its teardown it explains why it cannot.
    """
    from rollout_pipeline.domain.routing import InvalidName
    from rollout_pipeline.store.rollback import rollback as do_rollback
    from rollout_pipeline.store.rollouts import RolloutError

    if not reason.strip():
        raise CliError("--reason must say why (it is kept in the audit trail)")
    actor = cli_actor(operator)
    engine = _engine()
    try:
        with engine.begin() as conn:
            outcome = do_rollback(conn, model, reason, actor=actor, day=dt.datetime.now(dt.UTC).date())
    except (RolloutError, InvalidName) as exc:
        raise CliError(str(exc)) from None
    finally:
        engine.dispose()
    out = outcome.output()
    out.update({"model": model, "date": outcome.record.day.isoformat()})
    _notify(out, actor=actor)  # after the commit; a failed post is a warning, never a failed rollback
    if as_json:
        _echo_json(out)
        return
    click.echo(_describe(out))


def _verdict(model: str, day: str, reason: str, operator: str | None, verdict: str, rollback_: bool,
             as_json: bool) -> None:
    """``approve`` and ``reject``: a person's verdict on a promotion waiting for approval, through the decision service."""
    from rollout_pipeline.decisions import DecisionRequest, make_approval
    from rollout_pipeline.domain.routing import InvalidName, validate_name
    from rollout_pipeline.store.rollouts import RolloutError

    try:
        validate_name("model", model)
    except InvalidName as exc:
        raise CliError(str(exc)) from None
    the_day = _parse_day(day)
    if not reason.strip():
        raise CliError("--reason must say why (it is kept in the audit trail)")
    operator = cli_actor(operator)  # audited as "NAME (cli)", NAME defaulting to the OS user
    engine = _engine()
    try:
        outcome = make_approval(engine, DecisionRequest(model, the_day, operator, reason=reason, source="approval",
                                                        verdict=verdict, rollback=rollback_))
    except RolloutError as exc:
        raise CliError(str(exc)) from None
    finally:
        engine.dispose()
    out = outcome.output()
    out.update({"model": model, "date": the_day.isoformat(), "operator": operator})
    _notify(out, actor=operator)  # after the commit; a failed post is a warning, never a failed verdict
    if as_json:
        _echo_json(out)
        return
    click.echo(_describe(out))


@cli.command()
@click.option("--model", required=True)
@click.option("--date", "day", required=True, help="The UTC day whose promotion waits for approval, YYYY-MM-DD.")
@click.option("--reason", required=True, help="Why (kept in the audit trail).")
@click.option("--operator", default=None, help="Who approves (default: the OS user); audited as 'NAME (cli)'.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def approve(model: str, day: str, reason: str, operator: str | None, as_json: bool) -> None:
    """Approve a promotion waiting for approval: it is applied to the routing at once."""
    _verdict(model, day, reason, operator, "approve", False, as_json)


@cli.command()
@click.option("--model", required=True)
@click.option("--date", "day", required=True, help="The UTC day whose promotion waits for approval, YYYY-MM-DD.")
@click.option("--reason", required=True, help="Why (kept in the audit trail).")
@click.option("--operator", default=None, help="Who rejects (default: the OS user); audited as 'NAME (cli)'.")
@click.option("--rollback", "rollback_", is_flag=True, help="Roll the candidate back instead of holding.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def reject(model: str, day: str, reason: str, operator: str | None, rollback_: bool, as_json: bool) -> None:
    """Reject a promotion waiting for approval: the rollout holds where it stands (or, with --rollback, rolls back)."""
    _verdict(model, day, reason, operator, "reject", rollback_, as_json)


def _notify(out: dict, *, actor: str) -> None:
    """Post a decision the CLI made outside a Dagster run through the same ``notifier`` resource."""
    import dagster as dg

    quiet_dagster()
    from rollout_pipeline.defs.resources import notifier_resource

    with dg.build_resources({"notifier": notifier_resource()}) as resources:
        resources.notifier.announce_decision(out, model=out["model"], day=out["date"], actor=actor, run_id=None,
                                             log=log)


@cli.command()
@click.option("--date", "day", default=None, help="The UTC day to apply the retention rules for (default: today).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def teardown(day: str | None, as_json: bool) -> None:
    """Tear down variants inactive for longer than their retention window (the nightly retention job)."""
    from rollout_pipeline.config import SettingsError

    quiet_dagster()
    from rollout_pipeline.defs.failures import INFRASTRUCTURE
    from rollout_pipeline.defs.runner import run_retention
    from rollout_pipeline.store.teardown import teardown_records, verdicts

    the_day = _parse_day(day) if day else dt.datetime.now(dt.UTC).date()
    try:
        load_settings()
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    started = time.perf_counter()
    run = run_retention(the_day, log_level=_dagster_log_level())
    run_id, success = run.run_id, run.success
    engine = _engine()
    with engine.connect() as conn:
        records = [t.as_dict() for t in teardown_records(conn, day=the_day) if t.run_id == run_id]
        kept = [v.as_dict(m) for m, v in verdicts(conn, the_day) if not v.due]
    engine.dispose()
    out = {"date": the_day.isoformat(), "run_id": run_id, "success": success,
           "torn_down": [r for r in records if r["status"] == "done"],
           "failed": [r for r in records if r["status"] == "failed"],
           "kept": kept, "seconds": round(time.perf_counter() - started, 2)}
    if as_json:
        _echo_json(out)
    else:
        click.echo(f"retention {the_day}: {len(out['torn_down'])} torn down, {len(out['failed'])} failed, "
                   f"{len(kept)} kept (run {run_id}, {out['seconds']} s)")
        for r in out["torn_down"]:
            click.echo(f"    torn down {r['model']}/{r['variant']} (inactive since {r['inactive_since']}): {r['detail']}")
        for r in out["failed"]:
            click.echo(f"    FAILED    {r['model']}/{r['variant']}: {r['detail']}")
        for k in kept:
            click.echo(f"    kept      {k['model']}/{k['variant']}: {k['reason']}")
    if not success:
        # A misconfigured action or bad input is refused (exit 1); the action's system or the database failing
        # is infrastructure (exit 3), as the README's table of exit codes says.
        cls = InfrastructureError if run.kind == INFRASTRUCTURE else CliError
        raise cls(f"the retention run {run_id} failed: "
                  + ("; ".join(f"{r['model']}/{r['variant']}: {r['detail']}" for r in out["failed"])
                     or run.failure or "see the Dagster run's logs"))


@cli.command()
@click.option("--model", required=True)
@click.option("--date", "day", default=None, help="The decided UTC day, YYYY-MM-DD (default: the latest decided day).")
def report(model: str, day: str | None) -> None:
    """Write the HTML review of a model's decision (plots included) to <state>/reports and print its path."""
    from rollout_pipeline.review.report import NoDecision, report_for

    the_day = _parse_day(day) if day else None
    engine = _engine()
    try:
        with engine.connect() as conn:
            path = report_for(conn, model, the_day)
    except NoDecision as exc:
        raise CliError(str(exc)) from None
    finally:
        engine.dispose()
    click.echo(str(path))


@cli.command()
@click.option("--date", "day", required=True, help="The decided UTC day (the night's analysis of it), YYYY-MM-DD.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def digest(day: str, as_json: bool) -> None:
    """The morning digest: every rollout's decision of that day, pending approvals first, with report links."""
    from rollout_pipeline.review import digest as digests
    from rollout_pipeline.review.content import review_from_record
    from rollout_pipeline.review.report import report_path, rollout_history, write_report
    from rollout_pipeline.store.rollouts import active_models, decision_history, decisions_on

    the_day = _parse_day(day)
    engine = _engine()
    try:
        with engine.connect() as conn:
            records = decisions_on(conn, the_day)
            decided = {r.model_name for r in records}
            undecided = tuple(m for m in active_models(conn) if m not in decided)
            # A report missing (a decision made outside a Dagster run) is written, so every link opens.
            for record in records:
                if not report_path(record.model_name, the_day.isoformat()).exists():
                    write_report(review_from_record(record),
                                 rollout_history(decision_history(conn, record.model_name), record))
    finally:
        engine.dispose()
    rows = digests.digest_rows(records)
    path = digests.write_digest(the_day.isoformat(), rows, undecided)
    if as_json:
        _echo_json({"date": the_day.isoformat(), "digest": str(path), "decisions": digests.to_json(rows),
                    "undecided": list(undecided)})
        return
    if not rows:
        click.echo(f"no decisions on {the_day}")
    for r in rows:
        waiting = f" [approval {r.approval}]" if r.approval else ""
        click.echo(f"{r.model}: {r.action.upper()}{' (forced)' if r.forced else ''}{waiting} {r.before} -> {r.after} "
                   f"(#{r.decision_id} by {r.actor}) {path.parent / r.report}")
    if undecided:
        click.echo(f"no decision that night for active rollouts: {', '.join(undecided)}")
    click.echo(str(path))


@cli.command("export-logs")
@click.option("--date", "day", required=True, help="The (first) UTC day to export, YYYY-MM-DD.")
@click.option("--through", default=None,
              help="The last UTC day to export (default: --date). A day's feedback may arrive up to two days "
                   "later and is filed under its own day: --through D+2 exports all of day D's feedback.")
@click.option("--to", "url", required=True, metavar="URL",
              help="The lake: parquet:///abs/path (local) or s3a://bucket/path, gs://, abfss://, hdfs://.")
@click.option("--model", "models", multiple=True, metavar="MODEL",
              help="Only this model's rows (repeatable); the lake keeps the other models' rows of those days.")
@click.option("--batch-rows", default=50_000, show_default=True, type=click.IntRange(1),
              help="Rows read from the database and written to Parquet at a time (a row group; bounds memory).")
def export_logs(day: str, through: str | None, url: str, models: tuple[str, ...], batch_rows: int) -> None:
    """Copy days of prediction_log and feedback from the database into a Parquet lake.

    Writes <URL>/<table>/day=YYYY-MM-DD/part-<id>.parquet for both tables (rows under
    the day of their own ts) and REPLACES those days in the lake: re-running never
    doubles a day, and a failed export leaves the lake as it was. Reads the database
    named by ROLLOUT_DATABASE_URL a batch at a time, never a whole day in memory.
    Run it before the retention job (ROLLOUT_LOG_RETENTION_DAYS) drops a day's
    partitions, to keep that day in the lake. Needs pyarrow (the 'spark' extra).
    """
    from rollout_pipeline.domain.routing import validate_name
    from rollout_pipeline.store.export import NoLogTables, export_days
    from rollout_pipeline.store.lake import LakeUrlError, lake_root

    first = _parse_day(day)
    last = _parse_day(through) if through is not None else first
    if last < first:
        raise click.BadParameter(f"{through} is before --date {day}", param_hint="--through")
    try:
        lake_root(url)
        for name in models:
            validate_name("model", name)
    except ValueError as exc:
        raise CliError(str(exc)) from exc

    from rollout_pipeline.progress import progress_bar

    engine = _engine()
    seen: dict[tuple[str, dt.date], int] = {}
    try:
        with progress_bar(None, f"export {first}..{last}", "rows") as advance:
            def progress(table: str, on: dt.date, rows: int) -> None:  # rows so far of that table's day
                advance(rows - seen.get((table, on), 0))
                seen[(table, on)] = rows

            result = export_days(engine, url, first, last, models=models or None, batch_rows=batch_rows,
                                 progress=progress)
    except (LakeUrlError, NoLogTables) as exc:
        raise CliError(str(exc)) from exc
    finally:
        engine.dispose()
    for path in result.files:
        click.echo(path)
    span = str(first) if last == first else f"{first} .. {last}"
    kept = sum(result.kept.values())
    click.echo(f"exported {span}: prediction_log {result.rows['prediction_log']:,} rows, feedback "
               f"{result.rows['feedback']:,} rows" + (f" (kept {kept:,} rows of other models)" if models else "")
               + f"; {len(result.files)} file{'' if len(result.files) == 1 else 's'} under {result.root}")


@cli.command()
@click.option("--days", default=6, show_default=True, type=click.IntRange(1, 30), help="Days to simulate per rollout.")
@click.option("--requests", default=16_000, show_default=True, type=click.IntRange(100, 1_000_000),
              help="Requests per simulated day.")
def demo(days: int, requests: int) -> None:
    """Run three rollouts day by day on the embedded default (state in <state>/demo, wiped first).

    Progress lines of the pipeline and Dagster's step logs show with --verbose or --log-level INFO."""
    quiet_dagster()
    from rollout_pipeline.demo import run_demo

    started = time.perf_counter()
    run_demo(days=days, requests=requests, log_level=_dagster_log_level())
    click.echo(f"demo finished in {time.perf_counter() - started:.0f} s")


@cli.command()
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

    serve(host, port, with_daemon=not no_daemon, verbose=bool(click.get_current_context().meta.get(VERBOSE)))


# --- commands defined in their own modules -------------------------------------------------
from rollout_pipeline.serving.commands import serve  # noqa: E402
from rollout_pipeline.simulate.commands import simulate  # noqa: E402

cli.add_command(serve)
cli.add_command(simulate)


def main() -> None:
    """Console-script entry point."""
    try:
        cli(prog_name="rollout-pipeline")
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    finally:
        # The command is done (atexit handlers, logging's flush among them, still run). At exit Python tears
        # its modules down and collects the cycles that leaves, over every object Dagster, Great Expectations,
        # pandas and SciPy created: 1.2-1.4 CPU-s of a 9 s `decide` (docs/performance.md). Objects frozen
        # into the permanent generation are left to the operating system, which frees the process anyway.
        gc.freeze()


if __name__ == "__main__":
    main()
