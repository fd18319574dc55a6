"""The one decision path: a day's evidence (or a force) in, one transaction out.

Every way a decision is made calls this, each with its own frozen request type:
the ``decision`` asset (schedule, UI, CLI: ``Nightly``, or ``Force`` with a
reason), the hold of a run stopped by its blocking check (the CLI's runner and
the ``blocked_day_hold`` sensor: ``BlockedDay``), the manual rollback
(``manual_rollback``: ``ManualRollback``), the intraday guardrail (``Guardrail``)
and a person's verdict on a pending promotion (``Approval``). In one transaction it
reads the day's evidence from the database (``store.evidence``), runs the policy
state machine, stores the decision with its evidence and review in one shape,
and applies it to the rollout and its routing. A decision whose routing cannot
be applied at once (the routing changed under it) stays stored and unapplied,
and the routing sensor applies it later. No Dagster here: pure domain + store.

A decision recorded outside a Dagster run's ``decision`` asset (a person's verdict,
a blocked day's hold, a manual rollback) is announced here once its transaction has
committed (:func:`announce`): no caller posts it itself.

This module holds the dispatch and the day's path (read, decide, store, apply); a person's verdict on a pending
promotion and its expiry are in ``decision_approvals``, the outcome and the stored metrics and review in
``decision_outcome``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from rollout_pipeline.decision_approvals import (as_decision, decide_approval, record_expiry, recorded_on,
                                                 today_of)
from rollout_pipeline.decision_outcome import (DecisionOutcome, data_quality_failures, day_evaluation,
                                               decision_metrics, outcome_of, plan_after, review_validations,
                                               suite_results)
from rollout_pipeline.decision_requests import (Approval, BlockedDay, DecisionRefused, DecisionRequest, Force,
                                                Guardrail, ManualRollback, Nightly, unknown_request)
from rollout_pipeline.domain.decide import (Decision, ForceError, Outcome, RolloutState, approval_expired,
                                            approval_expires_on, decide, evidence_from, force_decision,
                                            guardrail_rollback, needs_approval, waiting_hold, worst)
from rollout_pipeline.domain.evaluate import Evaluation
from rollout_pipeline.notify import Announcer, channels_from_environment
from rollout_pipeline.review.content import build_review
from rollout_pipeline.store import rollouts as repo
from rollout_pipeline.store.evidence import DayEvidence, load_evidence
from rollout_pipeline.store.rollback import rollback_target
from rollout_pipeline.store.routing import ConcurrentUpdate, read_routing
from rollout_pipeline.validation.suites import SuiteResult

log = logging.getLogger(__name__)


def make_decision(engine: sa.Engine, request: DecisionRequest) -> DecisionOutcome:
    """Decide ``request`` in one transaction (stored and applied together); a dry run computes and rolls back."""
    with engine.begin() as connection:
        outcome = decide_in(connection, request)
        if _dry_run(request):
            connection.rollback()  # computed and shown, never stored nor applied
    return outcome


def decide_in(connection: sa.Connection, request: DecisionRequest) -> DecisionOutcome:
    """Decide ``request`` inside the caller's transaction: store the decision and apply it.

    Raises ``RolloutError`` (``DecisionRefused``, ``ConcurrentDecision``) with a
    one-line message when it must not decide; nothing is written then.
    """
    match request:
        case Nightly() | BlockedDay():
            return _decide_day(connection, request, _judged)
        case Force() | ManualRollback():
            return _decide_day(connection, request, _forced)
        case Guardrail():
            return _decide_day(connection, request, _guardrail)
        case Approval():
            return decide_approval(connection, request)
        case _:
            unknown_request(request)


@dataclass(frozen=True)
class _Day:
    """What a day's decision reads before deciding, in the caller's transaction."""

    rollout: repo.Rollout
    seen: repo.DecisionRecord | None  # the day's live decision, which ours supersedes
    waiting: repo.DecisionRecord | None  # an earlier day's promotion waiting for approval
    state: RolloutState
    evidence: DayEvidence | None
    suites: dict[str, SuiteResult]
    failures: list[str]
    evaluation: Evaluation | None


# A handler: the decision of a request on its day, and the promotion it leaves waiting (None: none).
Handler = Callable[[sa.Connection, Any, _Day], tuple[Decision, repo.DecisionRecord | None]]


def _judged(connection: sa.Connection, request: Nightly | BlockedDay,
            day: _Day) -> tuple[Decision, repo.DecisionRecord | None]:
    """The policy's decision from the day's stored evidence; a later night holds while a promotion waits."""
    if day.evidence is None:
        raise DecisionRefused(
            f"{request.model} {request.day} was never analysed: run the whole day (`rollout-pipeline decide` without "
            "--force, or materialize day_summary, judgement and decision), or force an action with a reason")
    # A decision of the day recorded after this run collected its evidence raced it; a run deciding from
    # another run's stored evidence (the decision alone) is a later re-decision, as a force is.
    refuse_stale_evidence(day.evidence, day.state, day.seen if day.evidence.run_id == request.run_id else None,
                          connection)
    deployable = repo.old_variant_deployable(connection, day.rollout)
    result = decide(day.state, evidence_from(day.evaluation, day.failures, old_variant_deployable=deployable),
                    day.rollout.policy)
    if day.waiting is not None and worst(result.outcome, Outcome.HOLD) is Outcome.HOLD:
        # A promotion waits for a person: tonight holds, saying whether today's evidence still passes.
        return waiting_hold(day.state, day.waiting.day, as_decision(day.waiting), result), day.waiting
    return result, None  # a rollback does not wait: it is applied, and the promotion can no longer be approved


def _forced(connection: sa.Connection, request: Force | ManualRollback, day: _Day) -> tuple[Decision, None]:
    """A person's action with a reason: a manual rollback is a forced rollback."""
    action = request.action if isinstance(request, Force) else Outcome.ROLLBACK.action
    try:
        return force_decision(day.state, action, request.reason, day.rollout.policy, request.actor), None
    except ForceError as exc:
        raise DecisionRefused(str(exc)) from None


def _guardrail(connection: sa.Connection, request: Guardrail, day: _Day) -> tuple[Decision, None]:
    """The guardrail's rollback of a candidate serving traffic."""
    try:
        return guardrail_rollback(day.state, request.alarms), None
    except ForceError as exc:
        raise DecisionRefused(str(exc)) from None


def _dry_run(request: DecisionRequest) -> bool:
    return isinstance(request, Nightly | Force | BlockedDay) and request.dry_run


def _decide_day(connection: sa.Connection, request: Nightly | BlockedDay | Force | ManualRollback | Guardrail,
                handler: Handler) -> DecisionOutcome:
    """Read the day, decide it with ``handler``, store the decision with its evidence and review, and apply it."""
    model, day, dry_run = request.model, request.day, _dry_run(request)
    forced = isinstance(request, Force | ManualRollback)
    rollout = repo.rollout_for_day(connection, model, day)
    refuse_an_older_day(connection, rollout, day, forced)
    seen = repo.live_decision(connection, model, day)  # a run deciding this day meanwhile makes ours fail, not double
    if seen is not None and _stands(seen, request):
        return outcome_of(connection, seen, applied=seen.applied_at is not None, dry_run=dry_run)
    waiting = repo.open_approval(connection, rollout.id)
    if waiting is not None and waiting.day >= day:
        waiting = None  # this day's own pending promotion (a re-run supersedes it), or a later one
    if waiting is not None and isinstance(request, Nightly) and not dry_run \
            and approval_expired(recorded_on(waiting), today_of(request), rollout.policy):
        record_expiry(connection, waiting, rollout, request.run_id)  # the night that sees it expires it
        waiting = None
    state = repo.state_before(connection, rollout, day)
    run_id = getattr(request, "run_id", None)
    # The guardrail acts on the day so far: no analysis of the day exists yet, none is read.
    evidence = None if isinstance(request, Guardrail) else load_evidence(connection, model, day, run_id=run_id)
    if evidence is not None and evidence.rollout_id != rollout.id:
        evidence = None  # an analysis under an earlier rollout is no evidence for this one
    suites = suite_results(evidence)
    failures = data_quality_failures(suites) if evidence is not None else []
    evaluation = day_evaluation(connection, evidence, rollout)
    result, waiting = handler(connection, request, _Day(rollout, seen, waiting, state, evidence, suites, failures,
                                                        evaluation))
    approval = "pending" if isinstance(request, Nightly) and needs_approval(result, rollout.policy) else None
    review = build_review(model, day.isoformat(), result, request.actor, evaluation=evaluation,
                          summary=evidence.summary if evidence else None, validations=review_validations(suites),
                          data_quality_failures=failures, plan=plan_after(evidence, result, rollout.policy))
    metrics = decision_metrics(request.source, run_id, evidence, evaluation, failures, review)
    if waiting is not None and result.action == "hold" and not result.forced:
        metrics["waiting_for"] = waiting.day.isoformat()  # the promotion of that day may still be approved
    if approval == "pending":  # the window counts from today, when it is recorded, not from the logs' day
        expires = approval_expires_on(today_of(request), rollout.policy)
        metrics["approval"] = {"state": "pending", "recorded_on": today_of(request).isoformat(),
                               "expires_after": expires.isoformat()}
    now = dt.datetime.now(dt.UTC)  # one time for the decision and its routing change: one transaction
    record = repo.record_decision(connection, rollout, day, result, actor=request.actor, metrics=metrics,
                                  run_id=run_id, now=now, expected_previous=seen.id if seen else None,
                                  approval=approval)
    applied, why = False, None
    if approval == "pending":
        why = (f"waits for approval (until {metrics['approval']['expires_after']}): "
               f"`rollout-pipeline approve --model {model} --date {day} --reason ...`")
    elif not dry_run:
        try:
            with connection.begin_nested():
                applied = repo.apply_decision(connection, record.id, actor=request.actor, now=now)
        except (ConcurrentUpdate, repo.RolloutError) as exc:
            why = str(exc)  # stored, not applied: the routing sensor applies it (or fails naming why)
    return outcome_of(connection, record, applied=applied, dry_run=dry_run, why=why)


def _stands(seen: repo.DecisionRecord, request: Nightly | BlockedDay | Force | ManualRollback | Guardrail) -> bool:
    """Whether the day's live decision stays as it is instead of being decided again."""
    if isinstance(request, BlockedDay) and seen.metrics.get("blocked_run") == request.run_id:
        return True  # the hold of this very blocked run is recorded already
    if isinstance(request, Force | ManualRollback):
        return False  # a force with a reason overrides what follows
    # The guardrail rolled the day back while it was under way: the night's analysis of the completed day keeps
    # that decision. A person approved the day's promotion: a re-run must not make it pending again.
    return ((seen.metrics.get("source") == Guardrail.source and not isinstance(request, Guardrail))
            or seen.approval == "approved")


def refuse_an_older_day(connection: sa.Connection, rollout: repo.Rollout, day: dt.date, forced: bool) -> None:
    """``DecisionRefused`` for a day older than the rollout's latest decided one, unless forced."""
    latest = repo.latest_decided_day(connection, rollout.id)
    if latest is not None and day < latest and not forced:
        raise DecisionRefused(
            f"refusing to decide {rollout.model_name} {day}: {latest} is already decided and a canary never steps "
            "back in time; force an action with a reason to override")


def refuse_stale_evidence(evidence: DayEvidence, state: RolloutState, seen: repo.DecisionRecord | None,
                          connection: sa.Connection) -> None:
    """``ConcurrentDecision`` when the day's evidence was overtaken while it was analysed: another decision of
    the day recorded since it was collected (a force, a verdict), or the rollout now in another state.

    The evidence is judged under the stage it was collected in; deciding it from another state (an approval
    applied while the night's analysis ran) would step from a state it says nothing about. A run that starts
    after the day's decision (a re-run) collects anew and supersedes it, as before.
    """
    if seen is not None and seen.created_at > evidence.created_at:
        raise repo.ConcurrentDecision(
            f"{evidence.model_name} {evidence.day} was decided by another run while this one was deciding "
            f"(decision #{seen.id}: {seen.action} by {seen.actor}, run {seen.run_id}, after this run's analysis "
            "began); this decision is not recorded. Re-run the day to supersede it.")
    share = state.canary_percent if evidence.canary_percent is not None else None
    if (evidence.stage, evidence.canary_percent) == (state.stage, share):
        return
    routing = read_routing(connection, evidence.model_name)
    raise repo.ConcurrentDecision(
        f"{evidence.model_name} {evidence.day}'s evidence was collected under {evidence.collected_under()}, but the "
        f"rollout is at {state.stage} {state.canary_percent}%"
        + (f" (routing v{routing.version})" if routing else "") + " now: it changed while the day was analysed; "
        "this decision is not recorded. Re-run the day to decide it on the new state.")


def manual_rollback(connection: sa.Connection, model: str, reason: str, *, actor: str,
                    day: dt.date) -> DecisionOutcome:
    """Roll ``model``'s latest rollout back and apply it in this transaction (``store.rollback`` says when there
    is something to roll back to). Raises RolloutError saying why when it cannot be rolled back now."""
    rollback_target(connection, model)
    outcome = decide_in(connection, ManualRollback(model, day, actor, reason))
    if not outcome.applied:
        raise repo.RolloutError(f"cannot roll back {model} now: "
                                f"{outcome.unapplied_reason or 'the routing did not change'}")
    return outcome


def make_approval(engine: sa.Engine, request: Approval, *, notifier: Announcer | None = None,
                  logger=None) -> DecisionOutcome:
    """A person's verdict on a pending promotion in one transaction (stored and applied together), then announced.

    Raises ``DecisionRefused`` in one line when it cannot be given; a promotion found expired is recorded as
    its hold first (committed), then refused saying so.
    """
    with engine.begin() as connection:
        outcome = decide_in(connection, request)
    if outcome.record.approval == "expired":
        raise DecisionRefused(f"too late: {outcome.record.reasons[0]} (recorded as decision #{outcome.record.id})")
    return announce(outcome, notifier, logger)


def hold_blocked_day(engine: sa.Engine, model: str, day: dt.date, run_id: str, *, actor: str, dry_run: bool = False,
                     notifier: Announcer | None = None, logger=None) -> DecisionOutcome:
    """Decide (hold) and apply a day whose logs failed the blocking checks of run ``run_id``, once per run: the
    hold is announced when it is recorded, not when a second caller (the CLI's runner, then the run-failure
    sensor) finds it recorded already; a dry run records and announces nothing."""
    with engine.connect() as connection:
        seen = repo.live_decision(connection, model, day)
    outcome = make_decision(engine, BlockedDay(model, day, actor, run_id=run_id, dry_run=dry_run))
    if dry_run or (seen is not None and seen.id == outcome.record.id):
        return outcome
    return announce(outcome, notifier, logger)


def announce(outcome: DecisionOutcome, notifier: Announcer | None = None, logger=None) -> DecisionOutcome:
    """Post a committed decision through ``notifier`` (default: the channels of the environment); the outcome
    with how it went. A failed post is a warning on ``logger``, never a failed decision: it is recorded."""
    record, logger = outcome.record, logger or log
    try:
        line = (notifier or channels_from_environment()).announce_decision(
            outcome.output(), model=record.model_name, day=record.day.isoformat(), actor=record.actor,
            run_id=record.run_id, log=logger)
    except Exception as exc:  # noqa: BLE001 - a notification never fails the decision it reports
        logger.warning("notification of decision %s not sent: %s", record.id, exc)
        line = f"not sent: {exc}"
    return dataclasses.replace(outcome, notifications=line)

