"""A day whose blocking log-quality check failed is held, and the hold is recorded.

The blocking check stops the decision asset inside the run, so the hold is
written after the run: synchronously by the CLI (``runner.run_day``) and, for
runs launched by the schedule or the UI, by a run-failure sensor. Both call
``record_blocked_hold``, which is idempotent per run.
"""


import datetime as dt
from collections.abc import Sequence

import dagster as dg
import sqlalchemy as sa

from rollout_pipeline.defs.assets import ACTOR_TAG, decision_output
from rollout_pipeline.defs.checks import check_evaluations, failure_lines
from rollout_pipeline.defs.jobs import daily_analysis_job
from rollout_pipeline.defs.resources import StoreResource
from rollout_pipeline.domain.decide import Evidence, decide
from rollout_pipeline.store import rollouts as repo


def blocking_failures(evaluations: Sequence) -> list[str]:
    """The failure lines of the failed blocking (ERROR) check evaluations; empty if none blocked."""
    failures = []
    for check in evaluations:
        if not check.passed and check.severity.value == "ERROR":
            failures.extend(failure_lines(check) or [f"{check.check_name}: failed"])
    return failures


def record_blocked_hold(engine: sa.Engine, model: str, day: dt.date, run_id: str, failures: Sequence[str], *,
                        actor: str, dry_run: bool = False) -> dict:
    """Record the policy's hold for a day whose logs failed the blocking checks (once per run)."""
    with engine.begin() as conn:
        rollout = repo.active_rollout(conn, model) or repo.latest_rollout(conn, model)
        existing = repo.live_decision(conn, model, day)
        if existing is not None and existing.metrics.get("blocked_run") == run_id:
            return decision_output(existing, False)
        state = repo.state_before(conn, rollout, day)
        held = decide(state, Evidence(list(failures), 0, (), None), rollout.policy)
        record = repo.record_decision(conn, rollout, day, held, actor=actor,
                                      metrics={"data_quality_failures": list(failures), "blocked_run": run_id},
                                      run_id=run_id)
        if dry_run:
            conn.rollback()
    return decision_output(record, dry_run)


@dg.run_failure_sensor(monitored_jobs=[daily_analysis_job], default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=30,
                       description="Records the hold of a day whose blocking log-quality check failed.")
def blocked_day_hold(context: dg.RunFailureSensorContext, store: StoreResource):
    run = context.dagster_run
    if run.tags.get("dagster/partition/date") is None:
        return dg.SkipReason(f"run {run.run_id} is not a daily analysis")
    config = (run.run_config or {}).get("ops", {}).get("decision", {}).get("config", {}) or {}
    if config.get("dry_run"):
        return dg.SkipReason("a dry run records nothing")
    failures = blocking_failures(check_evaluations(context.instance, run.run_id))
    if not failures:
        return dg.SkipReason(f"run {run.run_id} failed for another reason than its blocking checks")
    day = dt.date.fromisoformat(run.tags["dagster/partition/date"])
    model = run.tags["dagster/partition/model"]
    out = record_blocked_hold(store.engine, model, day, run.run_id, failures,
                              actor=run.tags.get(ACTOR_TAG) or "schedule")
    context.log.info("%s %s held: %s", model, day, "; ".join(out["reasons"]))
    return None
