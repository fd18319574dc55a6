"""Decisions change the routing: a sensor launches the routing job for each decision.

Every decision the decision asset materializes is a row in the decisions table,
and the store knows which of them were never applied. The sensor asks for one
routing run per unapplied decision (``run_key`` = the decision id) and remembers
in its cursor which ones it asked for; a decision still unapplied after all its
routing runs failed, or one whose materialization never reached Dagster (a crash
after the row was committed), is asked for again on the next tick. Applying is
idempotent in the store, so a decision applied twice changes nothing.
"""


import json

import dagster as dg

from rollout_pipeline.defs.assets import ACTOR_TAG
from rollout_pipeline.defs.resources import StoreResource
from rollout_pipeline.store import rollouts as repo
from rollout_pipeline.store.routing import ConcurrentUpdate, read_routing

DECISION_TAG = "rollout/decision_id"
SENSOR_ACTOR = "sensor"
# Transient database errors and a routing changed under our feet are worth another try.
ROUTING_RETRY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL)


class ApplyConfig(dg.Config):
    """Which stored decision to apply."""

    decision_id: int


@dg.op(retry_policy=ROUTING_RETRY, tags={"kind": "sql"})
def apply_decision_to_routing(context: dg.OpExecutionContext, config: ApplyConfig, store: StoreResource) -> dict:
    """Apply one decision to the routing config: one transaction, a new version, a history row."""
    actor = context.run.tags.get(ACTOR_TAG) or SENSOR_ACTOR
    try:
        with store.engine.begin() as conn:
            record = repo.get_decision(conn, config.decision_id)
            if record is None:
                raise dg.Failure(f"no decision {config.decision_id}", allow_retries=False)
            applied = repo.apply_decision(conn, config.decision_id, actor=actor)
    except ConcurrentUpdate as exc:
        raise dg.RetryRequested(max_retries=3, seconds_to_wait=1) from exc
    except repo.RolloutError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc
    with store.engine.connect() as conn:
        routing = read_routing(conn, record.model_name)
    summary = "applied" if applied else "already applied: nothing changed"
    context.log.info("decision %d (%s %s, %s): %s; routing of %s at version %d", record.id, record.model_name,
                     record.day, record.action, summary, record.model_name, routing.version if routing else 0)
    context.add_output_metadata({
        "decision_id": record.id,
        "model": record.model_name,
        "day": record.day.isoformat(),
        "action": record.action,
        "applied": applied,
        "routing_version": routing.version if routing else 0,
        "routing": dg.MetadataValue.md(routing_table(routing)),
    })
    return {"decision_id": record.id, "applied": applied, "routing_version": routing.version if routing else 0}


def routing_table(routing) -> str:
    lines = ["| variant | role | traffic % | shadow | inactive since |", "|---|---|---|---|---|"]
    for r in routing.routes if routing else ():
        lines.append(f"| {r.variant} | {r.role} | {r.traffic_percent:g} | {'yes' if r.shadow else 'no'} | "
                     f"{r.inactive_since or ''} |")
    return "\n".join(lines)


@dg.job(description="Apply one stored decision to the routing config (launched by the routing sensor).")
def apply_routing():
    apply_decision_to_routing()


def _seen(cursor: str | None) -> set[int]:
    """The unapplied decisions the sensor already asked a routing run for."""
    return set(json.loads(cursor)["seen"]) if cursor else set()


def _runs_for(instance: dg.DagsterInstance, decision_id: int) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(job_name=apply_routing.name,
                                                         tags={DECISION_TAG: str(decision_id)})))


@dg.sensor(job=apply_routing, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Applies each new decision to the routing config; re-applies decisions left unapplied.")
def routing_sensor(context: dg.SensorEvaluationContext, store: StoreResource):
    with store.engine.connect() as conn:
        pending = {d.id: d for d in repo.pending_decisions(conn)}
    seen = _seen(context.cursor)
    requests = []
    for decision_id, record in sorted(pending.items()):
        attempt = 0
        if decision_id in seen:
            runs = _runs_for(context.instance, decision_id)
            if not runs or any(not r.is_finished or r.is_success for r in runs):
                continue  # requested already: launching, running, or done
            attempt = len(runs)  # every routing run for it failed: heal by asking again
            context.log.info("decision %d is still unapplied after %d failed routing run(s): retrying",
                             decision_id, attempt)
        requests.append(dg.RunRequest(
            run_key=f"decision-{decision_id}" + (f"-retry-{attempt}" if attempt else ""),
            run_config={"ops": {"apply_decision_to_routing": {"config": {"decision_id": decision_id}}}},
            tags={DECISION_TAG: str(decision_id), ACTOR_TAG: SENSOR_ACTOR,
                  "rollout/model": record.model_name, "rollout/day": record.day.isoformat()},
        ))
    # Remember what is still pending (applied decisions drop out, so the cursor stays small).
    asked = {int(r.tags[DECISION_TAG]) for r in requests}
    new_cursor = json.dumps({"seen": sorted(set(pending) & (seen | asked))})
    if not requests:
        return dg.SensorResult(skip_reason=dg.SkipReason("no unapplied decision"), cursor=new_cursor)
    return dg.SensorResult(run_requests=requests, cursor=new_cursor)
