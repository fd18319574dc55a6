"""What the operator reads, each in one call: every model's status, a model's audit timeline, the morning digest,
what a retention run did.

Read-only over the store (the digest writes the report files a link needs); no Dagster here.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import sqlalchemy as sa

from rollout_pipeline.decision_approvals import pending_approval
from rollout_pipeline.planning import remaining_plan
from rollout_pipeline.review import digest as digests
from rollout_pipeline.review.content import review_from_record
from rollout_pipeline.review.report import report_path, rollout_history, write_report
from rollout_pipeline.review.timeline import Event, timeline
from rollout_pipeline.store.rollouts import (RolloutError, active_models, decision_history, decisions_on,
                                             latest_rollout)
from rollout_pipeline.store.routing import read_routing, routing_history_rows
from rollout_pipeline.store.tables import rollouts
from rollout_pipeline.store.teardown import teardown_records, verdicts


def model_status(engine: sa.Engine, model: str | None = None, *, today: dt.date | None = None) -> list[dict]:
    """Each model's stage, share, routing, pending approval and remaining plan (``status --json``); one ``model``,
    else every model with a rollout. ``RolloutError`` for a model with neither a rollout nor a routing."""
    today = today or dt.datetime.now(dt.UTC).date()
    with engine.connect() as conn:
        models = [model] if model else list(conn.execute(
            sa.select(rollouts.c.model_name).distinct().order_by(rollouts.c.model_name)).scalars())
        return [_status_of(conn, m, today) for m in models]


def _status_of(conn: sa.Connection, model: str, today: dt.date) -> dict:
    r = latest_rollout(conn, model)
    routing = read_routing(conn, model)
    if r is None and routing is None:
        raise RolloutError(f"no rollout and no routing for model {model!r}")
    return {
        "model": model,
        "stage": r.stage if r else None,
        "canary_percent": r.canary_percent if r else None,
        "active": r.active if r else False,
        "stable": r.stable_variant if r else None,
        "candidate": r.candidate_variant if r else None,
        "routing_version": routing.version if routing else None,
        "routing": [{"variant": x.variant, "role": x.role, "traffic_percent": x.traffic_percent,
                     "shadow": x.shadow} for x in (routing.routes if routing else ())],
        "approval": pending_approval(conn, model),  # a promotion waiting for a person, or None
        "plan": remaining_plan(conn, r, today=today),
    }


def audit_timeline(engine: sa.Engine, model: str, include_superseded: bool = False) -> list[Event]:
    """A model's audit on one timeline: its decisions (with their reasons), routing changes and teardowns."""
    with engine.connect() as conn:
        rows = decision_history(conn, model, include_superseded)
        return timeline(rows, routing_history_rows(conn, model), teardown_records(conn, model=model),
                        superseded_by(rows))


def superseded_by(rows) -> dict[int, int]:
    """Which decision replaced which: a model's day has one live decision, and each new one supersedes the
    previous (``store.rollouts.record_decision``), so within a (model, day) each row is superseded by the next id."""
    by_day: dict[tuple[str, dt.date], list[int]] = {}
    for d in rows:
        by_day.setdefault((d.model_name, d.day), []).append(d.id)
    return {a: b for ids in by_day.values() for a, b in zip(sorted(ids), sorted(ids)[1:])}


def morning_digest(engine: sa.Engine, day: dt.date) -> tuple[tuple[digests.DigestRow, ...], tuple[str, ...], Path]:
    """Every rollout's decision of ``day`` (pending approvals first), the active rollouts not decided that night,
    and the digest file written; a missing report (a decision made outside a Dagster run) is written first, so
    every link opens."""
    with engine.connect() as conn:
        records = decisions_on(conn, day)
        decided = {r.model_name for r in records}
        undecided = tuple(m for m in active_models(conn) if m not in decided)
        for record in records:
            if not report_path(record.model_name, day.isoformat()).exists():
                write_report(review_from_record(record),
                             rollout_history(decision_history(conn, record.model_name), record))
    rows = digests.digest_rows(records)
    return rows, undecided, digests.write_digest(day.isoformat(), rows, undecided)


def retention_report(engine: sa.Engine, day: dt.date, run_id: str, success: bool, started: float) -> dict:
    """A retention run of ``day`` as ``teardown --json`` prints it: what run ``run_id`` tore down, what failed,
    what it kept (variants not yet due); ``seconds`` since ``started`` (a ``time.perf_counter()``)."""
    with engine.connect() as conn:
        records = [t.as_dict() for t in teardown_records(conn, day=day) if t.run_id == run_id]
        kept = [v.as_dict(m) for m, v in verdicts(conn, day) if not v.due]
    return {"date": day.isoformat(), "run_id": run_id, "success": success,
            "torn_down": [r for r in records if r["status"] == "done"],
            "failed": [r for r in records if r["status"] == "failed"],
            "kept": kept, "seconds": round(time.perf_counter() - started, 2)}


def retention_failure(out: dict, run_failure: str | None) -> str:
    """The one line saying why the retention run of ``out`` (:func:`retention_report`) failed."""
    return (f"the retention run {out['run_id']} failed: "
            + ("; ".join(f"{r['model']}/{r['variant']}: {r['detail']}" for r in out["failed"])
               or run_failure or "see the Dagster run's logs"))
