"""The retention job: tear down variants inactive for longer than their rollout's retention window."""


import datetime as dt

import dagster as dg

from rollout_pipeline.actions import run_teardown_action
from rollout_pipeline.config import load_settings
from rollout_pipeline.defs.assets import ACTOR_TAG
from rollout_pipeline.defs.resources import StoreResource
from rollout_pipeline.store import teardown as teardowns
from rollout_pipeline.store.partitions import drop_day_partitions_before
from rollout_pipeline.store.routing import ConcurrentUpdate


class TeardownConfig(dg.Config):
    """The day to apply the retention rules for (YYYY-MM-DD; default: today, UTC)."""

    date: str | None = None


def _day(value: str | None) -> dt.date:
    if not value:
        return dt.datetime.now(dt.UTC).date()
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise dg.Failure(f"date {value!r} is not YYYY-MM-DD", allow_retries=False) from None


@dg.op(retry_policy=dg.RetryPolicy(max_retries=2, delay=5), tags={"kind": "sql"})
def retire_inactive_variants(context: dg.OpExecutionContext, config: TeardownConfig, store: StoreResource) -> dict:
    """Run the teardown action for each variant past its window, then retire it in the routing.

    A variant whose action fails stays inactive (still deployable); the failure
    is recorded and the run fails after the other variants were handled.
    """
    day = _day(config.date)
    settings = load_settings()
    actor = context.run.tags.get(ACTOR_TAG) or "schedule"
    engine = store.engine
    with engine.connect() as conn:
        verdicts = teardowns.verdicts(conn, day)
    torn, failed, kept = [], [], []
    for model, verdict in verdicts:
        if not verdict.due:
            kept.append(verdict.as_dict(model))
            continue
        context.log.info("%s/%s: %s; running the teardown action", model, verdict.variant, verdict.reason)
        result = run_teardown_action(model, verdict.variant, day, command=settings.teardown_command,
                                     webhook=settings.teardown_webhook, attempts=settings.teardown_attempts)
        for _ in range(3):
            try:
                with engine.begin() as conn:
                    if result.ok:
                        record = teardowns.retire(conn, model, verdict.variant, day, actor=actor, action=result.action,
                                              detail=result.detail, attempts=result.attempts,
                                              run_id=context.run.run_id, reason=verdict.reason)
                    else:
                        record = teardowns.record_failure(conn, model, verdict.variant, day, verdict.inactive_since,
                                                      actor=actor, action=result.action, detail=result.detail,
                                                      attempts=result.attempts, run_id=context.run.run_id)
                break
            except ConcurrentUpdate:
                context.log.warning("%s: routing changed while retiring %s; reading it again", model, verdict.variant)
        else:
            raise dg.Failure(f"{model}: routing kept changing while retiring {verdict.variant}")
        if record is None:
            continue  # someone brought it back (e.g. a rollback) meanwhile: nothing to retire
        (torn if result.ok else failed).append(record.as_dict())
        context.log.log(20 if result.ok else 40, "%s/%s: teardown %s (%s)", model, verdict.variant,
                        record.status, record.detail)
    pruned = []
    if settings.log_retention_days:
        cutoff = day - dt.timedelta(days=settings.log_retention_days)
        pruned = drop_day_partitions_before(engine, cutoff)
    context.add_output_metadata({
        "date": day.isoformat(),
        "torn_down": len(torn),
        "failed": len(failed),
        "kept": len(kept),
        "details": dg.MetadataValue.md(_table(torn, failed, kept)),
        "log_partitions_dropped": len(pruned),
    })
    result = {"date": day.isoformat(), "torn_down": torn, "failed": failed, "kept": kept,
              "log_partitions_dropped": pruned}
    if failed:
        names = ", ".join(f"{f['model']}/{f['variant']}" for f in failed)
        raise dg.Failure(f"teardown failed for {names}: they stay inactive; see the teardowns table",
                         metadata={"failed": dg.MetadataValue.json(failed)}, allow_retries=False)
    return result


def _table(torn, failed, kept) -> str:
    lines = ["| model | variant | outcome | detail |", "|---|---|---|---|"]
    lines += [f"| {t['model']} | {t['variant']} | torn down | {t['detail']} |" for t in torn]
    lines += [f"| {f['model']} | {f['variant']} | **failed** | {f['detail']} |" for f in failed]
    lines += [f"| {k['model']} | {k['variant']} | kept | {k['reason']} |" for k in kept]
    return "\n".join(line.replace("\n", " ") for line in lines)


@dg.job(description="Tear down variants inactive for longer than their retention window; prune old log partitions.")
def retention():
    retire_inactive_variants()


@dg.schedule(job=retention, cron_schedule="0 3 * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.RUNNING)
def nightly_retention(context: dg.ScheduleEvaluationContext):
    """At 03:00 UTC, apply the retention rules for that day."""
    day = context.scheduled_execution_time.astimezone(dt.UTC).date().isoformat()
    return dg.RunRequest(run_key=f"retention-{day}", tags={ACTOR_TAG: "schedule"},
                         run_config={"ops": {"retire_inactive_variants": {"config": {"date": day}}}})
