"""Promotions waiting for a person: the verdict on one, and its expiry.

A promotion the policy wants approved is recorded pending; :func:`decide_approval` takes a person's verdict on
it (approve, reject, reject with a rollback) inside the caller's transaction, and :func:`record_expiry` records
that nobody approved it in time (a hold, under the policy's name), both for the decision service
(``decisions.decide_in``, ``decisions.make_approval``). :func:`pending_approval` is what ``status`` shows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa

from rollout_pipeline.decision_outcome import DecisionOutcome, day_evaluation, outcome_of
from rollout_pipeline.decision_requests import VERDICTS, Approval, DecisionRefused, Nightly
from rollout_pipeline.domain.decide import (Decision, ForceError, RolloutState, approval_expired, approval_expires_on,
                                            approve_promotion, expire_promotion, reject_promotion)
from rollout_pipeline.review.content import build_review
from rollout_pipeline.store import rollouts as repo
from rollout_pipeline.store.evidence import load_evidence


def as_decision(record: repo.DecisionRecord) -> Decision:
    """A stored decision as the state machine's record."""
    return Decision(record.action, record.forced, tuple(record.reasons),
                    RolloutState(record.stage_before, record.percent_before), record.stage_after, record.percent_after)


def today_of(request: Nightly | Approval) -> dt.date:
    return request.today or dt.datetime.now(dt.UTC).date()


def recorded_on(pending: repo.DecisionRecord) -> dt.date:
    """The UTC day a promotion was recorded as pending: its approval window counts from there (a day analysed
    late is not expired at birth). Rows stored before this was kept: the day their row was written."""
    day = (pending.metrics.get("approval") or {}).get("recorded_on")
    if day:
        return dt.date.fromisoformat(day)
    created = pending.created_at
    return (created.astimezone(dt.UTC) if created.tzinfo else created).date()


def expiry_actor(rollout: repo.Rollout) -> str:
    """Who an expiry is recorded under: the rollout's policy (its version), never whoever happened to look."""
    return f"policy {rollout.policy_version}"


def record_expiry(connection: sa.Connection, pending: repo.DecisionRecord, rollout: repo.Rollout,
            run_id: str | None) -> repo.DecisionRecord:
    """Record that nobody approved ``pending`` in time: a hold of its day, superseding it (applied: no move),
    recorded under the policy's name."""
    recorded = recorded_on(pending)
    expires = approval_expires_on(recorded, rollout.policy)
    result = expire_promotion(as_decision(pending), pending.day, rollout.policy)
    # The window counted from the day the promotion was recorded as pending, not from its logs' day.
    result = dataclasses.replace(result, reasons=(
        result.reasons[0].replace(f"not approved by {approval_expires_on(pending.day, rollout.policy)}",
                                  f"not approved by {expires}", 1)
        .replace("); hold", f", counted from {recorded} when it was recorded as pending); hold", 1),))
    metrics = {**pending.metrics, "source": "expiry",
               "approval": {"state": "expired", "of": pending.id, "recorded_on": recorded.isoformat(),
                            "expires_after": expires.isoformat()}}
    actor = expiry_actor(rollout)
    now = dt.datetime.now(dt.UTC)
    record = repo.record_decision(connection, rollout, pending.day, result, actor=actor, metrics=metrics,
                                  run_id=run_id, now=now, expected_previous=pending.id, approval="expired")
    repo.apply_decision(connection, record.id, actor=actor, now=now)
    return record


def decide_approval(connection: sa.Connection, request: Approval) -> DecisionOutcome:
    """A person's verdict on a promotion waiting for approval: apply it, or hold (or roll back) instead.

    Refused in one line when nothing waits on that day, when it was decided already, without a reason, or when
    a later decision moved the rollout. An approval past its expiry records the expiry (a hold) and returns it:
    the caller commits that and tells the person (``record.approval == "expired"``).
    """
    model, day = request.model, request.day
    rollout = repo.rollout_for_day(connection, model, day)
    if request.verdict not in VERDICTS:
        raise DecisionRefused(f"unknown verdict {request.verdict!r}: use approve or reject")
    verb = "approve" if request.verdict == "approve" else "reject"
    seen = repo.live_decision(connection, model, day)
    if seen is None:
        raise DecisionRefused(f"nothing to {verb}: {model} {day} has no decision")
    if seen.approval is None:
        raise DecisionRefused(f"nothing to {verb}: {model} {day}'s decision #{seen.id} ({seen.action}) "
                              "does not wait for approval")
    if seen.approval != "pending":
        raise DecisionRefused(f"nothing to {verb}: {model} {day}'s promotion is already {seen.approval} "
                              f"(decision #{seen.id} by {seen.actor} at {seen.created_at:%Y-%m-%d %H:%M} UTC)")
    if not (request.reason and request.reason.strip()):
        raise DecisionRefused(f"to {verb} needs a reason (it is kept in the audit trail)")
    moved = [d for d in repo.decisions_after(connection, rollout.id, day)
             if d.metrics.get("waiting_for") != day.isoformat()]
    if moved:
        d = moved[0]
        raise DecisionRefused(f"cannot {verb} {model} {day}: decision #{d.id} of {d.day} ({d.action}) was taken "
                              "since; decide a new day instead")
    if approval_expired(recorded_on(seen), today_of(request), rollout.policy):
        expired = record_expiry(connection, seen, rollout, request.run_id)
        return outcome_of(connection, expired, applied=True, dry_run=False)
    pending = as_decision(seen)
    try:
        if request.verdict == "approve":
            result = approve_promotion(pending, request.actor, request.reason)
        else:
            result = reject_promotion(pending, request.actor, request.reason, rollback=request.rollback)
    except ForceError as exc:
        raise DecisionRefused(str(exc)) from None
    state = "approved" if request.verdict == "approve" else "rejected"
    now = dt.datetime.now(dt.UTC)
    evidence = load_evidence(connection, model, day)
    evaluation = (day_evaluation(connection, evidence, rollout)
                  if evidence is not None and evidence.rollout_id == rollout.id else None)
    review = build_review(model, day.isoformat(), result, request.actor, evaluation=evaluation,
                          summary=evidence.summary if evaluation else None)
    stored = review.to_json()
    metrics = {**seen.metrics, "source": request.source, "review": stored, "score": seen.metrics.get("score"),
               "approval": {"state": state, "of": seen.id, "operator": request.actor, "reason": request.reason.strip(),
                            "at": now.isoformat(), "rollback": bool(request.rollback)}}
    record = repo.record_decision(connection, rollout, day, result, actor=request.actor, metrics=metrics,
                                  run_id=request.run_id, now=now, expected_previous=seen.id, approval=state)
    applied = repo.apply_decision(connection, record.id, actor=request.actor, now=now)
    return outcome_of(connection, record, applied=applied, dry_run=False)


def pending_approval(connection: sa.Connection, model: str) -> dict | None:
    """The model's promotion waiting for approval, as ``status --json`` shows it (None: nothing waits)."""
    rollout = repo.latest_rollout(connection, model)
    record = repo.open_approval(connection, rollout.id) if rollout else None
    if record is None:
        return None
    return {"state": "pending", "decision_id": record.id, "date": record.day.isoformat(),
            "to": {"stage": record.stage_after, "canary_percent": record.percent_after},
            "expires_after": approval_expires_on(recorded_on(record), rollout.policy).isoformat(),
            "reasons": list(record.reasons)}

