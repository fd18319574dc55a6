"""Decisions change the routing: a sensor launches the routing job for each decision.

Every decision is a row in the decisions table, and the decision service applies
it in the transaction that stores it; the store knows which ones could not be
applied then (the routing changed under it, a UI run whose apply raced) and
which were stored by older versions without applying. The sensor asks for one
routing run per unapplied decision (``run_key`` = the decision id) and remembers
in its cursor which ones it asked for; a decision still unapplied after all its
routing runs failed, or one whose materialization never reached Dagster (a crash
after the row was committed), is asked for again on the next tick. Applying is
idempotent in the store, so a decision applied twice changes nothing.
"""



import json

import dagster as dg

from rollout_pipeline.defs.failures import DATABASE_RETRY, database_errors
from rollout_pipeline.defs.resources import StoreResource
from rollout_pipeline.defs.tags import ACTOR_TAG, DAY_TAG, DECISION_TAG, MODEL_TAG
from rollout_pipeline.review.render import Table, md_table
from rollout_pipeline.store import rollouts as repo
from rollout_pipeline.store.routing import ConcurrentUpdate, read_routing

SENSOR_ACTOR = "sensor"


class ApplyConfig(dg.Config):
    """Which stored decision to apply."""

    decision_id: int


@dg.op(retry_policy=DATABASE_RETRY, tags={"kind": "sql"})
def apply_decision_to_routing(context: dg.OpExecutionContext, config: ApplyConfig, store: StoreResource) -> dict:
    """Apply one decision to the routing config: one transaction, a new version, a history row."""
    actor = context.run.tags.get(ACTOR_TAG) or SENSOR_ACTOR
    # A routing changed under our feet is worth another try (RetryRequested); so is a transient database error.
    with database_errors():
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
    """The routing as a markdown table (variant, role, share, shadow, inactive since)."""
    return md_table(Table(("variant", "role", "traffic %", "shadow", "inactive since"),
                         tuple((r.variant, r.role, f"{r.traffic_percent:g}", "yes" if r.shadow else "no",
                                str(r.inactive_since or "")) for r in (routing.routes if routing else ()))))


@dg.job(description="Apply one stored decision to the routing config (launched by the routing sensor).")
def apply_routing():
    apply_decision_to_routing()


def seen_decisions(cursor: str | None) -> set[int]:
    """The unapplied decisions the sensor already asked a routing run for."""
    return set(json.loads(cursor)["seen"]) if cursor else set()


def routing_runs(instance: dg.DagsterInstance, decision_id: int) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(job_name=apply_routing.name,
                                                         tags={DECISION_TAG: str(decision_id)})))


@dg.sensor(job=apply_routing, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Applies each new decision to the routing config; re-applies decisions left unapplied.")
def routing_sensor(context: dg.SensorEvaluationContext, store: StoreResource):
    with store.engine.connect() as conn:
        pending = {d.id: d for d in repo.pending_decisions(conn)}
    seen = seen_decisions(context.cursor)
    requests = []
    for decision_id, record in sorted(pending.items()):
        attempt = 0
        if decision_id in seen:
            runs = routing_runs(context.instance, decision_id)
            if not runs or any(not r.is_finished or r.is_success for r in runs):
                continue  # requested already: launching, running, or done
            attempt = len(runs)  # every routing run for it failed: heal by asking again
            context.log.info("decision %d is still unapplied after %d failed routing run(s): retrying",
                             decision_id, attempt)
        requests.append(dg.RunRequest(
            run_key=f"decision-{decision_id}" + (f"-retry-{attempt}" if attempt else ""),
            run_config={"ops": {"apply_decision_to_routing": {"config": {"decision_id": decision_id}}}},
            tags={DECISION_TAG: str(decision_id), ACTOR_TAG: SENSOR_ACTOR,
                  MODEL_TAG: record.model_name, DAY_TAG: record.day.isoformat()},
        ))
    # Remember what is still pending (applied decisions drop out, so the cursor stays small).
    asked = {int(r.tags[DECISION_TAG]) for r in requests}
    new_cursor = json.dumps({"seen": sorted(set(pending) & (seen | asked))})
    if not requests:
        return dg.SensorResult(skip_reason=dg.SkipReason("no unapplied decision"), cursor=new_cursor)
    return dg.SensorResult(run_requests=requests, cursor=new_cursor)
