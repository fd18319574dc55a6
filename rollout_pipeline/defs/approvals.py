"""The ``approve_decision`` job: a person's verdict on a promotion waiting for approval, from the Dagster UI.

Thin wiring around the decision service (``rollout_pipeline.decisions``, source
``approval``): the same path ``rollout-pipeline approve`` and ``reject`` take, in
one transaction, audited with the operator and the reason.
"""

import getpass
from typing import Literal

import dagster as dg

from rollout_pipeline.decision_requests import Approval
from rollout_pipeline.decisions import make_approval
from rollout_pipeline.defs.failures import DATABASE_RETRY, config_day, database_errors, refuse
from rollout_pipeline.defs.resources import Notifier, StoreResource
from rollout_pipeline.defs.tags import ACTOR_TAG
from rollout_pipeline.domain.routing import InvalidName, validate_name
from rollout_pipeline.store import rollouts as repo


class ApprovalConfig(dg.Config):
    """Which pending promotion (model and day), the verdict, who gives it and why."""

    model: str
    date: str  # YYYY-MM-DD: the day whose promotion waits
    verdict: Literal["approve", "reject"]
    reason: str
    operator: str | None = None  # default: the run's actor tag, else the OS user of the process
    rollback: bool = False  # reject: roll back instead of holding


@dg.op(retry_policy=DATABASE_RETRY, tags={"kind": "sql"})
def give_verdict(context: dg.OpExecutionContext, config: ApprovalConfig, store: StoreResource,
                 notifier: Notifier) -> dict:
    """Approve (apply) or reject (hold, or roll back) the pending promotion; the decision is the op's metadata."""
    try:
        validate_name("model", config.model)
    except InvalidName as exc:
        raise refuse(str(exc)) from None
    day = config_day("date", config.date)
    operator = config.operator or context.run.tags.get(ACTOR_TAG) or getpass.getuser()
    request = Approval(config.model, day, operator, config.verdict, config.reason, rollback=config.rollback,
                       run_id=context.run.run_id)
    with database_errors():
        try:
            outcome = make_approval(store.engine, request, notifier=notifier, logger=context.log)
        except repo.RolloutError as exc:
            raise refuse(str(exc)) from None
    out = {**outcome.output(), "model": config.model, "date": day.isoformat(), "operator": operator}
    context.log.info("%s %s: %s by %s (%s)", config.model, day, outcome.record.approval, operator,
                     "; ".join(outcome.record.reasons))
    context.add_output_metadata({"action": out["action"], "approval": out["approval"], "operator": operator,
                                 "applied": out["applied"], "decision": dg.MetadataValue.json(out),
                                 "notifications": outcome.notifications})
    return out


@dg.job(description="Approve or reject a promotion waiting for approval (run config: model, date, verdict, "
                    "reason, operator, rollback).", tags={"kind": "approval"})
def approve_decision():
    give_verdict()
