"""The policy state machine: shadow -> canary steps -> production, hold, or rollback.

Outcomes are ordered as Argo Rollouts orders analysis results (the worst wins):
a data-quality failure or too little data holds, a critical failure rolls back,
and only a day with enough good data and a passing score promotes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from rollout_pipeline.domain.policy import Policy

ACTIONS = ("promote", "hold", "rollback")
STAGES = ("shadow", "canary", "production", "rolled_back")


@dataclass(frozen=True)
class RolloutState:
    """Where a rollout stands before a day's decision."""

    stage: str
    canary_percent: int
    days_in_step: int = 0  # days already decided at this stage and share


@dataclass(frozen=True)
class Decision:
    """A day's decision with the reasons that led to it."""

    action: str
    forced: bool
    reasons: tuple[str, ...]
    before: RolloutState
    stage_after: str
    percent_after: int


class ForceError(ValueError):
    """A forced decision that cannot be made (missing reason, unknown action, nothing to promote to)."""


def _promote_target(state: RolloutState, policy: Policy) -> tuple[str, int] | None:
    if state.stage == "shadow":
        return "canary", policy.canary_steps[0]
    if state.stage == "canary":
        nxt = policy.next_step(state.canary_percent)
        return ("canary", nxt) if nxt is not None and nxt < 100 else ("production", 100)
    return None


def _promote(state: RolloutState, policy: Policy, reasons: list[str], forced: bool) -> Decision:
    target = _promote_target(state, policy)
    if target is None:
        raise ForceError(f"nothing to promote to from stage {state.stage!r}")
    stage, percent = target
    reasons.append(f"promote to {_step_label(stage, percent)}")
    return Decision("promote", forced, tuple(reasons), state, stage, percent)


def _hold(state: RolloutState, reasons: list[str], forced: bool = False) -> Decision:
    return Decision("hold", forced, tuple(reasons), state, state.stage, state.canary_percent)


def _rollback(state: RolloutState, reasons: list[str], forced: bool = False) -> Decision:
    return Decision("rollback", forced, tuple(reasons), state, "rolled_back", 0)


def force_decision(state: RolloutState, action: str, reason: str | None, policy: Policy, actor: str) -> Decision:
    """An operator's decision: promote, hold or rollback, always with a reason."""
    if action not in ACTIONS:
        raise ForceError(f"unknown action {action!r}: use one of {', '.join(ACTIONS)}")
    if not reason or not reason.strip():
        raise ForceError(f"forcing {action!r} needs a reason (it is kept in the audit trail)")
    reasons = [f"forced {action} by {actor}: {reason.strip()}"]
    if action == "promote":
        return _promote(state, policy, reasons, forced=True)
    if action == "rollback":
        if state.stage == "rolled_back":
            raise ForceError("the rollout is already rolled back")
        return _rollback(state, reasons, forced=True)
    return _hold(state, reasons, forced=True)


@dataclass(frozen=True)
class Evidence:
    """What the day's analysis found, as the state machine needs it."""

    data_quality_failures: Sequence[str]
    candidate_requests: int
    critical_failures: Sequence[str]
    score: float | None
    score_reasons: Sequence[str] = ()
    old_variant_deployable: bool = True  # production: the old stable is still inactive (not torn down)
    insufficient: Sequence[str] = ()  # gates below their minimum sample: no verdict, so no promotion
    not_judged: Sequence[str] = ()  # gates that do not apply today, with why (shown, never decisive)


def evidence_from(evaluation, data_quality_failures: Sequence[str], *, old_variant_deployable: bool = True) -> Evidence:
    """The state machine's evidence from a day's evaluation (``domain.evaluate.Evaluation``) and validation.

    The evaluation's integrity failures (coverage, orphan or duplicate rows, empty
    answers, broken feedback) join the validation's: either way the day cannot be judged.
    """
    return Evidence(
        data_quality_failures=(*data_quality_failures, *evaluation.integrity_failures),
        candidate_requests=evaluation.candidate_requests,
        critical_failures=tuple(evaluation.critical_failures),
        score=evaluation.score,
        score_reasons=tuple(evaluation.failures),
        old_variant_deployable=old_variant_deployable,
        insufficient=tuple(evaluation.insufficient),
        not_judged=tuple(evaluation.not_judged),
    )


def decide(state: RolloutState, evidence: Evidence, policy: Policy) -> Decision:
    """The day's decision from the evidence, under ``policy`` (the worst outcome wins)."""
    if state.stage == "rolled_back":
        return _hold(state, ["rollout is rolled back: nothing to decide"])
    if state.stage == "production":
        return _watch(state, evidence, policy)
    if evidence.data_quality_failures:
        return _hold(state, ["data quality failed, so the day cannot be judged:", *evidence.data_quality_failures])
    unit = "paired shadow" if state.stage == "shadow" else "candidate-served"
    if evidence.critical_failures and evidence.candidate_requests > 0:
        return _rollback(state, ["critical failure:", *evidence.critical_failures])
    if evidence.insufficient:
        return _hold(state, ["not enough data to judge every metric:", *evidence.insufficient])
    if policy.min_requests is not None and evidence.candidate_requests < policy.min_requests:
        return _hold(state, [f"not enough data: {evidence.candidate_requests} {unit} requests "
                             f"< min_requests {policy.min_requests}"])
    score = evidence.score
    t = policy.judge
    if score is None:
        return _hold(state, ["no metric could be judged:", *evidence.not_judged])
    summary = f"judge score {score:.0f}"
    if score < t.marginal_score:
        return _rollback(state, [f"{summary} < marginal {t.marginal_score:.0f}", *evidence.score_reasons])
    if score < t.pass_score:
        return _hold(state, [f"{summary} is marginal ({t.marginal_score:.0f} <= score < {t.pass_score:.0f})",
                             *evidence.score_reasons])
    days = state.days_in_step + 1
    minimum = policy.min_shadow_days if state.stage == "shadow" else policy.min_days_per_step
    if days < minimum:
        return _hold(state, [f"{summary} >= pass {t.pass_score:.0f}, but day {days} of {minimum} required in this step"])
    return _promote(state, policy, [f"{summary} >= pass {t.pass_score:.0f}", *evidence.score_reasons,
                                    *(f"not judged: {r}" for r in evidence.not_judged)], forced=False)


def _watch(state: RolloutState, evidence: Evidence, policy: Policy) -> Decision:
    """After promotion, while the old model shadows the new one: hold, or roll back on the data."""
    if not evidence.old_variant_deployable:
        return _hold(state, ["rollout is in production and the old variant is torn down: nothing to decide"])
    if evidence.data_quality_failures:
        return _hold(state, ["data quality failed, so the day cannot be judged:", *evidence.data_quality_failures])
    if evidence.critical_failures and evidence.candidate_requests > 0:
        return _rollback(state, ["after promotion, critical failure of the new model against the old one:",
                                 *evidence.critical_failures])
    if evidence.score is None or evidence.insufficient:
        return _hold(state, ["production: too little to compare with the old model (is it still shadowing?)",
                             *evidence.insufficient])
    summary = f"judge score {evidence.score:.0f}"
    if evidence.score < policy.judge.marginal_score:
        return _rollback(state, [f"after promotion, {summary} < marginal {policy.judge.marginal_score:.0f}",
                                 *evidence.score_reasons])
    return _hold(state, [f"production: the new model holds up against the old one ({summary})",
                         *evidence.score_reasons])


def guardrail_rollback(state: RolloutState, alarms: Sequence[str]) -> Decision:
    """The intraday guardrail's rollback of a candidate serving traffic (canary, or the watch after promotion)."""
    if state.stage not in ("canary", "production"):
        raise ForceError(f"the guardrail acts on a canary or a promoted model under watch, not on stage {state.stage!r}")
    return _rollback(state, ["intraday guardrail: a critical regression in the day so far:", *alarms])


# --- approval gates: a nightly promotion into a step of ``require_approval_for`` waits for a person -------------

APPROVAL_STATES = ("pending", "approved", "rejected", "expired")


def needs_approval(decision: Decision, policy: Policy) -> bool:
    """True when ``decision`` is the policy's own promotion into a step whose entry waits for a person."""
    return (decision.action == "promote" and not decision.forced
            and decision.percent_after in policy.require_approval_for)


def _step_label(stage: str, percent: int) -> str:
    return "production (100%)" if stage == "production" else f"canary {percent}%"


def approval_expires_on(pending_day: dt.date, policy: Policy) -> dt.date:
    """The last day (UTC) a promotion pending since ``pending_day`` may be approved."""
    return pending_day + dt.timedelta(days=policy.approval_expiry_days)


def approval_expired(pending_day: dt.date, today: dt.date, policy: Policy) -> bool:
    """True once ``today`` is past the last day the pending promotion could be approved."""
    return today > approval_expires_on(pending_day, policy)


def waiting_hold(state: RolloutState, pending_day: dt.date, pending: Decision, today: Decision) -> Decision:
    """A later night's decision while a promotion waits for approval: a hold saying whether the evidence still holds."""
    head = f"waiting for approval of {pending_day}'s promotion to {_step_label(pending.stage_after, pending.percent_after)}"
    if today.action == "promote":
        return _hold(state, [f"{head}; today's evidence still passes"])
    return _hold(state, [f"{head}; today's evidence no longer passes: {today.action}", *today.reasons])


def _approval_reason(verb: str, operator: str, reason: str | None) -> str:
    if not reason or not reason.strip():
        what = "an approval" if verb == "approved" else "a rejection"
        raise ForceError(f"{what} needs a reason (it is kept in the audit trail)")
    return f"{verb} by {operator}: {reason.strip()}"


def approve_promotion(pending: Decision, operator: str, reason: str | None) -> Decision:
    """The pending promotion, approved by a person: the same step, with who and why first among its reasons."""
    if pending.action != "promote":
        raise ForceError(f"only a promotion waits for approval, not a {pending.action}")
    return Decision("promote", False, (_approval_reason("approved", operator, reason), *pending.reasons),
                    pending.before, pending.stage_after, pending.percent_after)


def reject_promotion(pending: Decision, operator: str, reason: str | None, rollback: bool = False) -> Decision:
    """The pending promotion, rejected by a person: a hold where the rollout stands, or a rollback."""
    why = _approval_reason("rejected", operator, reason)
    target = _step_label(pending.stage_after, pending.percent_after)
    if rollback:
        if pending.before.stage == "rolled_back":
            raise ForceError("the rollout is already rolled back")
        return _rollback(pending.before, [why, f"promotion to {target} rejected: roll back"], forced=True)
    return _hold(pending.before, [why, f"promotion to {target} rejected: hold"], forced=True)


def expire_promotion(pending: Decision, pending_day: dt.date, policy: Policy) -> Decision:
    """A promotion nobody approved in time: a hold where the rollout stands."""
    return _hold(pending.before, [
        f"approval of {pending_day}'s promotion to {_step_label(pending.stage_after, pending.percent_after)} expired: "
        f"not approved by {approval_expires_on(pending_day, policy)} (approval_expiry_days "
        f"{policy.approval_expiry_days}); hold"])
