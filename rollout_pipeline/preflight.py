"""What refuses a day before anything reaches Dagster (so no partition is added): the CLI's and the demo's runs.

A name that is not a model name, a log source that cannot work (``ROLLOUT_LOGS_URL``,
``ROLLOUT_SPARK_MASTER``), a database not migrated, a model without a rollout, or (unless forced) a day older
than the latest decided one: each is a :class:`DayRefused` saying why in one line. ``defs/runner.py`` calls it
before it runs the day's job. No Dagster here.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from rollout_pipeline.config import log_source_settings
from rollout_pipeline.decisions import refuse_an_older_day
from rollout_pipeline.domain.routing import InvalidName, validate_name
from rollout_pipeline.sources import SourceError, log_source
from rollout_pipeline.store import rollouts as repo
from rollout_pipeline.store.migrate import SchemaNotCurrent, SchemaRevisionError, require_current_schema


class DayRefused(RuntimeError):
    """A day that must not be run now; the message says why."""


def refuse_unrunnable_day(engine: sa.Engine, model: str, day: dt.date, *, forced: bool) -> None:
    """``DayRefused`` when ``model``'s ``day`` cannot be run (see the module); a forced day may be an older one."""
    try:
        validate_name("model", model)
        log_source(*log_source_settings()).check()
    except (InvalidName, *SourceError) as exc:
        raise DayRefused(str(exc)) from None
    with engine.connect() as conn:
        try:
            require_current_schema(conn)
        except (SchemaNotCurrent, SchemaRevisionError) as exc:
            raise DayRefused(str(exc)) from None
        rollout = repo.latest_rollout(conn, model)
        if rollout is None:
            raise DayRefused(f"{model} has no rollout: start one with `rollout-pipeline rollout start --model {model} "
                             "...`")
        try:
            refuse_an_older_day(conn, rollout, day, forced=forced)
        except repo.RolloutError as exc:
            raise DayRefused(str(exc)) from None
