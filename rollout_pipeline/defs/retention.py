"""The retention job: tear down variants inactive for longer than their rollout's retention window.

One retry layer per concern: a transient database error fails the step and the
op's ``RetryPolicy`` runs it again (a database that refuses us, or a bad URL,
fails at once in one line: ``defs/failures.py``); a routing changed under us
while retiring one variant is re-read for that variant only; the teardown action
retries its own transient failures (``TeardownAction.run``). A failed or
misconfigured action is never retried by the op: it is recorded and the run fails
in one line. Re-running the step after a database error may run an action again for
a variant that is still inactive, so actions must be idempotent (scaling to zero is).
"""


import datetime as dt

import dagster as dg

from rollout_pipeline.defs.failures import DATABASE_RETRY, INFRASTRUCTURE, config_day, database_errors, refuse
from rollout_pipeline.defs.resources import Notifier, StoreResource, TeardownAction
from rollout_pipeline.defs.tags import ACTOR_TAG
from rollout_pipeline.notify import teardown_message
from rollout_pipeline.review.render import Table, md_table
from rollout_pipeline.store import teardown as teardowns
from rollout_pipeline.store.engine import DatabaseUrlError
from rollout_pipeline.store.partitions import drop_day_partitions_before
from rollout_pipeline.store.routing import ConcurrentUpdate

# A routing written by someone else between our read and our write: read it again, this many times.
CONCURRENT_ROUTING_TRIES = 3


class TeardownConfig(dg.Config):
    """The day to apply the retention rules for (YYYY-MM-DD; default: today, UTC)."""

    date: str | None = None


def _day(value: str | None) -> dt.date:
    return config_day("date", value) if value else dt.datetime.now(dt.UTC).date()


@dg.op(retry_policy=DATABASE_RETRY, tags={"kind": "sql"})
def retire_inactive_variants(context: dg.OpExecutionContext, config: TeardownConfig, store: StoreResource,
                             teardown_action: TeardownAction, notifier: Notifier) -> dict:
    """Run the teardown action for each variant past its window, then retire it in the routing.

    A variant whose action fails stays inactive (still deployable); the failure
    is recorded and the run fails after the other variants were handled. A
    configuration error of the action stops at the first variant: the others
    would fail the same way.
    """
    day = _day(config.date)
    if store.log_retention_days is not None and store.log_retention_days < 1:
        raise refuse(f"log retention must be a whole number of days >= 1 (got {store.log_retention_days})")
    try:
        engine = store.engine
    except DatabaseUrlError as exc:
        raise refuse(f"the store's database URL: {exc}") from None
    with database_errors():
        return _retire(context, day, engine, teardown_action, store.log_retention_days, notifier)


def notify_teardown(context, notifier: Notifier, record: dict) -> None:
    """Post one teardown (done or failed) to the configured webhooks; a failed post is logged, never raised."""
    if not notifier.configured:
        return
    links = {"run": notifier.links(record["model"], str(record.get("day") or ""), context.run.run_id)["run"]}
    notifier.announce(teardown_message(record, run_id=context.run.run_id, links_=links), context.log)


def _retire(context: dg.OpExecutionContext, day: dt.date, engine, action: TeardownAction,
            log_retention_days: int | None, notifier: Notifier) -> dict:
    actor = context.run.tags.get(ACTOR_TAG) or "schedule"
    with engine.connect() as conn:
        verdicts = teardowns.verdicts(conn, day)
    torn, failed, kept, config_error = [], [], [], None
    for model, verdict in verdicts:
        if not verdict.due:
            kept.append(verdict.as_dict(model))
            continue
        if config_error:
            continue
        context.log.info("%s/%s: %s; running the teardown action (%s)", model, verdict.variant, verdict.reason,
                         action.describe())
        result = action.run(model, verdict.variant, day)
        record = _store_outcome(context, engine, model, verdict, day, actor, result)
        if record is None:
            continue  # someone brought it back (e.g. a rollback) meanwhile: nothing to retire
        (torn if result.ok else failed).append(record.as_dict())
        notify_teardown(context, notifier, record.as_dict())
        context.log.log(20 if result.ok else 40, "%s/%s: teardown %s (%s)", model, verdict.variant,
                        record.status, record.detail)
        if result.config_error:
            config_error = result.detail
    pruned = []
    if log_retention_days:
        cutoff = day - dt.timedelta(days=log_retention_days)
        pruned = drop_day_partitions_before(engine, cutoff)
    context.add_output_metadata({
        "date": day.isoformat(),
        "action": action.describe(),
        "torn_down": len(torn),
        "failed": len(failed),
        "kept": len(kept),
        "details": dg.MetadataValue.md(md_table(_table(torn, failed, kept))),
        "log_partitions_dropped": len(pruned),
    })
    if config_error:
        raise refuse(f"teardown action: {config_error}; nothing else was attempted, the variants stay inactive")
    if failed:
        # The action's own system failed (unreachable, HTTP 5xx, a non-zero exit) after its retries: an
        # infrastructure failure (CLI exit 3), not a refusal; not retried again by the step or the run.
        names = ", ".join(f"{f['model']}/{f['variant']}" for f in failed)
        raise dg.Failure(description=f"teardown failed for {names}: they stay inactive; see the teardowns table",
                         allow_retries=False, metadata={"kind": INFRASTRUCTURE})
    return {"date": day.isoformat(), "torn_down": torn, "failed": failed, "kept": kept,
            "log_partitions_dropped": pruned}


def _store_outcome(context, engine, model, verdict, day, actor, result):
    """Retire the variant (or record the failure) in one transaction, re-reading a routing that changed meanwhile."""
    for _ in range(CONCURRENT_ROUTING_TRIES):
        try:
            with engine.begin() as conn:
                if result.ok:
                    return teardowns.retire(conn, model, verdict.variant, day, actor=actor, action=result.action,
                                            detail=result.detail, attempts=result.attempts,
                                            run_id=context.run.run_id, reason=verdict.reason)
                return teardowns.record_failure(conn, model, verdict.variant, day, verdict.inactive_since,
                                                actor=actor, action=result.action, detail=result.detail,
                                                attempts=result.attempts, run_id=context.run.run_id)
        except ConcurrentUpdate:
            context.log.warning("%s: routing changed while retiring %s; reading it again", model, verdict.variant)
    raise refuse(f"{model}: routing kept changing while retiring {verdict.variant}")


def _table(torn, failed, kept) -> Table:
    rows = [(t["model"], t["variant"], "torn down", t["detail"]) for t in torn]
    rows += [(f["model"], f["variant"], "**failed**", f["detail"]) for f in failed]
    rows += [(k["model"], k["variant"], "kept", k["reason"]) for k in kept]
    return Table(("model", "variant", "outcome", "detail"), tuple(rows))


# Dagster's run retries (dagster.yaml) would run a failed action again: they are left to crashes of
# the run worker; a failed step has had its own retries (transient database errors, the action's).
@dg.job(description="Tear down variants inactive for longer than their retention window; prune old log partitions.",
        tags={"dagster/retry_on_asset_or_op_failure": "false"})
def retention():
    retire_inactive_variants()


@dg.schedule(job=retention, cron_schedule="0 3 * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.RUNNING)
def nightly_retention(context: dg.ScheduleEvaluationContext):
    """At 03:00 UTC, apply the retention rules for that day."""
    day = context.scheduled_execution_time.astimezone(dt.UTC).date().isoformat()
    return dg.RunRequest(run_key=f"retention-{day}", tags={ACTOR_TAG: "schedule"},
                         run_config={"ops": {"retire_inactive_variants": {"config": {"date": day}}}})
