"""Kayenta's weighted-sum scorer (``WeightedSumScorer.scala``) over classified metrics.

Scoring (``score_metrics``)
    ``report-only`` metrics are ignored. Per group, score = pass / (pass + high + low)
    x 100. A group with only ``nodata`` metrics has score 0, but the weighted sum
    counts it as 100 (Kayenta), so it costs nothing. Missing data is caught by the
    next rule instead: if at least half of the scored metrics are ``nodata``, the
    score is 0. Any ``critical`` metric that is not ``pass`` also makes the score 0.
    Weighted groups keep their weight. Groups without one share what the weights
    leave of 100 equally. The weight of a group with no metrics is lost. The sum is
    rounded half-up to 2 decimals.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from rollout_pipeline.domain.judge import CLASSIFICATIONS, CRITICALITIES, Classification, Criticality

NODATA_LIMIT_PERCENT = 50.0


@dataclass(frozen=True)
class GroupScore:
    """One group's share of the score: pass / (pass + high + low) x 100, with its counts."""

    name: str
    score: float
    weight: float
    no_data: bool
    passed: int
    high: int
    low: int
    nodata: int


@dataclass(frozen=True)
class ScoreResult:
    """Weighted-sum score (0-100) of a set of metric classifications, with reasons."""

    score: float
    groups: tuple[GroupScore, ...]
    reasons: tuple[str, ...]

    @property
    def group_scores(self) -> dict[str, float]:
        """Score of each group by name."""
        return {group.name: group.score for group in self.groups}


def score_metrics(
    results: Iterable[Mapping[str, object] | tuple[str, str, str]],
    group_weights: Mapping[str, float] | None = None,
) -> ScoreResult:
    """Kayenta's weighted-sum score (0-100) of classified metrics; critical failures or >=50% no-data give 0."""
    weights = dict(group_weights or {})
    for group, weight in weights.items():
        if not (math.isfinite(weight) and weight >= 0.0):
            raise ValueError(f"weight of group {group!r} must be a finite number >= 0, not {weight!r}")
    if sum(weights.values()) > 100.0 + 1e-9:
        raise ValueError(f"group weights sum to {sum(weights.values()):g}, more than 100")

    metrics = [_scored_metric(item, index) for index, item in enumerate(results)]
    ignored = sum(1 for metric in metrics if metric.criticality == "report-only")
    scored = [metric for metric in metrics if metric.criticality != "report-only"]
    groups, reasons = _group_scores(scored, weights)
    if ignored:
        reasons.append(f"{ignored} report-only metric(s) not scored")
    total = _total(scored, groups, reasons)
    return ScoreResult(score=total, groups=tuple(groups), reasons=tuple(reasons))


def _group_scores(scored: list[_Scored], weights: Mapping[str, float]) -> tuple[list[GroupScore], list[str]]:
    """Each group's score and weight (groups without a weight share what is left of 100), with reasons."""
    counts: dict[str, dict[str, int]] = {}
    for metric in scored:
        counts.setdefault(metric.group, dict.fromkeys(CLASSIFICATIONS, 0))[metric.classification] += 1
    unweighted = [group for group in counts if group not in weights]
    shared_weight = (100.0 - sum(weights.values())) / len(unweighted) if unweighted else 0.0

    groups: list[GroupScore] = []
    reasons: list[str] = []
    for name, count in counts.items():
        judged = count["pass"] + count["high"] + count["low"]
        weight = weights.get(name, shared_weight)
        group = GroupScore(
            name=name,
            score=count["pass"] / judged * 100.0 if judged else 0.0,
            weight=weight,
            no_data=judged == 0,
            passed=count["pass"],
            high=count["high"],
            low=count["low"],
            nodata=count["nodata"],
        )
        groups.append(group)
        if group.no_data:
            reasons.append(
                f"group {name!r}: all {count['nodata']} metrics have no data: score 0, counted as 100 in the sum"
                f" (weight {weight:g})"
            )
        else:
            reasons.append(
                f"group {name!r}: {count['pass']} of {judged} metrics pass ({count['high']} high, {count['low']} low,"
                f" {count['nodata']} no data) -> {group.score:.2f} (weight {weight:g})"
            )
    for name in weights:
        if name not in counts:
            reasons.append(f"group {name!r} has weight {weights[name]:g} but no scored metrics: that share is lost")
    return groups, reasons


def _total(scored: list[_Scored], groups: list[GroupScore], reasons: list[str]) -> float:
    """The weighted sum of the group scores, or 0 for a critical failure, nothing scored or too little data;
    the reason is appended to ``reasons``."""
    critical = [metric for metric in scored if metric.criticality == "critical" and metric.classification != "pass"]
    nodata = sum(1 for metric in scored if metric.classification == "nodata")
    if critical:
        reasons.extend(
            f"critical metric {metric.name} (group {metric.group!r}) is {metric.classification} -> score 0"
            for metric in critical
        )
        return 0.0
    if not scored:
        reasons.append("no metrics to score -> score 0")
        return 0.0
    if nodata / len(scored) * 100.0 >= NODATA_LIMIT_PERCENT:
        reasons.append(
            f"{nodata} of {len(scored)} metrics have no data, at least {NODATA_LIMIT_PERCENT:g}% -> score 0"
        )
        return 0.0
    weighted = sum((100.0 if group.no_data else group.score) * group.weight / 100.0 for group in groups)
    total = _round_half_up(weighted, 2)
    reasons.append(f"score {total:.2f}: weighted sum of the group scores")
    return total


@dataclass(frozen=True)
class _Scored:
    name: str
    classification: Classification
    group: str
    criticality: Criticality


def _scored_metric(item: Mapping[str, object] | tuple[str, str, str], index: int) -> _Scored:
    if isinstance(item, Mapping):
        missing = [key for key in ("classification", "group") if key not in item]
        if missing:
            raise ValueError(f"metric result #{index} lacks {', '.join(missing)}: {dict(item)!r}")
        classification, group = item["classification"], item["group"]
        criticality = item.get("criticality", "normal")
        name = repr(item["name"]) if item.get("name") else f"#{index}"
    else:
        try:
            classification, group, criticality = item
        except (TypeError, ValueError):
            raise ValueError(f"metric result #{index} is not (classification, group, criticality): {item!r}") from None
        name = f"#{index}"
    if classification not in CLASSIFICATIONS:
        raise ValueError(
            f"metric result {name}: classification must be one of {CLASSIFICATIONS}, not {classification!r}"
        )
    if criticality not in CRITICALITIES:
        raise ValueError(f"metric result {name}: criticality must be one of {CRITICALITIES}, not {criticality!r}")
    if not isinstance(group, str) or not group:
        raise ValueError(f"metric result {name}: group must be a non-empty string, not {group!r}")
    return _Scored(name, classification, group, criticality)  # type: ignore[arg-type]


def _round_half_up(value: float, places: int) -> float:
    """Round like commons-math ``MathUtils.round`` (BigDecimal of the decimal string, HALF_UP)."""
    return float(Decimal(repr(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))
