"""A day whose blocking log-quality check failed is held, and the hold is recorded.

The blocking check stops the decision asset inside the run, so the hold is
decided after the run, through the same decision service as every decision:
synchronously by the CLI (``runner.run_day``) and, for runs launched by the
schedule or the UI, by a run-failure sensor. The service reads the failed
suite's stored result, records the hold once per run and announces it
(``decisions.hold_blocked_day``).
"""


import dagster as dg

from rollout_pipeline.decisions import hold_blocked_day
from rollout_pipeline.defs.checks import blocked, check_evaluations
from rollout_pipeline.defs.jobs import daily_analysis_job
from rollout_pipeline.defs.partitions import partition_from_tags
from rollout_pipeline.defs.resources import Notifier, StoreResource
from rollout_pipeline.defs.tags import ACTOR_TAG, DRY_RUN_TAG


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
    outcome = hold_blocked_day(store.engine, model, day, run.run_id, actor=actor, notifier=notifier,
                               logger=context.log)
    context.log.info("%s %s held (%s failed): %s", model, day, ", ".join(failed), "; ".join(outcome.record.reasons))
    return None
