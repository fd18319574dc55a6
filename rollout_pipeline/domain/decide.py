"""The policy state machine: shadow -> canary steps -> production, hold, or rollback.

A day's outcome is one of ``Outcome``, ordered promote < hold < rollback, and
``worst`` takes the worst of several (Argo Rollouts' ``analysisStatusOrder`` and
``Worst``). The precedence below is the one place it is stated (docs/policy.md, "The
decision", says the same); the first rule that matches decides:

1. logs that cannot be judged (validation, integrity) hold the day;
2. a critical gate confidently past its limit rolls back;
3. any other gate confidently past its limit rolls back a candidate serving users
   (canary) -- a confidently worse candidate never keeps its exposure -- and holds one
   in shadow (it serves nobody; it does not leave shadow);
4. a canary step whose candidate served no request holds: its mirrored answers judge
   the model, but the step is there to show it to users (is the router applying
   the rollout's routing?);
5. a gate the step needs without a verdict yet holds, and the nights pool;
6. ``min_requests`` (an optional extra floor) not reached holds;
7. fewer days in the step than ``min_shadow_days`` / ``min_days_per_step`` holds;
   otherwise the rollout is promoted one step.

Rules 2-7 are listed worst outcome first, so among them the first match is the
worst outcome that applies. Rule 1 is the deliberate exception: the worst outcome
does *not* win there. A data-quality hold comes ahead of a critical rollback,
because when the logs are broken no gate's verdict can be trusted, a rollback's
included. The candidate's own broken answers are not a logging problem: they are
a gate (``broken_answers``), critical.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import assert_never

from rollout_pipeline.domain.policy import Policy



class Outcome(enum.IntEnum):
    """A decision's action, ordered by how much it stops: promote < hold < rollback."""

    PROMOTE = 0
    HOLD = 1
    ROLLBACK = 2

    @property
    def action(self) -> str:
        """The action's name as decisions store it (``promote``, ``hold``, ``rollback``)."""
        return self.name.lower()

    @classmethod
    def of(cls, action: str) -> Outcome:
        """The outcome of a stored action name; ``ValueError`` for any other name."""
        try:
            return cls[action.upper()]
        except KeyError:
            raise ValueError(f"unknown action {action!r}: use one of {', '.join(ACTIONS)}") from None


def worst(first: Outcome, *others: Outcome) -> Outcome:
    """The worst of the outcomes (a rollback over a hold over a promotion)."""
    return max((first, *others))


ACTIONS = tuple(o.action for o in Outcome)  # ("promote", "hold", "rollback")
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

    @property
    def outcome(self) -> Outcome:
        return Outcome.of(self.action)


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
    return Decision(Outcome.PROMOTE.action, forced, tuple(reasons), state, stage, percent)


def _hold(state: RolloutState, reasons: list[str], forced: bool = False) -> Decision:
    return Decision(Outcome.HOLD.action, forced, tuple(reasons), state, state.stage, state.canary_percent)


def _rollback(state: RolloutState, reasons: list[str], forced: bool = False) -> Decision:
    return Decision(Outcome.ROLLBACK.action, forced, tuple(reasons), state, "rolled_back", 0)


def force_decision(state: RolloutState, action: str, reason: str | None, policy: Policy, actor: str) -> Decision:
    """An operator's decision: promote, hold or rollback, always with a reason."""
    try:
        outcome = Outcome.of(action)
    except ValueError as exc:
        raise ForceError(str(exc)) from None
    if not reason or not reason.strip():
        raise ForceError(f"forcing {action!r} needs a reason (it is kept in the audit trail)")
    reasons = [f"forced {action} by {actor}: {reason.strip()}"]
    match outcome:
        case Outcome.PROMOTE:
            return _promote(state, policy, reasons, forced=True)
        case Outcome.ROLLBACK:
            if state.stage == "rolled_back":
                raise ForceError("the rollout is already rolled back")
            return _rollback(state, reasons, forced=True)
        case Outcome.HOLD:
            return _hold(state, reasons, forced=True)
        case _:
            assert_never(outcome)


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
    normal_failures: Sequence[str] = ()  # scored gates confidently past their limit
    pooled: str = ""  # the nights of the step the verdicts stand on
    stable_requests: int | None = None  # the compared stable side's answers (production: the old model's shadow)


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
        normal_failures=tuple(getattr(evaluation, "normal_failures", ())),
        pooled=getattr(evaluation, "pooled", ""),
        stable_requests=getattr(evaluation, "stable_requests", None),
    )


def _on(evidence: Evidence) -> list[str]:
    return [f"evidence: {evidence.pooled}"] if evidence.pooled else []


def decide(state: RolloutState, evidence: Evidence, policy: Policy) -> Decision:
    """The day's decision from the evidence, under ``policy`` (precedence in the module's docstring)."""
    if state.stage == "rolled_back":
        return _hold(state, ["rollout is rolled back: nothing to decide"])
    if state.stage == "production":
        return _watch(state, evidence, policy)
    if evidence.data_quality_failures:
        return _hold(state, ["data quality failed, so the day cannot be judged:", *evidence.data_quality_failures])
    unit = "paired shadow" if state.stage == "shadow" else "candidate-served"
    if evidence.critical_failures and evidence.candidate_requests > 0:
        return _rollback(state, ["critical failure:", *evidence.critical_failures, *_on(evidence)])
    worse = list(evidence.normal_failures) or [r for r in evidence.score_reasons
                                                if r not in evidence.critical_failures]
    if worse:
        if state.stage == "canary":
            return _rollback(state, [f"confidently worse than the policy allows, so it does not keep serving "
                                     f"{state.canary_percent}%:", *worse, *_on(evidence)])
        return _hold(state, ["confidently worse than the policy allows, so it does not leave shadow "
                             "(roll it back, or force a promotion with a reason):", *worse, *_on(evidence)])
    if state.stage == "canary" and evidence.candidate_requests == 0:
        return _hold(state, [f"the candidate served no request at canary {state.canary_percent}%: its mirrored answers "
                             "judge the model, but this step is there to show it to users (is the router applying "
                             "the rollout's routing?)", *_on(evidence)])
    if evidence.insufficient:
        return _hold(state, ["not enough data yet to promote from this step:", *evidence.insufficient,
                             *_on(evidence)])
    if policy.min_requests is not None and evidence.candidate_requests < policy.min_requests:
        return _hold(state, [f"not enough data: {evidence.candidate_requests} {unit} requests "
                             f"< min_requests {policy.min_requests}", *_on(evidence)])
    score = evidence.score
    if score is None:
        return _hold(state, ["no metric could be judged:", *evidence.not_judged])
    summary = f"every gate this step needs passed (judge score {score:.0f})"
    days = state.days_in_step + 1
    minimum = policy.min_shadow_days if state.stage == "shadow" else policy.min_days_per_step
    if days < minimum:
        return _hold(state, [f"{summary}, but day {days} of {minimum} required in this step", *_on(evidence)])
    return _promote(state, policy, [summary, *_on(evidence), *(f"not judged: {r}" for r in evidence.not_judged)],
                    forced=False)


def _watch(state: RolloutState, evidence: Evidence, policy: Policy) -> Decision:
    """After promotion, while the old model shadows the new one: hold, or roll back on the data."""
    if not evidence.old_variant_deployable:
        return _hold(state, ["rollout is in production and the old variant is torn down: nothing to decide"])
    if evidence.data_quality_failures:
        return _hold(state, ["data quality failed, so the day cannot be judged:", *evidence.data_quality_failures])
    if evidence.critical_failures and evidence.candidate_requests > 0:
        return _rollback(state, ["after promotion, critical failure of the new model against the old one:",
                                 *evidence.critical_failures, *_on(evidence)])
    worse = list(evidence.normal_failures)
    if worse:
        return _rollback(state, ["after promotion, the new model is confidently worse than the old one:", *worse,
                                 *_on(evidence)])
    if evidence.stable_requests == 0:
        return _hold(state, ["production: the old model logged no shadow answers, so there is nothing to compare "
                             "the new one with (is it still shadowing?)"])
    if evidence.score is None or evidence.insufficient:
        return _hold(state, ["production: the new model holds up so far, but not every comparison with the old "
                             "one is decided yet:", *evidence.insufficient, *_on(evidence)])
    return _hold(state, [f"production: the new model holds up against the old one (judge score {evidence.score:.0f})",
                         *_on(evidence), *(f"not judged: {r}" for r in evidence.not_judged)])


def guardrail_rollback(state: RolloutState, alarms: Sequence[str]) -> Decision:
    """The intraday guardrail's rollback of a candidate serving traffic (canary, or the watch after promotion)."""
    if state.stage not in ("canary", "production"):
        raise ForceError(f"the guardrail acts on a canary or a promoted model under watch, not on stage {state.stage!r}")
    return _rollback(state, ["intraday guardrail: a critical regression in the day so far:", *alarms])


# --- approval gates: a nightly promotion into a step of ``require_approval_for`` waits for a person -------------

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
    if today.outcome is Outcome.PROMOTE:
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
    return Decision(Outcome.PROMOTE.action, False, (_approval_reason("approved", operator, reason), *pending.reasons),
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
