"""Run a model's day in-process with the same definitions the schedule uses (the CLI's and the demo's path).

The decision itself (stored and applied in one transaction) is made by the job's
``decision`` asset through ``rollout_pipeline.decisions``; this adds what a
person at a terminal needs: the day checked before anything reaches Dagster, and
the CLI's JSON object (``decide_day``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import sqlalchemy as sa

from rollout_pipeline.admin import open_engine
from rollout_pipeline.config import ENV_DAGSTER_HOME, load_settings
from rollout_pipeline.decision_requests import day_request
from rollout_pipeline.decisions import hold_blocked_day, make_decision
from rollout_pipeline.defs.assets import day_summary, decision, judgement
from rollout_pipeline.defs.checks import blocked, check_evaluations
from rollout_pipeline.defs.failures import INFRASTRUCTURE, REFUSED, first_line
from rollout_pipeline.defs.location import build_definitions
from rollout_pipeline.defs.partitions import partition_key, register_partitions
from rollout_pipeline.defs.resources import resources_from_environment, store_engine
from rollout_pipeline.defs.tags import ACTOR_TAG, DRY_RUN_TAG
from rollout_pipeline.domain.days import not_over
from rollout_pipeline.preflight import DayRefused, refuse_unrunnable_day
from rollout_pipeline.store.rollouts import RolloutError
from rollout_pipeline.views import retention_failure, retention_report

log = logging.getLogger(__name__)

# Written into a DAGSTER_HOME that has no dagster.yaml: Dagster's default SQLite storage
# in that folder (no server), telemetry off. Keep in step with the top-level dagster.yaml.
LOCAL_INSTANCE_YAML = """\
telemetry:
  enabled: false
run_retries:
  enabled: true
  max_retries: 1
"""


def ensure_dagster_home() -> str:
    """DAGSTER_HOME, defaulting to <state>/dagster (Dagster's own SQLite storage lives there)."""
    settings = load_settings()
    home = settings.dagster_home
    if not home:
        home = str(settings.state_dir / "dagster")
        os.environ[ENV_DAGSTER_HOME] = home  # for Dagster itself, which reads it
    os.makedirs(home, exist_ok=True)
    config = os.path.join(home, "dagster.yaml")
    if not os.path.exists(config):
        with open(config, "w") as fh:
            fh.write(LOCAL_INSTANCE_YAML)
    return home


@dataclass(frozen=True)
class DayRun:
    """What running a day produced: the decision (as the CLI prints it) and the Dagster run id."""

    run_id: str
    success: bool
    result: dict
    failed_checks: tuple[str, ...]
    seconds: float


class RunFailed(RuntimeError):
    """The Dagster run failed for a reason other than a blocking check; ``kind`` is refused or infrastructure."""

    def __init__(self, message: str, run_id: str | None, kind: str = REFUSED):
        super().__init__(message)
        self.run_id = run_id
        self.kind = kind


def check_day(model: str, day: dt.date, engine, force: str | None = None) -> None:
    """Refuse, before anything reaches Dagster (so no partition is added), a day that cannot be run
    (``preflight``: a bad model name, an unusable log source, a database not migrated, no rollout, or unless
    forced an older day than the latest decided one), as a ``RunFailed``."""
    try:
        refuse_unrunnable_day(engine, model, day, forced=bool(force))
    except DayRefused as exc:
        raise RunFailed(str(exc), None) from None


def run_day(model: str, day: dt.date, *, force: str | None = None, reason: str | None = None,
            actor: str = "cli", dry_run: bool = False, instance: dg.DagsterInstance | None = None,
            log_level: str = "INFO") -> DayRun:
    """Materialize ``model``'s ``day`` (collect, validate, judge, decide) in this process.

    A forced decision runs the decision asset alone on the stored evidence (none
    needed), as the launchpad would. When the blocking log-quality check fails,
    the decision does not materialize: the day is decided as a hold naming the
    failed checks. A bad name or a model without a rollout adds no partition.
    A dry run is not a decision: it runs the day's analysis (not the ``decision``
    asset, whose partition keeps its decision) and computes what would be decided
    through the decision service, storing and applying nothing; a forced dry run
    runs nothing in Dagster.
    """
    started = time.perf_counter()
    engine = store_engine()
    try:
        with database_errors_as_run_failed():
            check_day(model, day, engine, force)
        if dry_run and force:
            output = _dry_decision(engine, model, day, actor, None, force=force, reason=reason)
            return DayRun("", True, output, (), time.perf_counter() - started)
        with _instance(instance) as instance:
            register_partitions(instance, [day.isoformat()], [model])
            job = job_now("daily_analysis")
            config = {"force": force, "reason": reason, "operator": None}
            run_config = {
                "execution": {"config": {"in_process": {}}},
                "loggers": {"console": {"config": {"log_level": log_level}}},
            }
            if not dry_run:
                run_config["ops"] = {"decision": {"config": config}}
            selection = [decision.key] if force else ([day_summary.key, judgement.key] if dry_run else None)
            result = job.execute_in_process(
                run_config=run_config,
                instance=instance,
                partition_key=partition_key(day, model),
                raise_on_error=False,
                asset_selection=selection,
                tags={ACTOR_TAG: actor, **({DRY_RUN_TAG: "true"} if dry_run else {})},
            )
            evaluations = check_evaluations(instance, result.run_id)
            if result.success and dry_run:
                output = _dry_decision(engine, model, day, actor, result.run_id)
            elif result.success:
                output = decision_of(result)
            else:
                output = _hold_for_failure(result, engine, model, day, actor, blocked(evaluations), dry_run)
            failed_checks = tuple(c.check_name for c in evaluations if not c.passed)
            return DayRun(result.run_id, result.success, output, failed_checks, time.perf_counter() - started)
    finally:
        engine.dispose()


def check_day_is_over(day: dt.date, today: dt.date | None = None) -> None:
    """Refuse today and future days: a day is analysed once it is over (UTC)."""
    problem = not_over(day, today)
    if problem:
        raise RunFailed(problem, None)


def decide_day(model: str, day: dt.date, force: str | None, reason: str | None, dry_run: bool,
               actor: str = "cli", log_level: str = "INFO") -> dict:
    """Run the day's assets in-process; the decision is stored and applied by the run itself (unless dry-run)."""
    check_day_is_over(day)
    run = run_day(model, day, force=force, reason=reason, actor=actor, dry_run=dry_run, log_level=log_level)
    out = dict(run.result)
    out.update({"model": model, "date": day.isoformat(), "run_id": run.run_id,
                "applied": bool(out.get("applied")) and not dry_run,
                "failed_checks": list(run.failed_checks), "seconds": round(run.seconds, 2)})
    return out


def _dry_decision(engine, model: str, day: dt.date, actor: str, run_id: str | None, *, force: str | None = None,
                  reason: str | None = None) -> dict:
    """What the decision service would decide on the day's stored analysis (of run ``run_id``); nothing kept."""
    with database_errors_as_run_failed():
        try:
            outcome = make_decision(engine, day_request(model, day, actor, run_id=run_id, force=force,
                                                        reason=reason, dry_run=True))
        except RolloutError as exc:
            raise RunFailed(str(exc), run_id) from None
    return outcome.output()


def job_now(name: str) -> dg.JobDefinition:
    """Job ``name`` of the code location bound to the resources of this invocation's environment (not the
    import's). Bound here rather than passed to ``execute_in_process``, which refuses resources that differ
    from the assets' own when a run selects a subset of them (a forced decision)."""
    return build_definitions(resources_from_environment()).resolve_job_def(name)


@contextlib.contextmanager
def _instance(instance: dg.DagsterInstance | None) -> Iterator[dg.DagsterInstance]:
    """The caller's instance, or the one of DAGSTER_HOME (default <state>/dagster), disposed afterwards."""
    ensure_dagster_home()
    if instance is not None:
        yield instance
        return
    instance = dg.DagsterInstance.get()
    try:
        yield instance
    finally:
        instance.dispose()


def decision_of(result: dg.ExecuteInProcessResult) -> dict:
    """The decision a successful run made, from the ``decision`` materialization's metadata."""
    (materialization,) = result.asset_materializations_for_node("decision")
    return dict(materialization.metadata["decision"].value)


@contextlib.contextmanager
def database_errors_as_run_failed() -> Iterator[None]:
    try:
        yield
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise RunFailed(f"cannot connect to the database: {first_line(exc)}", None, INFRASTRUCTURE) from None


def _hold_for_failure(result, engine, model, day, actor, blocked_checks, dry_run) -> dict:
    """When a blocking check stopped the run, decide the hold; else raise RunFailed with the step's one line."""
    if blocked_checks:
        with database_errors_as_run_failed():
            try:
                return hold_blocked_day(engine, model, day, result.run_id, actor=actor, dry_run=dry_run).output()
            except RolloutError as exc:
                raise RunFailed(str(exc), result.run_id) from None
    message, kind = step_failure(result)
    raise RunFailed(message, result.run_id, kind)


def step_failure(result) -> tuple[str, str]:
    """The one line that says why the run failed, and whether it was refused or the infrastructure failed."""
    failure = next((e for e in result.all_events if e.event_type_value == "STEP_FAILURE"), None)
    if failure is None:
        return "the run failed", INFRASTRUCTURE
    data = failure.step_failure_data
    user = data.user_failure_data
    if user is not None and user.description:
        kind = user.metadata.get("kind") if user.metadata else None
        return user.description.strip().splitlines()[0], (kind.value if kind is not None else REFUSED)
    error = data.error
    chain = []
    while error is not None:
        chain.append(error)
        error = error.cause
    root = chain[-1] if chain else None
    line = root.message.strip().splitlines()[0] if root and root.message.strip() else "the run failed"
    if any(e.cls_name in ("OperationalError", "InterfaceError") for e in chain):
        return f"cannot connect to the database: {line.split(': ', 1)[-1]}", INFRASTRUCTURE
    return line, INFRASTRUCTURE


@dataclass(frozen=True)
class RetentionRun:
    """A retention run: its id, whether it succeeded, and if not, why (one line) and whether it was refused
    (a misconfigured action: ``refused``) or the infrastructure failed (the action's system, the database)."""

    run_id: str
    success: bool
    failure: str | None = None
    kind: str | None = None


def run_retention(day: dt.date, *, actor: str = "cli", instance: dg.DagsterInstance | None = None,
                  log_level: str = "INFO") -> RetentionRun:
    """Run the retention job for ``day`` in this process."""
    with _instance(instance) as instance:
        result = job_now("retention").execute_in_process(
            run_config={"ops": {"retire_inactive_variants": {"config": {"date": day.isoformat()}}},
                        "loggers": {"console": {"config": {"log_level": log_level}}}},
            instance=instance, raise_on_error=False, tags={ACTOR_TAG: actor},
        )
        if result.success:
            return RetentionRun(result.run_id, True)
        return RetentionRun(result.run_id, False, *step_failure(result))


def register_model(model: str) -> None:
    """Add ``model`` to the Dagster instance's partitions, so the UI offers its days before its first night."""
    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        register_partitions(instance, [], [model])


@dataclass(frozen=True)
class RetentionReport:
    """A retention run as ``teardown --json`` prints it; if it failed, why (one line) and whether the
    infrastructure failed (the action's system, the database: exit 3) or it was refused (exit 1)."""

    out: dict
    success: bool
    failure: str | None = None
    infrastructure: bool = False


def retention(day: dt.date, *, log_level: str = "INFO") -> RetentionReport:
    """Run the retention job for ``day`` in-process; what it tore down, what failed and what it kept."""
    load_settings()  # a bad setting is refused in one line before the run
    started = time.perf_counter()
    run = run_retention(day, log_level=log_level)
    engine = open_engine()
    try:
        out = retention_report(engine, day, run.run_id, run.success, started)
    finally:
        engine.dispose()
    if run.success:
        return RetentionReport(out, True)
    return RetentionReport(out, False, retention_failure(out, run.failure), run.kind == INFRASTRUCTURE)
