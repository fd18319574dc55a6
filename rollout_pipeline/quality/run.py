"""Decide generated days, and whole generated rollouts, the way the nightly job does.

Days (``decide_generated_day``): a day goes through the product's own path -- the bulk writer, ``collect_day``, the
blocking log-quality suite, the gates, the state machine -- from a state that has
spent enough days in its step, so only the evidence decides. Healthy days should
promote (after promotion: hold); a hold whose reason is "not enough data" is
counted apart, as the issue asks (a genuinely small sample is not a false hold).
Faulty days must never promote.

Rollouts (``run_rollout``): a rollout is started, then each night is generated at
the stage and share the rollout has reached, written, watched hour by hour by the
intraday guardrail, and analysed by the same services the daily job calls (collect,
the stored evidence, the blocking suite, the step's pooled nights, the one decision
service, which applies the decision to the routing) -- with no force, until the
rollout is rolled back or has been watched in production.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from rollout_pipeline.decision_requests import Guardrail, Nightly
from rollout_pipeline.decision_outcome import DecisionOutcome
from rollout_pipeline.decisions import make_decision
from rollout_pipeline.domain.decide import Decision, RolloutState, decide, evidence_from
from rollout_pipeline.domain.evaluate import Evaluation, evaluate
from rollout_pipeline.domain.guardrail import SideCounts
from rollout_pipeline.domain.guardrail import check as guardrail_check
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.quality.rollouts import RolloutSpec, night, population
from rollout_pipeline.quality.traffic import DaySpec, generate, stage_state
from rollout_pipeline.steps import evaluate_day
from rollout_pipeline.store import evidence as evidence_store
from rollout_pipeline.store import rollouts as repo
from rollout_pipeline.store.intraday import counts_so_far
from rollout_pipeline.store.logs import write_feedback, write_predictions
from rollout_pipeline.store.rollouts import start_rollout
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
    verdict: str  # correct | insufficient | false_hold | false_rollback | promoted_fault | passed_step

    @property
    def wrong(self) -> bool:
        return self.verdict in ("false_hold", "false_rollback", "promoted_fault")


# The gate each fault of quality.traffic is for, and its size in that gate's unit from what was drawn.
FAULT_GATES = {
    "errors": ("error_rate", lambda d: d["rate"]),
    "error_burst": ("error_rate", lambda d: 0.5 * d["hours"] / 24),
    "complaints": ("complaints", lambda d: (d["factor"] - 1) * 0.01),  # entities' propensity: ~1% on average
    "extreme": ("extremes", lambda d: d["share"]),
    "null": ("broken_answers", lambda d: d["share"]),
    "inaccurate": ("accuracy", lambda d: d["factor"] - 1),
    "shifted": ("prediction_shift", lambda d: abs(d["sd"])),
}
DETECTABLE = {"error_rate": "error_rate_detectable", "complaints": "complaint_detectable",
              "extremes": "extreme_share_detectable", "broken_answers": "broken_answers_detectable",
              "accuracy": "accuracy_detectable", "prediction_shift": "prediction_shift_detectable"}


def asked_at_step(spec: DaySpec, drawn: dict, policy: Policy) -> bool:
    """Whether the day's step promises to stop its fault: the step needs the fault's gate, and the fault is at or
    beyond the step's bar (the first canary step asks only the gross questions, at five times the detectable)."""
    if spec.fault not in FAULT_GATES:
        return True  # latency blow-ups, integrity faults: every step stops them
    gate, size = FAULT_GATES[spec.fault]
    stage, percent = stage_state(spec.stage)
    required = policy.required_at(stage, percent)
    if required is not None and gate not in required:
        return False
    return size(drawn) >= getattr(policy, DETECTABLE[gate]) * policy.bar_multiplier(stage, percent)


def verdict_of(spec: DaySpec, decision: Decision, drawn: dict | None = None, policy: Policy | None = None) -> str:
    """How a decision compares with the truth of a generated day.

    A faulty day promoted although its step does not promise to stop that fault (a gate the step does not need,
    or a fault under the step's bar: the next step asks it) is ``passed_step``, apart from ``promoted_fault``.
    """
    stage, _ = stage_state(spec.stage)
    insufficient = decision.action == "hold" and (
        decision.reasons[0].startswith(NOT_ENOUGH) or decision.reasons[0].startswith("production: too little"))
    if spec.fault is not None:
        if decision.action != "promote":
            return "correct"
        asked = drawn is None or policy is None or asked_at_step(spec, drawn, policy)
        return "promoted_fault" if asked else "passed_step"
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
    evaluation = evaluate(summary, stage, policy, percent=percent)
    failures = validate(summary, stage, policy) if validate is not None else []
    evidence = evidence_from(evaluation, failures)
    decision = decide(RolloutState(stage, percent, days_in_step=30), evidence, policy)
    return DayOutcome(spec, model, decision, evaluation, drawn, verdict_of(spec, decision, drawn, policy))


def log_quality_failures(summary, stage: str, policy: Policy) -> list[str]:
    """The blocking Great Expectations suite, as the pipeline runs it before the decision."""
    from rollout_pipeline.validation.suites import LOG_QUALITY, validate_day  # GX: seconds to import

    (suite,) = validate_day(summary, stage, policy, suites=(LOG_QUALITY,))
    return suite.failures


# --- whole rollouts, night by night, through the product's own services -----------------------------------


@dataclass(frozen=True)
class Night:
    """One night of a generated rollout: where it stood, what was decided, and the faulty traffic it served."""

    day: dt.date
    stage: str
    percent: int
    action: str
    stage_after: str
    source: str  # analysis | guardrail
    reasons: tuple[str, ...]
    fault_on: bool
    exposure: float  # candidate share (%) x the part of the night it served with the fault on


@dataclass(frozen=True)
class RolloutOutcome:
    """A generated rollout decided night by night with no force."""

    spec: RolloutSpec
    model: str
    nights: tuple[Night, ...]

    @property
    def reached_production(self) -> int | None:
        """The night (1-based) whose decision promoted the rollout to production, or None."""
        return next((k + 1 for k, n in enumerate(self.nights)
                     if n.action == "promote" and n.stage != "production" and n.stage_after == "production"), None)

    @property
    def rolled_back(self) -> bool:
        return any(n.action == "rollback" for n in self.nights)

    @property
    def exposure(self) -> float:
        """Percent-nights the candidate served with its fault on (share x nights)."""
        return sum(n.exposure for n in self.nights)


def _decide_night(engine: sa.Engine, model: str, day: dt.date, policy: Policy, run_id: str,
                  validate: Callable) -> DecisionOutcome:
    """The nightly analysis as the daily job runs it, without Dagster: collect, store, validate, judge, decide."""
    with engine.begin() as conn:
        rollout = repo.active_rollout(conn, model) or repo.latest_rollout(conn, model)
        state = repo.state_before(conn, rollout, day)
        stage = state.stage
        summary = collect_day(conn, model, day, rollout.stable_variant, rollout.candidate_variant,
                              accuracy_day=policy.accuracy_day(day))
        evidence_id = evidence_store.save_summary(conn, summary, rollout_id=rollout.id, stage=stage, run_id=run_id,
                                                  canary_percent=state.canary_percent)
        for suite in validate(summary, stage, policy):
            evidence_store.save_validation(conn, evidence_id, suite.name, suite)
        evidence_store.save_evaluation(conn, evidence_id, evaluate_day(conn, rollout, summary))
    return make_decision(engine, Nightly(model, day, "benchmark", run_id=run_id))


def _guardrail(engine: sa.Engine, model: str, day: dt.date, policy: Policy, stage: str) -> tuple[int, tuple] | None:
    """The intraday guardrail's hourly looks at the day so far: (hour, alarms) of the first alarm, or None."""
    if not policy.guardrail or stage not in ("canary", "production"):
        return None
    production = stage == "production"
    with engine.connect() as conn:
        rollout = repo.latest_rollout(conn, model)
        for hour in range(1, 25):
            at = dt.datetime.combine(day, dt.time(), dt.UTC) + dt.timedelta(hours=hour)
            counts = counts_so_far(conn, model, at, slo_ms=policy.latency_slo_p99_ms, bounds=policy.prediction_bounds)
            empty = SideCounts(0, 0, 0, 0)
            result = guardrail_check(counts.get((rollout.stable_variant, not production), empty),
                                     counts.get((rollout.candidate_variant, True), empty), policy)
            if result.alarms:
                return hour, result.alarms
    return None


def run_rollout(engine: sa.Engine, spec: RolloutSpec, model: str, policy: Policy, *, first_day: dt.date,
                max_nights: int, watch_nights: int = 2, validate: Callable | None = None) -> RolloutOutcome:
    """Start a rollout, then generate and decide its nights with no force until it is rolled back, has watched
    production for ``watch_nights``, or ``max_nights`` have passed."""
    validate = validate or (lambda summary, stage, p: [log_quality_suite(summary, stage, p)])
    with engine.begin() as conn:
        start_rollout(conn, model, spec.stable, spec.candidate, policy, actor="benchmark")
    pop = population(spec, policy)
    nights: list[Night] = []
    watched = 0
    for k in range(max_nights):
        day = first_day + dt.timedelta(days=k)
        with engine.connect() as conn:
            rollout = repo.latest_rollout(conn, model)
            state = repo.state_before(conn, rollout, day)
        if state.stage == "rolled_back" or (state.stage == "production" and watched >= watch_nights):
            break
        watched += state.stage == "production"
        rows, feedback, fault_on = night(spec, pop, model, day, k, state.stage, state.canary_percent, policy)
        write_predictions(engine, rows)
        write_feedback(engine, feedback)
        share = 100 if state.stage == "production" else (state.canary_percent if state.stage == "canary" else 0)
        alarm = _guardrail(engine, model, day, policy, state.stage)
        if alarm is not None:
            hour, alarms = alarm
            out = make_decision(engine, Guardrail(model, day, tuple(alarms)))
            nights.append(Night(day, state.stage, state.canary_percent, out.record.action, out.record.stage_after,
                                "guardrail",
                                tuple(out.record.reasons), fault_on, share * hour / 24 if fault_on else 0.0))
            continue
        out = _decide_night(engine, model, day, policy, f"bench-{model}-{day}", validate)
        nights.append(Night(day, state.stage, state.canary_percent, out.record.action, out.record.stage_after,
                            "analysis",
                            tuple(out.record.reasons), fault_on, float(share) if fault_on else 0.0))
    return RolloutOutcome(spec, model, tuple(nights))


def log_quality_suite(summary, stage: str, policy: Policy):
    """The blocking Great Expectations suite's result, as the pipeline stores it before the decision."""
    from rollout_pipeline.validation.suites import LOG_QUALITY, validate_day  # GX: seconds to import

    (suite,) = validate_day(summary, stage, policy, suites=(LOG_QUALITY,))
    return suite
