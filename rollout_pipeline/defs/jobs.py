"""Jobs and the nightly schedule."""


import datetime as dt

import dagster as dg

from rollout_pipeline.defs.assets import day_summary, decision, judgement
from rollout_pipeline.defs.checks import CHECKS
from rollout_pipeline.defs.night import NO_RETRY_ON_STEP_FAILURE, RANGE_END_TAG, RANGE_START_TAG, partition_ranges
from rollout_pipeline.defs.partitions import MODELS, partition_key, register_partitions
from rollout_pipeline.defs.resources import StoreResource
from rollout_pipeline.defs.tags import ACTOR_TAG
from rollout_pipeline.store.rollouts import active_models, watched_models

IN_PROCESS = {"execution": {"config": {"in_process": {}}}}

daily_analysis_job = dg.define_asset_job(
    "daily_analysis",
    selection=dg.AssetSelection.assets(day_summary, judgement, decision),
    description="Collect, validate, judge and decide one model's day.",
    # One process: each step would otherwise re-import Great Expectations (~20 s more per run).
    config=IN_PROCESS,
)


@dg.schedule(job=daily_analysis_job, cron_schedule="0 2 * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.RUNNING)
def nightly_analysis(context: dg.ScheduleEvaluationContext, store: StoreResource):
    """At 02:00 UTC, analyse yesterday for every active rollout, and every promoted model the old one still shadows.

    One run for the night's partitions (a range of the models dimension, the assets iterating it: defs/night.py),
    not one per model: each run in its own process pays the interpreter, the imports and Great Expectations again
    (docs/performance.md, "A night of the fleet"). Models the night skips (no active rollout) split the range; a
    range of one model is an ordinary run of one partition.
    """
    day = (context.scheduled_execution_time.astimezone(dt.UTC) - dt.timedelta(days=1)).date().isoformat()
    with store.engine.connect() as conn:
        models = sorted(set(active_models(conn)) | set(watched_models(conn)))
    if not models:
        return dg.SkipReason("no active rollout")
    # Both dimensions are dynamic: the day and the models are added as the schedule asks for them.
    register_partitions(context.instance, [day], models)
    order = context.instance.get_dynamic_partitions(MODELS.name)
    requests = []
    for first, last in partition_ranges(order, models):
        if first == last:
            requests.append(dg.RunRequest(run_key=f"{day}|{first}", partition_key=partition_key(day, first),
                                          tags={ACTOR_TAG: "schedule"}))
            continue
        start, end = partition_key(day, first), partition_key(day, last)
        requests.append(dg.RunRequest(run_key=f"{start}..{end}", tags={
            ACTOR_TAG: "schedule", RANGE_START_TAG: str(start), RANGE_END_TAG: str(end), **NO_RETRY_ON_STEP_FAILURE}))
    return requests


JOBS = [daily_analysis_job]
SCHEDULES = [nightly_analysis]
ASSETS = [day_summary, judgement, decision]
ALL_CHECKS = CHECKS
