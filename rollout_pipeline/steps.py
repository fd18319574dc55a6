"""What a day is judged on: the nights of the step it belongs to, read back from the stored evidence.

A canary step may hold for a few nights while its sample grows. Each night's
analysis is stored (``store.evidence``); the judge of a day reads the earlier
nights of the same step (the holds at the same stage and share before it) and
pools them with the day, so nothing a held night saw is thrown away. Nights whose
blocking log-quality check failed are left out (their rows cannot be trusted), and
so are nights analysed under another rollout. Whether any actual outcome ever
arrived for the rollout comes from the rollout's evidence too, whichever log
source it was read from. No Dagster here: the ``judgement`` asset, the decision
service and the backtest call it.

The day's stored steps are here too, each one call for its asset or check: :func:`collect_day` (the
``day_summary`` asset: collect the day's logs and store them as the run's evidence), :func:`check_stored_day`
(a check of ``day_checks`` on the stored day, its result stored with the evidence) and :func:`judge_stored_day`
(the ``judgement`` asset: judge the stored day and store the evaluation with it).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from rollout_pipeline.day_checks import run_check
from rollout_pipeline.domain.codec import CodecError, decode
from rollout_pipeline.domain.decide import RolloutState
from rollout_pipeline.domain.evaluate import Evaluation, evaluate
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.domain.summary import DaySummary
from rollout_pipeline.sources import Collected, LogSource
from rollout_pipeline.store import evidence as evidence_store
from rollout_pipeline.store import rollouts as repo
from rollout_pipeline.store.routing import read_routing
from rollout_pipeline.validation.suites import LOG_QUALITY, SuiteResult


@dataclass(frozen=True)
class StepNights:
    """A day with the earlier nights of its step: where the rollout stood, what is pooled, what was left out."""

    state: RolloutState
    nights: tuple[DaySummary, ...]  # oldest first; the last is the day judged
    outcomes_seen: bool
    left_out: tuple[str, ...] = ()  # earlier nights of the step not pooled, and why

    def evaluate(self, policy: Policy) -> Evaluation:
        """The step's nights judged under ``policy``."""
        return evaluate(self.nights, self.state.stage, policy, percent=self.state.canary_percent,
                        outcomes_seen=self.outcomes_seen)


def log_quality_passed(found: evidence_store.DayEvidence) -> bool:
    """Whether the night's blocking log-quality check ran and passed (a night whose logs failed is not pooled)."""
    data = found.validations.get(LOG_QUALITY)
    if data is None:
        return False
    try:
        return decode(SuiteResult, data).passed
    except CodecError:
        return False


def earlier_nights(connection: sa.Connection, rollout: repo.Rollout, day: dt.date,
                   stage: str) -> tuple[list[DaySummary], list[str]]:
    """The summaries of the step's earlier nights that can be pooled (oldest first), and the nights left out."""
    nights, left_out = [], []
    for earlier in repo.step_days(connection, rollout, day)[-rollout.policy.pool_nights:]:
        found = evidence_store.load_evidence(connection, rollout.model_name, earlier)
        if found is None:
            left_out.append(f"{earlier}: never analysed")
        elif found.rollout_id != rollout.id or found.stage != stage:
            left_out.append(f"{earlier}: analysed under another rollout or stage")
        elif not log_quality_passed(found):
            left_out.append(f"{earlier}: its logs failed validation")
        else:
            nights.append(found.summary)
    return nights, left_out


def step_nights(connection: sa.Connection, rollout: repo.Rollout, summary: DaySummary) -> StepNights:
    """``summary``'s day with the earlier nights of its step, as stored."""
    state = repo.state_before(connection, rollout, summary.day)
    nights, left_out = earlier_nights(connection, rollout, summary.day, state.stage)
    seen = evidence_store.outcomes_arrived(connection, rollout.id) or evidence_store.outcome_count(summary) > 0
    return StepNights(state, (*nights, summary), seen, tuple(left_out))


def evaluate_day(connection: sa.Connection, rollout: repo.Rollout, summary: DaySummary) -> Evaluation:
    """The day's evaluation on its step's pooled nights, under the rollout's policy."""
    return step_nights(connection, rollout, summary).evaluate(rollout.policy)


@dataclass(frozen=True)
class CollectedDay:
    """A day's logs collected and stored as a run's evidence, and the state and routing it was collected under."""

    state: RolloutState
    routing_version: int | None
    collected: Collected
    evidence_id: int


def collect_day(engine: sa.Engine, source: LogSource, rollout: repo.Rollout, day: dt.date,
                run_id: str) -> CollectedDay:
    """Collect ``rollout``'s ``day`` from ``source`` and store it as run ``run_id``'s evidence, under the state and
    routing the rollout is in; the source's ``SourceError`` when it cannot read the logs (nothing stored)."""
    with engine.connect() as conn:
        state = repo.state_before(conn, rollout, day)
        routing = read_routing(conn, rollout.model_name)
    collected = source.collect(engine, rollout.model_name, day, rollout.stable_variant, rollout.candidate_variant,
                               accuracy_day=rollout.policy.accuracy_day(day))
    routing_version = routing.version if routing else None
    with engine.begin() as conn:
        evidence_id = evidence_store.save_summary(conn, collected.summary, rollout_id=rollout.id, stage=state.stage,
                                                  run_id=run_id, canary_percent=state.canary_percent,
                                                  routing_version=routing_version)
    return CollectedDay(state, routing_version, collected, evidence_id)


def judge_stored_day(engine: sa.Engine, found: evidence_store.DayEvidence) -> Evaluation:
    """Judge the stored day ``found`` on its step's pooled nights and store the evaluation with it."""
    with engine.connect() as conn:
        rollout = repo.get_rollout(conn, found.rollout_id)
        evaluation = evaluate_day(conn, rollout, found.summary)
    with engine.begin() as conn:
        evidence_store.save_evaluation(conn, found.id, evaluation)
    return evaluation


def check_stored_day(engine: sa.Engine, found: evidence_store.DayEvidence, name: str) -> SuiteResult:
    """Check ``name`` (``day_checks``) on the stored day ``found``, under its rollout's policy; the result is stored
    with the evidence."""
    with engine.connect() as conn:
        rollout = repo.get_rollout(conn, found.rollout_id)
    suite = run_check(name, found.summary, found.stage, rollout.policy)
    with engine.begin() as conn:
        evidence_store.save_validation(conn, found.id, name, suite)
    return suite
