"""The pipeline's jobs run in-process as the CLI and the demo run them: the input checked, then the job.

The decision itself (stored and applied in one transaction) is made by the job's
``decision`` asset through ``rollout_pipeline.decisions``; this adds what a
person at a terminal needs: the day checked before anything reaches Dagster, and
the CLI's JSON object. Also the retention job's outcome as ``teardown`` prints it,
and a new model's partitions registered with the Dagster instance.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

import dagster as dg

from rollout_pipeline.admin import open_engine
from rollout_pipeline.config import load_settings
from rollout_pipeline.defs.failures import INFRASTRUCTURE
from rollout_pipeline.defs.partitions import register_partitions
from rollout_pipeline.defs.runner import RunFailed, ensure_dagster_home, run_day, run_retention
from rollout_pipeline.domain.days import not_over
from rollout_pipeline.store.teardown import teardown_records, verdicts


def check_day_is_over(day: dt.date, today: dt.date | None = None) -> None:
    """Refuse today and future days: a day is analysed once it is over (UTC)."""
    problem = not_over(day, today)
    if problem:
        raise RunFailed(problem, None)


def decide_day(model: str, day: dt.date, force: str | None, reason: str | None, dry_run: bool,
               actor: str = "cli", log_level: str = "INFO") -> dict:
    """Run the day's assets in-process; the decision is stored and applied by the run itself (unless dry-run)."""
    check_day_is_over(day)
    run = run_day(model, day, force=force, reason=reason, actor=actor, dry_run=dry_run, log_level=log_level)
    out = dict(run.result)
    out.update({"model": model, "date": day.isoformat(), "run_id": run.run_id,
                "applied": bool(out.get("applied")) and not dry_run,
                "failed_checks": list(run.failed_checks), "seconds": round(run.seconds, 2)})
    return out


def register_model(model: str) -> None:
    """Add ``model`` to the Dagster instance's partitions, so the UI offers its days before its first night."""
    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        register_partitions(instance, [], [model])


@dataclass(frozen=True)
class RetentionReport:
    """A retention run as ``teardown --json`` prints it; if it failed, why (one line) and whether the
    infrastructure failed (the action's system, the database: exit 3) or it was refused (exit 1)."""

    out: dict
    success: bool
    failure: str | None = None
    infrastructure: bool = False


def retention(day: dt.date, *, log_level: str = "INFO") -> RetentionReport:
    """Run the retention job for ``day`` in-process; what it tore down, what failed and what it kept."""
    load_settings()  # a bad setting is refused in one line before the run
    started = time.perf_counter()
    run = run_retention(day, log_level=log_level)
    engine = open_engine()
    try:
        with engine.connect() as conn:
            records = [t.as_dict() for t in teardown_records(conn, day=day) if t.run_id == run.run_id]
            kept = [v.as_dict(m) for m, v in verdicts(conn, day) if not v.due]
    finally:
        engine.dispose()
    out = {"date": day.isoformat(), "run_id": run.run_id, "success": run.success,
           "torn_down": [r for r in records if r["status"] == "done"],
           "failed": [r for r in records if r["status"] == "failed"],
           "kept": kept, "seconds": round(time.perf_counter() - started, 2)}
    if run.success:
        return RetentionReport(out, True)
    failure = (f"the retention run {run.run_id} failed: "
               + ("; ".join(f"{r['model']}/{r['variant']}: {r['detail']}" for r in out["failed"])
                  or run.failure or "see the Dagster run's logs"))
    return RetentionReport(out, False, failure, run.kind == INFRASTRUCTURE)
