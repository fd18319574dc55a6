"""The day's evidence in the pipeline's database: summary, validation results and evaluation of a model's day.

The analysis writes it step by step (``day_summary`` inserts the row, each asset
check adds its suite's result, ``judgement`` adds the evaluation) and the decision
reads it back, in any process: nothing travels through Dagster's IO manager. Every
analysis run has its own row; a newer analysis of the day supersedes the older one,
so a run still finishing keeps reading and completing its own row (never a row
another run is rewriting), and a decision taken later reads the live one.
Records are stored through ``domain.codec``, so fields added to them round-trip.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from rollout_pipeline.domain.codec import decode, encode
from rollout_pipeline.domain.evaluate import Evaluation
from rollout_pipeline.domain.summary import DaySummary
from rollout_pipeline.store.tables import day_evidence, insert_superseding

EVIDENCE_LOCK_SPACE = 7_261_003  # (space, hashtext(model)) advisory lock; decisions use 7_261_002


SUPERSEDED_KEPT = dt.timedelta(hours=6)  # longer than any run of a day takes
_DECODED: dict[tuple, DaySummary] = {}  # (database, row id, created_at) -> summary: a row's summary never changes
_DECODED_MAX = 4


class EvidenceGone(LookupError):
    """The evidence row a step meant to complete no longer exists."""


@dataclass(frozen=True)
class DayEvidence:
    """One analysis of a model's day as stored: the summary, each suite's result (encoded), the evaluation."""

    id: int
    model_name: str
    day: dt.date
    rollout_id: int
    stage: str
    run_id: str | None
    summary: DaySummary
    validations: dict  # suite name -> encoded validation.suites.SuiteResult
    evaluation: Evaluation | None
    live: bool
    created_at: dt.datetime
    canary_percent: int | None = None  # the rollout's share when collected (None: stored by an earlier version)
    routing_version: int | None = None  # the model's routing version when collected

    def collected_under(self) -> str:
        """The state the evidence was collected under, as a decision's reasons name states."""
        share = "" if self.canary_percent is None else f" {self.canary_percent}%"
        routing = "" if self.routing_version is None else f", routing v{self.routing_version}"
        return f"{self.stage}{share}{routing}"


def _summary(connection: sa.Connection, row) -> DaySummary:
    """The row's summary, decoded once per process (the checks, the judge and the decision of a run all read it)."""
    key = (connection.engine.url.render_as_string(hide_password=True), row.id, row.created_at)
    summary = _DECODED.get(key)
    if summary is None:
        summary = decode(DaySummary, row.summary)
        if len(_DECODED) >= _DECODED_MAX:
            _DECODED.pop(next(iter(_DECODED)))
        _DECODED[key] = summary
    return summary


def _record(connection: sa.Connection, row) -> DayEvidence:
    return DayEvidence(row.id, row.model_name, row.day, row.rollout_id, row.stage, row.run_id,
                       _summary(connection, row), dict(row.validations or {}),
                       None if row.evaluation is None else decode(Evaluation, row.evaluation),
                       row.superseded_by is None, row.created_at, row.canary_percent, row.routing_version)


def save_summary(connection: sa.Connection, summary: DaySummary, *, rollout_id: int, stage: str,
                 run_id: str | None, now: dt.datetime | None = None, canary_percent: int | None = None,
                 routing_version: int | None = None) -> int:
    """Store a new analysis of ``summary``'s day (superseding the live one), with the rollout's state it was
    collected under (stage, share, routing version); its id."""
    now = now or dt.datetime.now(dt.UTC)
    model, day = summary.model_name, summary.day
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:space, hashtext(:model))"),
                           {"space": EVIDENCE_LOCK_SPACE, "model": model})
    live = sa.and_(day_evidence.c.model_name == model, day_evidence.c.day == day,
                   day_evidence.c.superseded_by.is_(None))
    previous = connection.execute(sa.select(day_evidence.c.id).where(live)).scalar_one_or_none()
    new_id = insert_superseding(connection, day_evidence, previous, dict(
        model_name=model, day=day, rollout_id=rollout_id, stage=stage, run_id=run_id, summary=encode(summary),
        validations={}, evaluation=None, outcomes=outcome_count(summary), created_at=now, updated_at=now,
        canary_percent=canary_percent, routing_version=routing_version))
    # Older analyses of the day are kept while a run may still be finishing with them, then dropped
    # (a day's summary with its sample is megabytes; the live one is what the day's decision used).
    connection.execute(day_evidence.delete().where(
        day_evidence.c.model_name == model, day_evidence.c.day == day, day_evidence.c.superseded_by.is_not(None),
        day_evidence.c.updated_at < now - SUPERSEDED_KEPT))
    return new_id


def outcome_count(summary: DaySummary) -> int:
    """The actual outcomes a day's summary saw: joined to its requests (whole day) or in its outcome sample."""
    joined = sum(v.actuals for v in summary.variants)
    sampled = sum(1 for r in summary.outcome_sample() if r.actual is not None or r.actual_label is not None)
    return max(joined, sampled)


def outcomes_arrived(connection: sa.Connection, rollout_id: int) -> bool:
    """Whether any analysed day of the rollout saw an actual outcome (live or superseded analyses alike)."""
    return connection.execute(
        sa.select(sa.literal(1)).where(day_evidence.c.rollout_id == rollout_id, day_evidence.c.outcomes > 0)
        .limit(1)).first() is not None


def save_validation(connection: sa.Connection, evidence_id: int, name: str, result, *,
                    now: dt.datetime | None = None) -> None:
    """Add one validation suite's result (a dataclass record) to the evidence ``evidence_id``."""
    now = now or dt.datetime.now(dt.UTC)
    # Write first: the row is locked (PostgreSQL) / the database write-locked (SQLite) before it is read,
    # so two checks of one run adding their results at once never lose one.
    touched = connection.execute(
        day_evidence.update().where(day_evidence.c.id == evidence_id).values(updated_at=now)).rowcount
    if not touched:
        raise EvidenceGone(f"evidence #{evidence_id} no longer exists")
    current = connection.execute(
        sa.select(day_evidence.c.validations).where(day_evidence.c.id == evidence_id)).scalar_one()
    merged = {**(current or {}), name: encode(result)}
    connection.execute(day_evidence.update().where(day_evidence.c.id == evidence_id).values(validations=merged))


def save_evaluation(connection: sa.Connection, evidence_id: int, evaluation: Evaluation, *,
                    now: dt.datetime | None = None) -> None:
    """Add the judge's evaluation to the evidence ``evidence_id``."""
    now = now or dt.datetime.now(dt.UTC)
    touched = connection.execute(day_evidence.update().where(day_evidence.c.id == evidence_id).values(
        evaluation=encode(evaluation), updated_at=now)).rowcount
    if not touched:
        raise EvidenceGone(f"evidence #{evidence_id} no longer exists")


def load_evidence(connection: sa.Connection, model: str, day: dt.date, *,
                  run_id: str | None = None) -> DayEvidence | None:
    """The evidence of ``model``'s ``day``: the analysis of run ``run_id`` if it made one, else the live one."""
    where = [day_evidence.c.model_name == model, day_evidence.c.day == day]
    if run_id is not None:
        row = connection.execute(sa.select(day_evidence).where(*where, day_evidence.c.run_id == run_id)
                                 .order_by(day_evidence.c.id.desc()).limit(1)).first()
        if row is not None:
            return _record(connection, row)
    row = connection.execute(sa.select(day_evidence).where(*where, day_evidence.c.superseded_by.is_(None))).first()
    return _record(connection, row) if row else None
