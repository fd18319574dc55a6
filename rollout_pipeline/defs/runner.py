"""Run a model's day in-process with the same definitions the schedule uses (the CLI's path)."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg

from rollout_pipeline.config import load_settings

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
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        home = str(load_settings().state_dir / "dagster")
        os.environ["DAGSTER_HOME"] = home
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


def run_day(model: str, day: dt.date, *, force: str | None = None, reason: str | None = None,
            actor: str = "cli", dry_run: bool = False, instance: dg.DagsterInstance | None = None) -> DayRun:
    """Materialize ``model``'s ``day`` (collect, validate, judge, decide) in this process.

    A forced decision runs the decision asset alone on the stored judgement, as
    the launchpad would. When the blocking log-quality check fails, the decision
    does not materialize: the day is recorded as a hold naming the failed checks.
    """
    from rollout_pipeline.definitions import defs
    from rollout_pipeline.defs.assets import ACTOR_TAG, decision
    from rollout_pipeline.defs.checks import check_evaluations
    from rollout_pipeline.defs.partitions import MODELS, partition_key

    started = time.perf_counter()
    with _instance(instance) as instance:
        instance.add_dynamic_partitions(MODELS.name, [model])
        job = defs.resolve_job_def("daily_analysis")
        config = {"force": force, "reason": reason, "dry_run": dry_run, "operator": None}
        run_config = {
            "ops": {"decision": {"config": config}},
            "execution": {"config": {"in_process": {}}},
            "loggers": CONSOLE_INFO,
        }
        result = job.execute_in_process(
            run_config=run_config,
            instance=instance,
            partition_key=partition_key(day.isoformat(), model),
            raise_on_error=False,
            asset_selection=[decision.key] if force else None,
            tags={ACTOR_TAG: actor},
        )
        failed = [c for c in check_evaluations(instance, result.run_id) if not c.passed]
        if result.success:
            output = result.output_for_node("decision")
        else:
            output = _hold_for_failure(result, model, day, actor, failed, dry_run)
        failed_checks = tuple(c.check_name for c in failed)
        return DayRun(result.run_id, result.success, output, failed_checks, time.perf_counter() - started)


# Step events are DEBUG; the CLI shows Dagster's INFO and up, and our own progress lines.
CONSOLE_INFO = {"console": {"config": {"log_level": "INFO"}}}


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


def _hold_for_failure(result, model, day, actor, failed_checks, dry_run) -> dict:
    """When a blocking check stopped the run, record the policy's hold naming the failures; else raise RunFailed."""
    from rollout_pipeline.defs.holds import blocking_failures, record_blocked_hold
    from rollout_pipeline.defs.resources import StoreResource

    failures = blocking_failures(failed_checks)
    if not failures:
        failure = next((e for e in result.all_events if e.event_type_value == "STEP_FAILURE"), None)
        error = failure.step_failure_data.error if failure else None
        raise RunFailed(error.message.strip() if error else "the run failed", result.run_id)
    engine = StoreResource().engine
    try:
        return record_blocked_hold(engine, model, day, result.run_id, failures, actor=actor, dry_run=dry_run)
    finally:
        engine.dispose()


class RunFailed(RuntimeError):
    """The Dagster run failed for a reason other than a blocking check."""

    def __init__(self, message: str, run_id: str):
        super().__init__(message)
        self.run_id = run_id


def run_retention(day: dt.date, *, actor: str = "cli", instance: dg.DagsterInstance | None = None) -> tuple[str, bool]:
    """Run the retention job for ``day`` in this process; returns (run id, success)."""
    from rollout_pipeline.definitions import defs
    from rollout_pipeline.defs.assets import ACTOR_TAG

    with _instance(instance) as instance:
        result = defs.resolve_job_def("retention").execute_in_process(
            run_config={"ops": {"retire_inactive_variants": {"config": {"date": day.isoformat()}}},
                        "loggers": CONSOLE_INFO},
            instance=instance, raise_on_error=False, tags={ACTOR_TAG: actor})
        return result.run_id, result.success
