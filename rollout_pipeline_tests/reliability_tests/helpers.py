"""The pure decision path over a collected day, without Dagster: collect -> validate (log quality)
-> judge -> decide, exactly as the day_summary / judgement / decision assets chain them."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from rollout_pipeline.domain.decide import Decision, Evidence, RolloutState, decide
from rollout_pipeline.domain.evaluate import evaluate
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.store.summary import collect_day
from rollout_pipeline.validation.suites import LOG_QUALITY, SuiteResult, validate_day

# Enough data to judge on a small day, one day per step: a clean day promotes under this policy.
POLICY = Policy(min_shadow_days=0, min_requests=100, wiring_step_min_requests=20)


def judge_day(engine: sa.Engine, model: str, day: dt.date, state: RolloutState,
              policy: Policy = POLICY) -> tuple[SuiteResult, Decision]:
    with engine.connect() as conn:
        summary = collect_day(conn, model, day, "v1", "v2")
    evaluation = evaluate(summary, state.stage, policy, percent=state.canary_percent)
    (quality,) = validate_day(summary, state.stage, policy, suites=(LOG_QUALITY,))
    evidence = Evidence(quality.failures, evaluation.candidate_requests, evaluation.critical_failures,
                        evaluation.score, evaluation.failures)
    return quality, decide(state, evidence, policy)


SHADOW = RolloutState("shadow", 0)
CANARY = RolloutState("canary", 20)
