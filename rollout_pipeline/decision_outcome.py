"""A decision's outcome and what is stored and shown with it.

The :class:`DecisionOutcome` every decision path returns, the output the asset's metadata and the CLI print
(``decide --json``), the ``decisions.metrics`` JSON (one shape for every path), the validation results read back
from the day's evidence and the review's view of them, the plan line, and the day's evaluation. Read by the
decision service (``decisions``, ``decision_approvals``) and by the backtest; no decision is made here.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from rollout_pipeline.decision_requests import BlockedDay, DecisionRefused
from rollout_pipeline.domain.codec import CodecError, decode
from rollout_pipeline.domain.decide import Decision
from rollout_pipeline.domain.evaluate import Evaluation
from rollout_pipeline.domain.plan import plan_line, plan_rollout, profile_of_day
from rollout_pipeline.review.content import HistoryPoint, Review, Validation, history_points, review_from_record
from rollout_pipeline.store import rollouts as repo
from rollout_pipeline.store.evidence import DayEvidence, outcome_count
from rollout_pipeline.steps import evaluate_day
from rollout_pipeline.validation.suites import LOG_QUALITY, SuiteResult


@dataclass(frozen=True)
class DecisionOutcome:
    """The stored (or, in a dry run, computed) decision, whether it was applied, and its review."""

    record: repo.DecisionRecord
    applied: bool
    dry_run: bool
    review: Review
    history: tuple[HistoryPoint, ...]
    unapplied_reason: str | None = None
    notifications: str | None = None  # how its announcement went (:func:`announce`); None: not announced here

    def output(self) -> dict:
        """The decision as the asset's metadata holds it and the CLI prints it (``decide --json``)."""
        return {**decision_output(self.record, self.dry_run), "applied": self.applied}


def decision_output(record: repo.DecisionRecord, dry_run: bool = False) -> dict:
    """A stored decision as the CLI prints it (``approval``: None when none was needed)."""
    return {"decision_id": None if dry_run else record.id, "action": record.action,
            "forced": record.forced, "reasons": list(record.reasons), "dry_run": dry_run,
            "from": {"stage": record.stage_before, "canary_percent": record.percent_before},
            "to": {"stage": record.stage_after, "canary_percent": record.percent_after},
            "approval": record.approval}


def suite_results(evidence: DayEvidence | None) -> dict[str, SuiteResult]:
    """The validation results stored with the evidence, by suite name."""
    if evidence is None:
        return {}
    out = {}
    for name, data in evidence.validations.items():
        try:
            out[name] = decode(SuiteResult, data)
        except CodecError as exc:
            raise DecisionRefused(f"the stored result of {name} cannot be read: {exc}") from None
    return out


def data_quality_failures(suites: dict[str, SuiteResult]) -> list[str]:
    """What the blocking suites found wrong; a day never validated for log quality counts as a failure."""
    if LOG_QUALITY not in suites:
        return [f"{LOG_QUALITY}: the day's logs were not validated (run the log_quality check with day_summary)"]
    return [f for s in suites.values() if s.blocking for f in s.failures]


def review_validations(suites: dict[str, SuiteResult]) -> tuple[Validation, ...]:
    return tuple(Validation(name, s.passed, "ERROR" if s.blocking else "WARN", tuple(s.failures),
                            tuple(s.not_judged))
                 for name, s in sorted(suites.items()))


def decision_metrics(source: str, run_id: str | None, evidence: DayEvidence | None, evaluation: Evaluation | None,
                     failures: list[str], review: Review) -> dict:
    """The ``decisions.metrics`` JSON, one shape for every path: what evidence existed, the judge, the review."""
    stored_review = review.to_json()  # JSON-safe: non-finite numbers are None
    return {
        "source": source,
        "evidence": None if evidence is None else {
            "id": evidence.id, "run_id": evidence.run_id, "stage": evidence.stage,
            "canary_percent": evidence.canary_percent, "routing_version": evidence.routing_version,
            "analysed_at": evidence.created_at.isoformat() if evidence.created_at else None,
            "validated": sorted(evidence.validations), "judged": evidence.evaluation is not None,
        },
        "score": stored_review["score"],
        "candidate_requests": evaluation.candidate_requests if evaluation else None,
        "stable_requests": evaluation.stable_requests if evaluation else None,
        "compared": review.compared,
        "checks": stored_review["checks"],
        "data_quality_failures": list(failures),
        "blocked_run": run_id if source == BlockedDay.source else None,
        # The review's numbers go with the decision, so `rollout-pipeline report` needs no Dagster run.
        "review": stored_review,
    }


def day_evaluation(connection: sa.Connection, evidence: DayEvidence | None, rollout: repo.Rollout) -> Evaluation | None:
    """The day's evaluation: the judged one, else (a run stopped before the judge) computed from the step's nights."""
    if evidence is None:
        return None
    if evidence.evaluation is not None:
        return evidence.evaluation
    return evaluate_day(connection, rollout, evidence.summary)


def plan_after(evidence: DayEvidence | None, result: Decision, policy) -> str:
    """The nights left to production from where the decision leaves the rollout, at this day's traffic."""
    if evidence is None or result.stage_after not in ("shadow", "canary"):
        return ""
    profile = profile_of_day(evidence.summary, outcomes=outcome_count(evidence.summary) > 0)
    return plan_line(profile, plan_rollout(profile, policy), result.stage_after, result.percent_after)


def outcome_of(connection, record, *, applied: bool, dry_run: bool, why: str | None = None) -> DecisionOutcome:
    from_row = repo.get_decision(connection, record.id) or record
    history = history_points([r for r in repo.decision_history(connection, record.model_name)
                              if r.rollout_id == record.rollout_id], until=record.day.isoformat())
    return DecisionOutcome(from_row, applied, dry_run, review_from_record(from_row), history, why)

