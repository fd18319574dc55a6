"""From a step's nights to judged metrics: every gate of the registry on the pooled nights, then the score.

The gates live in ``domain.gates`` (one function each, registered by its family's module:
``GATES`` and ``INTEGRITY`` come from the registry, in order); this module pools the
nights of the step (``domain.pool``), runs the gates for the stage and the step's
bar, scores the metric gates that reached a verdict (Kayenta's weighted sum, for
the review), and says what could not be judged yet. Integrity gates judge the
latest night alone and never enter the score: their failures hold the day.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rollout_pipeline.domain.gates import (
    GATES,
    INTEGRITY,
    MetricCheck,
    answer_sides,
    compared_sides,
    context_for,
    sample_values,
)
from rollout_pipeline.domain.scoring import score_metrics
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.domain.pool import pool, pool_info
from rollout_pipeline.domain.summary import DaySummary

__all__ = ["Evaluation", "MetricCheck", "compared_sides", "evaluate", "outcomes_in", "sample_values", "step_label",
           "weights_for"]

JUDGED = ("pass", "high", "low")


@dataclass(frozen=True)
class Evaluation:
    """All gates of a step's nights, the judge score, and how much candidate data there was."""

    checks: tuple[MetricCheck, ...]
    score: float | None
    candidate_requests: int
    stable_requests: int
    compared: str  # "stable served vs candidate shadow" | "stable served vs candidate served" | ...
    integrity: tuple[MetricCheck, ...] = ()
    pooled: str = ""  # the nights of the step behind the verdicts, e.g. "3 nights at canary 1% (...): ..."
    nights: int = 1

    @property
    def critical_failures(self) -> list[str]:
        return [c.reason for c in self.checks if c.criticality == "critical" and c.failed]

    @property
    def failures(self) -> list[str]:
        return [c.reason for c in self.checks if c.failed and c.criticality != "report-only"]

    @property
    def normal_failures(self) -> list[str]:
        """Scored (normal) gates confidently past their limit."""
        return [c.reason for c in self.checks if c.failed and c.criticality == "normal"]

    @property
    def integrity_failures(self) -> list[str]:
        return [c.reason for c in self.integrity if c.failed]

    @property
    def insufficient(self) -> list[str]:
        """Gates this step needs a verdict from that have none yet: the day cannot promote on them."""
        return [c.reason for c in self.checks if c.criticality != "report-only" and c.insufficient
                and getattr(c, "required", True)]

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


def step_label(stage: str, percent: int) -> str:
    """How a step reads: "shadow", "canary 20%", "production"."""
    return f"canary {percent}%" if stage == "canary" else stage


def outcomes_in(nights: Sequence[DaySummary]) -> bool:
    """Whether any actual outcome shows in the nights (whole-day counts or the outcome samples)."""
    return any(v.actuals for n in nights for v in n.variants) or any(
        r.actual is not None or r.actual_label is not None for n in nights for r in n.outcome_sample())


def evaluate(nights: DaySummary | Sequence[DaySummary], stage: str, policy: Policy, *, percent: int | None = None,
             outcomes_seen: bool | None = None) -> Evaluation:
    """Judge the candidate against the stable model on a step's nights (oldest first; or one night's summary)
    for a rollout in ``stage`` at ``percent``.

    ``outcomes_seen``: whether any actual outcome ever arrived for the rollout (the
    store knows); None infers it from the nights themselves.
    """
    if isinstance(nights, DaySummary):
        nights = (nights,)
    nights = tuple(nights)[-policy.pool_nights:]
    if percent is None:
        percent = {"shadow": 0, "production": 100}.get(stage, policy.canary_steps[0])
    pooled = pool(nights)
    if outcomes_seen is None:
        outcomes_seen = outcomes_in(nights)
    ctx = context_for(pooled, stage, policy, today=nights[-1] if len(nights) > 1 else None, percent=percent,
                      outcomes_seen=outcomes_seen)
    integrity = tuple(c for gate in INTEGRITY.values() if (c := gate(ctx)) is not None)
    checks = tuple(c for gate in GATES.values() if (c := gate(ctx)) is not None)
    judged = [c for c in checks if c.criticality != "report-only" and c.classification in JUDGED]
    score = None
    if judged:
        groups = {c.group for c in judged}
        score = score_metrics([(c.classification, c.group, c.criticality) for c in judged],
                              weights_for(groups, dict(policy.group_weights))).score
    stable, cand, compared = compared_sides(pooled, stage)
    cand_sides, _ = answer_sides(pooled, stage)
    info = pool_info(nights, cand_sides)
    cand_requests = cand.answers if cand else 0
    return Evaluation(checks, score, cand_requests, stable.requests if stable else 0, compared, integrity,
                      info.describe(step_label(stage, percent)), len(nights))
