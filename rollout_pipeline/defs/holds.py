"""A day whose blocking log-quality check failed is held, and the hold is recorded.

The blocking check stops the decision asset inside the run, so the hold is
decided after the run, through the same decision service as every decision:
synchronously by the CLI (``runner.run_day``) and, for runs launched by the
schedule or the UI, by a run-failure sensor. The service reads the failed
suite's stored result, and records the hold once per run.
"""


import datetime as dt

import dagster as dg
import sqlalchemy as sa

from rollout_pipeline.decision_requests import BlockedDay
from rollout_pipeline.decisions import make_decision
from rollout_pipeline.defs.checks import blocked, check_evaluations
from rollout_pipeline.defs.jobs import daily_analysis_job
from rollout_pipeline.defs.partitions import partition_from_tags
from rollout_pipeline.defs.resources import Notifier, StoreResource
from rollout_pipeline.defs.tags import ACTOR_TAG, DRY_RUN_TAG


def record_blocked_hold(engine: sa.Engine, model: str, day: dt.date, run_id: str, *, actor: str,
                        dry_run: bool = False) -> dict:
    """Decide (hold) and apply a day whose logs failed the blocking checks of run ``run_id`` (once per run)."""
    request = BlockedDay(model, day, actor, run_id, dry_run=dry_run)
    return make_decision(engine, request).output()


@dg.run_failure_sensor(monitored_jobs=[daily_analysis_job], default_status=dg.DefaultSensorStatus.RUNNING,
                       minimum_interval_seconds=30,
                       description="Records the hold of a day whose blocking log-quality check failed.")
def blocked_day_hold(context: dg.RunFailureSensorContext, store: StoreResource, notifier: Notifier):
    run = context.dagster_run
    partition = partition_from_tags(run.tags)
    if partition is None:
        return dg.SkipReason(f"run {run.run_id} is not a daily analysis")
    if run.tags.get(DRY_RUN_TAG) == "true":
        return dg.SkipReason("a dry run records nothing")
    failed = blocked(check_evaluations(context.instance, run.run_id))
    if not failed:
        return dg.SkipReason(f"run {run.run_id} failed for another reason than its blocking checks")
    day, model = partition
    actor = run.tags.get(ACTOR_TAG) or "schedule"
    out = record_blocked_hold(store.engine, model, day, run.run_id, actor=actor)
    context.log.info("%s %s held (%s failed): %s", model, day, ", ".join(failed), "; ".join(out["reasons"]))
    notifier.announce_decision(out, model=model, day=day.isoformat(), actor=actor, run_id=run.run_id, log=context.log)
    return None
