"""The ``force_decision`` job: force any past day's decision from the Dagster UI, analysed or not.

The launchpad of the ``decision`` asset offers only partitions Dagster has seen (both dimensions are dynamic,
and its "Add partition" does not add a date x model key), so a day never analysed could be forced only from the
CLI. This job takes the day and the model as typed run config instead: the launchpad checks it before launch
(the action is one of promote, hold, rollback; a missing reason is refused there), and a refusal at run time
(an unknown model, a day not over, a blank reason) fails once, without a retry. It adds the partition, decides
through the decision service (as ``decide --force`` does) and records the decision as that partition's
materialization of the ``decision`` asset, with the same metadata, report and notification.
"""

import getpass
from typing import Literal

import dagster as dg
from pydantic import Field

from rollout_pipeline.decision_requests import Force
from rollout_pipeline.decisions import make_decision
from rollout_pipeline.defs.assets import decision, decision_metadata
from rollout_pipeline.defs.failures import DATABASE_RETRY, config_day, database_errors, refuse
from rollout_pipeline.defs.night import NO_RETRY_ON_STEP_FAILURE
from rollout_pipeline.defs.partitions import partition_key, register_partitions
from rollout_pipeline.defs.resources import Notifier, StoreResource
from rollout_pipeline.defs.tags import ACTION_TAG, ACTOR_TAG
from rollout_pipeline.domain.days import not_over
from rollout_pipeline.domain.routing import InvalidName, validate_name
from rollout_pipeline.store import rollouts as repo


class ForceConfig(dg.Config):
    """Which day of which model, the action, and why (all but the operator required: checked before launch)."""

    model: str = Field(description="The model (it must have a rollout).")
    date: str = Field(description="The UTC day to decide, YYYY-MM-DD (a day that is over).")
    action: Literal["promote", "hold", "rollback"] = Field(description="The decision to force.")
    reason: str = Field(description="Why (kept in the audit trail; required).")
    operator: str | None = Field(default=None, description="Who forces it (default: the run's actor, else the "
                                                           "OS user of the process).")


# A transient database error is retried as on every step; a refusal (dg.Failure without retries) never is.
@dg.op(tags={"kind": "sql"}, retry_policy=DATABASE_RETRY)
def force_day(context: dg.OpExecutionContext, config: ForceConfig, store: StoreResource, notifier: Notifier):
    """Decide ``config``'s day as forced, store and apply it, and materialize that partition of ``decision``."""
    try:
        validate_name("model", config.model)
    except InvalidName as exc:
        raise refuse(str(exc)) from None
    day = config_day("date", config.date)
    if problem := not_over(day):
        raise refuse(problem)
    if not config.reason.strip():
        raise refuse(f"forcing {config.action!r} needs a reason (it is kept in the audit trail)")
    actor = (config.operator or "").strip() or context.run.tags.get(ACTOR_TAG) or getpass.getuser()
    with database_errors():
        with store.engine.connect() as conn:
            if repo.latest_rollout(conn, config.model) is None:
                raise refuse(f"{config.model} has no rollout: start one with `rollout-pipeline rollout start`")
        try:
            outcome = make_decision(store.engine, Force(config.model, day, actor, config.action, config.reason,
                                                        run_id=context.run.run_id))
        except repo.RolloutError as exc:
            raise refuse(str(exc)) from None
    register_partitions(context.instance, [day.isoformat()], [config.model])
    metadata = decision_metadata(outcome, notifier, config.model, day, actor, context.run.run_id, context.log)
    context.instance.add_run_tags(context.run.run_id, {ACTION_TAG: outcome.record.action})
    yield dg.AssetMaterialization(asset_key=decision.key, partition=str(partition_key(day, config.model)),
                                  metadata=metadata)
    yield dg.Output(outcome.output())


@dg.job(description="Force the decision of any past day of a model, analysed or not (run config: model, date, "
                    "action, reason, operator). Checked before launch; a refusal is not retried.",
        tags={"kind": "decision", **NO_RETRY_ON_STEP_FAILURE})
def force_decision():
    force_day()
