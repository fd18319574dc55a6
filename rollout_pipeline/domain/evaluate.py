"""From a day summary to judged metrics: every gate of the registry, then the Kayenta-style score.

The gates live in ``domain.gates`` (one function each); this module runs them for a
stage, scores the metric gates that reached a verdict, and says what could not be
judged. Integrity gates never enter the score: their failures hold the day.
"""

from __future__ import annotations

from dataclasses import dataclass

from rollout_pipeline.domain.gates import (
    GATES,
    INTEGRITY,
    MetricCheck,
    compared_sides,
    context_for,
    sample_values,
)
from rollout_pipeline.domain.judge import score_metrics
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.domain.summary import DaySummary

__all__ = ["Evaluation", "MetricCheck", "compared_sides", "evaluate", "sample_values", "weights_for"]

JUDGED = ("pass", "high", "low")


@dataclass(frozen=True)
class Evaluation:
    """All gates of a day, the judge score, and how much candidate data there was."""

    checks: tuple[MetricCheck, ...]
    score: float | None
    candidate_requests: int
    stable_requests: int
    compared: str  # "stable served vs candidate shadow" | "stable served vs candidate served" | ...
    integrity: tuple[MetricCheck, ...] = ()
    pooled: str = ""  # the nights of the step behind the verdicts, e.g. "3 nights at 1%: 5,210 requests, 412 entities"

    @property
    def critical_failures(self) -> list[str]:
        return [c.reason for c in self.checks if c.criticality == "critical" and c.failed]

    @property
    def failures(self) -> list[str]:
        return [c.reason for c in self.checks if c.failed and c.criticality != "report-only"]

    @property
    def integrity_failures(self) -> list[str]:
        return [c.reason for c in self.integrity if c.failed]

    @property
    def insufficient(self) -> list[str]:
        """Gates (critical or scored) below their minimum sample: the day cannot promote on them."""
        return [c.reason for c in self.checks if c.criticality != "report-only" and c.insufficient]

    @property
    def not_judged(self) -> list[str]:
        """Gates that do not apply today (not report-only), named with why: shown, never decisive."""
        return [f"{c.name} ({c.criticality}): {c.reason}" for c in self.checks
                if c.classification == "n/a" and c.criticality != "report-only"]


def weights_for(groups: set[str], weights: dict[str, float]) -> dict[str, float]:
    """The policy's group weights for the groups judged today, rescaled to 100 when they are all weighted.

    A weight for a group with nothing judged today would otherwise be lost, and a day
    where every metric passes could not reach 100.
    """
    present = {g: w for g, w in weights.items() if g in groups}
    if present and set(present) == groups:
        total = sum(present.values())
        return {g: 100 * w / total for g, w in present.items()} if total > 0 else {}
    return present


def evaluate(summary: DaySummary, stage: str, policy: Policy) -> Evaluation:
    """Judge the candidate against the stable model on ``summary`` for a rollout in ``stage``."""
    ctx = context_for(summary, stage, policy)
    integrity = tuple(c for gate in INTEGRITY.values() if (c := gate(ctx)) is not None)
    checks = tuple(c for gate in GATES.values() if (c := gate(ctx)) is not None)
    judged = [c for c in checks if c.criticality != "report-only" and c.classification in JUDGED]
    score = None
    if judged:
        groups = {c.group for c in judged}
        score = score_metrics([(c.classification, c.group, c.criticality) for c in judged],
                              weights_for(groups, dict(policy.group_weights))).score
    stable, cand, compared = compared_sides(summary, stage)
    pr = summary.pairing
    if stage == "shadow":
        cand_requests = round(pr.matched / pr.sample_fraction) if pr is not None and pr.sample_fraction else 0
    else:
        cand_requests = cand.requests if cand else 0
    return Evaluation(checks, score, cand_requests, stable.requests if stable else 0, compared, integrity)
