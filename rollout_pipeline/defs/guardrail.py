"""The intraday guardrail: every hour, the critical counts of the day so far; a clear regression rolls back at once.

Thin wiring around the service's reading of the day so far (``rollout_pipeline.guardrail``, over
``domain.guardrail``'s anytime-valid sequential tests, so looking
every hour keeps its false-alarm guarantee) and the one decision service (actor
``guardrail``, source ``guardrail``). It acts only on candidates that serve traffic
(canary, and the watch after promotion), only for today (the day under way), and
only by rolling back: it never promotes, and the night's analysis of the completed
day keeps its decision.
"""

import datetime as dt

import dagster as dg

from rollout_pipeline.decision_requests import GUARDRAIL_ACTOR, Guardrail
from rollout_pipeline.decisions import make_decision
from rollout_pipeline.defs.failures import DATABASE_RETRY, database_errors, refuse
from rollout_pipeline.defs.resources import Notifier, StoreResource
from rollout_pipeline.defs.tags import ACTOR_TAG
from rollout_pipeline.guardrail import watched_days
from rollout_pipeline.store import rollouts as repo


class GuardrailConfig(dg.Config):
    """The moment the day so far ends (ISO 8601, UTC; default: now)."""

    at: str | None = None


def _moment(value: str | None) -> dt.datetime:
    if not value:
        return dt.datetime.now(dt.UTC)
    try:
        at = dt.datetime.fromisoformat(value)
    except ValueError:
        raise refuse(f"at {value!r} is not an ISO 8601 time") from None
    return at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)


@dg.op(retry_policy=DATABASE_RETRY, tags={"kind": "sql"})
def intraday_guardrail(context: dg.OpExecutionContext, config: GuardrailConfig, store: StoreResource,
                       notifier: Notifier) -> list[dict]:
    """Test each serving candidate's day so far; roll back those whose errors, broken answers or slow requests
    are a clear regression at any-time-valid confidence."""
    at = _moment(config.at)
    today = at.date()
    out = []
    with database_errors():
        with store.engine.connect() as conn:
            watched = watched_days(conn, at)
    for day_so_far in watched:
        rollout, state = day_so_far.rollout, day_so_far.state
        model, result = rollout.model_name, day_so_far.test()
        row = {"model": model, "stage": f"{state.stage} {state.canary_percent}%", "alarms": list(result.alarms),
               "tests": [t.reason for t in result.tests], "action": "none"}
        if result.alarms:
            request = Guardrail(model, today, tuple(result.alarms), run_id=context.run.run_id)
            with database_errors():
                try:
                    outcome = make_decision(store.engine, request)
                except repo.RolloutError as exc:
                    context.log.warning("%s: the guardrail could not roll back: %s", model, exc)
                    row["action"] = f"refused: {exc}"
                    out.append(row)
                    continue
            row["action"] = outcome.record.action
            row["decision_id"] = outcome.record.id
            row["applied"] = outcome.applied
            context.log.warning("%s rolled back by the guardrail at %s: %s", model, at.isoformat(timespec="minutes"),
                                "; ".join(result.alarms))
            row["notifications"] = notifier.announce_decision(outcome.output(), model=model, day=today.isoformat(),
                                                              actor=GUARDRAIL_ACTOR, run_id=context.run.run_id,
                                                              log=context.log)
        else:
            context.log.info("%s (%s): no alarm in the day so far", model, row["stage"])
        out.append(row)
    context.add_output_metadata({
        "at": at.isoformat(timespec="minutes"),
        "watched": len(watched),
        "rolled_back": dg.MetadataValue.json([r["model"] for r in out if r["action"] == "rollback"]),
        "results": dg.MetadataValue.json(out),
    })
    return out


@dg.job(description="The intraday guardrail: the day so far of every serving candidate; rollback on a clear regression.",
        tags={ACTOR_TAG: GUARDRAIL_ACTOR})
def guardrail():
    intraday_guardrail()


@dg.schedule(job=guardrail, cron_schedule="15 * * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.RUNNING,
             description="Every hour (at :15): the guardrail on the day so far. Turn it off in the UI, or per rollout "
                         "with the policy's `guardrail: false`.")
def hourly_guardrail(context: dg.ScheduleEvaluationContext):
    at = context.scheduled_execution_time.astimezone(dt.UTC)
    return dg.RunRequest(run_key=f"guardrail-{at.isoformat(timespec='minutes')}",
                         run_config={"ops": {"intraday_guardrail": {"config": {"at": at.isoformat()}}}})
