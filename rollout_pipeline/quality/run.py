"""Decide generated days the way the nightly job does, and score the decisions against the truth.

A day goes through the product's own path -- the bulk writer, ``collect_day``, the
blocking log-quality suite, the gates, the state machine -- from a state that has
spent enough days in its step, so only the evidence decides. Healthy days should
promote (after promotion: hold); a hold whose reason is "not enough data" is
counted apart, as the issue asks (a genuinely small sample is not a false hold).
Faulty days must never promote.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from rollout_pipeline.domain.decide import Decision, RolloutState, decide, evidence_from
from rollout_pipeline.domain.evaluate import Evaluation, evaluate
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.quality.traffic import DaySpec, generate, stage_state
from rollout_pipeline.store.logs import write_feedback, write_predictions
from rollout_pipeline.store.summary import collect_day

NOT_ENOUGH = "not enough data"


@dataclass(frozen=True)
class DayOutcome:
    """One generated day, its decision, and how the decision compares with the truth."""

    spec: DaySpec
    model: str
    decision: Decision
    evaluation: Evaluation
    drawn: dict
    verdict: str  # correct | insufficient | false_hold | false_rollback | promoted_fault

    @property
    def wrong(self) -> bool:
        return self.verdict in ("false_hold", "false_rollback", "promoted_fault")


def verdict_of(spec: DaySpec, decision: Decision) -> str:
    """How a decision compares with the truth of a generated day."""
    stage, _ = stage_state(spec.stage)
    insufficient = decision.action == "hold" and (
        decision.reasons[0].startswith(NOT_ENOUGH) or decision.reasons[0].startswith("production: too little"))
    if spec.fault is not None:
        return "promoted_fault" if decision.action == "promote" else "correct"
    if decision.action == "rollback":
        return "false_rollback"
    if stage == "production" or decision.action == "promote":
        return "correct"
    return "insufficient" if insufficient else "false_hold"


def decide_generated_day(engine: sa.Engine, spec: DaySpec, model: str, policy: Policy,
                         validate=None) -> DayOutcome:
    """Write the day, collect it, validate (``validate(summary, stage, policy) -> failures``), judge and decide."""
    rows, feedback, drawn = generate(spec, model)
    write_predictions(engine, rows)
    write_feedback(engine, feedback)
    stage, percent = stage_state(spec.stage)
    with engine.connect() as conn:
        summary = collect_day(conn, model, spec.day, spec.stable, spec.candidate,
                              accuracy_day=policy.accuracy_day(spec.day))
    evaluation = evaluate(summary, stage, policy)
    failures = validate(summary, stage, policy) if validate is not None else []
    evidence = evidence_from(evaluation, failures)
    decision = decide(RolloutState(stage, percent, days_in_step=30), evidence, policy)
    return DayOutcome(spec, model, decision, evaluation, drawn, verdict_of(spec, decision))


def log_quality_failures(summary, stage: str, policy: Policy) -> list[str]:
    """The blocking Great Expectations suite, as the pipeline runs it before the decision."""
    from rollout_pipeline.validation.suites import LOG_QUALITY, validate_day  # GX: seconds to import

    (suite,) = validate_day(summary, stage, policy, suites=(LOG_QUALITY,))
    return suite.failures
