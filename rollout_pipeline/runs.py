"""Deciding a model's day as the CLI and the demo do: the input checked, then the daily job in-process.

The decision itself (stored and applied in one transaction) is made by the job's
``decision`` asset through ``rollout_pipeline.decisions``; this adds what a
person at a terminal needs: the day checked before anything reaches Dagster, and
the CLI's JSON object.
"""

from __future__ import annotations

import datetime as dt

from rollout_pipeline.defs.runner import RunFailed, run_day
from rollout_pipeline.domain.days import not_over


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
