"""Jobs and the nightly schedule."""


import datetime as dt

import dagster as dg

from rollout_pipeline.defs.assets import day_summary, decision, judgement
from rollout_pipeline.defs.checks import CHECKS
from rollout_pipeline.defs.partitions import partition_key, register_partitions
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
    """At 02:00 UTC, analyse yesterday for every active rollout, and every promoted model the old one still shadows."""
    day = (context.scheduled_execution_time.astimezone(dt.UTC) - dt.timedelta(days=1)).date().isoformat()
    with store.engine.connect() as conn:
        models = sorted(set(active_models(conn)) | set(watched_models(conn)))
    if not models:
        return dg.SkipReason("no active rollout")
    # Both dimensions are dynamic: the day and the models are added as the schedule asks for them.
    register_partitions(context.instance, [day], models)
    return [
        dg.RunRequest(run_key=f"{day}|{m}", partition_key=partition_key(day, m), tags={ACTOR_TAG: "schedule"})
        for m in models
    ]


JOBS = [daily_analysis_job]
SCHEDULES = [nightly_analysis]
ASSETS = [day_summary, judgement, decision]
ALL_CHECKS = CHECKS
