"""What every gate reads and returns: the verdict record, the sides compared, the pairs, and the gate context."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rollout_pipeline.domain.sequential import margin, min_radius
from rollout_pipeline.domain.stats import z_of
from rollout_pipeline.domain.summary import DaySummary, SampleRow, VariantDay, finite

if TYPE_CHECKING:
    from rollout_pipeline.domain.policy import Policy


@dataclass(frozen=True)
class MetricCheck:
    """One gate's verdict: classification, group, criticality, the two values, why, and what backs it."""

    name: str
    group: str
    criticality: str
    classification: str  # pass | high | low | nodata | n/a
    stable: float | None
    candidate: float | None
    reason: str
    units: int = 0  # independent units behind the verdict
    needed: int = 0  # units the gate needs (its minimum sample), when it knows
    population: str = ""  # what the two numbers count, e.g. "paired requests" or "candidate-served entities"
    required: bool = True  # whether a promotion from this step needs this gate's verdict

    @property
    def failed(self) -> bool:
        return self.classification in ("high", "low")

    @property
    def insufficient(self) -> bool:
        return self.classification == "nodata"


# --- what the gates read --------------------------------------------------------------------------------

def compared_sides(summary: DaySummary, stage: str) -> tuple[VariantDay | None, VariantDay | None, str]:
    """The stable and candidate sides a stage compares (served or shadow answers), and how to say it."""
    if stage == "production":
        # After promotion the new model serves and the old one shadows it during the retention window.
        return (summary.get(summary.stable_variant, False), summary.get(summary.candidate_variant, True),
                "old stable shadow vs new stable (candidate) served")
    stable = summary.get(summary.stable_variant, True)
    if stage == "shadow":
        return stable, summary.get(summary.candidate_variant, False), "stable served vs candidate shadow"
    return stable, summary.get(summary.candidate_variant, True), "stable served vs candidate served"


def answer_sides(summary: DaySummary, stage: str) -> tuple[tuple[tuple[str, bool], ...], tuple[str, bool]]:
    """The sides holding the candidate's own answers (served and, in canary, mirrored), and the stable reference.

    Latency, errors and outputs are the model's: in canary its shadow answers to the
    stable's requests count as much as the ones it served.
    """
    s, c = summary.stable_variant, summary.candidate_variant
    if stage == "shadow":
        return ((c, False),), (s, True)
    if stage == "production":
        return ((c, True),), (s, False)
    if summary.get(c, False) is None:  # logs without the candidate's mirrored answers
        return ((c, True),), (s, True)
    return ((c, True), (c, False)), (s, True)


def ok_values(rows, field_name: str) -> list[float]:
    """The finite values of ``field_name`` in the rows answered ``ok`` (latencies >= 0)."""
    return [v for r in rows if r.status == "ok" and finite(v := getattr(r, field_name))
            and (field_name != "latency_ms" or v >= 0)]


def sample_values(summary: DaySummary, variant: str, served: bool, field_name: str) -> list[float]:
    """The finite values of ``field_name`` in the day's sample for one side (answered ``ok``; latencies >= 0)."""
    return ok_values((r for r in summary.sample if r.variant == variant and r.served == served), field_name)


@dataclass(frozen=True)
class Pair:
    """The stable and the candidate answer to one request (one served, the other in shadow)."""

    stable: SampleRow
    candidate: SampleRow

    @property
    def entity(self) -> str | None:
        served = self.stable if self.stable.served else self.candidate
        return served.entity_id


def answered(row: SampleRow) -> bool:
    """A row carrying the model's answer: a shadow call the mirror shed is missing evidence, not an answer."""
    return row.status != "shed"


def pairs_of(rows: tuple[SampleRow, ...], stable: str, candidate: str) -> list[Pair]:
    """Requests the two variants both answered, one served and one in shadow (first answer of each)."""
    by_id: dict[str, dict[str, SampleRow]] = {}
    for row in rows:
        if row.correlation_id and row.variant in (stable, candidate) and answered(row):
            by_id.setdefault(row.correlation_id, {}).setdefault(row.variant, row)
    return [Pair(d[stable], d[candidate]) for d in by_id.values()
            if stable in d and candidate in d and d[stable].served != d[candidate].served]


@dataclass(frozen=True)
class GateContext:
    """Everything a gate reads: the pooled nights, the latest night, the stage, the policy, each side's rows."""

    summary: DaySummary  # the step's nights pooled (domain.pool); the latest night alone when there is one
    stage: str
    policy: Policy
    stable: VariantDay | None  # whole-day records of the compared sides (served users' sides in canary)
    candidate: VariantDay | None
    stable_served: bool
    candidate_served: bool
    pairs: tuple[Pair, ...]
    stable_rows: tuple[SampleRow, ...]  # sampled rows of the compared stable side
    candidate_rows: tuple[SampleRow, ...]
    outcome_pairs: tuple[Pair, ...]  # pairs of the accuracy day (late labels)
    outcome_stable_rows: tuple[SampleRow, ...]
    outcome_candidate_rows: tuple[SampleRow, ...]
    today: DaySummary | None = None  # the latest night (integrity gates); None: the summary is one night
    percent: int = 0  # the canary share the rollout is at (0 in shadow, 100 in production)
    outcomes_seen: bool | None = None  # whether any actual outcome ever arrived for the rollout (None: unknown)
    z: float = field(init=False)
    z_power: float = field(init=False)
    alpha_fail: float = field(init=False)
    alpha_pass: float = field(init=False)
    multiplier: float = field(init=False)
    required: frozenset[str] | None = field(init=False)

    def __post_init__(self):
        p = self.policy
        object.__setattr__(self, "z", z_of(p.gate_confidence))
        object.__setattr__(self, "z_power", z_of(p.power))
        object.__setattr__(self, "alpha_fail", 1 - p.gate_confidence)
        object.__setattr__(self, "alpha_pass", 1 - p.pass_confidence)
        object.__setattr__(self, "multiplier", p.bar_multiplier(self.stage, self.percent))
        object.__setattr__(self, "required", p.required_at(self.stage, self.percent))

    @property
    def night(self) -> DaySummary:
        """The latest night's own summary."""
        return self.today or self.summary

    @property
    def populations_differ(self) -> bool:
        """Canary: the two sides served different entities."""
        return self.stage == "canary"

    def criticality(self, name: str) -> str:
        return self.policy.metrics.get(name, "normal")

    def is_required(self, name: str) -> bool:
        return self.required is None or name in self.required

    def bar(self, detectable: float, cap: float | None = None) -> float:
        """The step's bar for a gate whose detectable regression is ``detectable`` (at most ``cap``)."""
        b = detectable * self.multiplier
        return b if cap is None else min(b, cap)

    def se_to_pass(self, bar: float, at: float = 0.0) -> float:
        """The standard error at which a candidate whose true value is ``at`` passes ``bar`` with probability power."""
        return max(bar - at, 0.0) / (min_radius(self.alpha_pass) + self.z_power)

    def fail_margin(self, se: float, bar: float, limit: float) -> float:
        """Half-width of the anytime-valid failing bound, tuned where a regression at the bar is caught."""
        ref = max(bar - limit, 1e-12) / (min_radius(self.alpha_fail) + self.z_power)
        return margin(se, self.alpha_fail, ref)

    def pass_margin(self, se: float, bar: float) -> float:
        """Half-width of the anytime-valid passing bound, tuned where a candidate equal to the stable passes."""
        return margin(se, self.alpha_pass, self.se_to_pass(bar))


def _side(rows, variant, served):
    return tuple(r for r in rows if r.variant == variant and r.served == served and answered(r))


def context_for(summary: DaySummary, stage: str, policy: Policy, *, today: DaySummary | None = None,
                percent: int | None = None, outcomes_seen: bool | None = None) -> GateContext:
    """The gates' view of ``summary`` (one night, or a step's pooled nights with ``today`` the latest)."""
    stable, cand, _ = compared_sides(summary, stage)
    s_served, c_served = stage != "production", stage != "shadow"
    pairs = tuple(pairs_of(summary.sample, summary.stable_variant, summary.candidate_variant))
    outcome = summary.outcome_sample()
    if percent is None:
        percent = {"shadow": 0, "production": 100}.get(stage, policy.canary_steps[0])
    return GateContext(
        summary, stage, policy, stable, cand, s_served, c_served, pairs,
        _side(summary.sample, summary.stable_variant, s_served),
        _side(summary.sample, summary.candidate_variant, c_served),
        pairs if outcome is summary.sample else tuple(pairs_of(outcome, summary.stable_variant,
                                                                summary.candidate_variant)),
        _side(outcome, summary.stable_variant, s_served),
        _side(outcome, summary.candidate_variant, c_served),
        today=today, percent=percent, outcomes_seen=outcomes_seen,
    )


# --- the shape of a verdict ----------------------------------------------------------------------------

def check(ctx: GateContext, name: str, group: str, classification: str, stable, candidate, reason: str,
          units: int = 0, needed: int = 0, population: str = "") -> MetricCheck:
    """A gate's verdict, with the policy's criticality for it and whether this step needs it."""
    required = ctx.is_required(name)
    if classification == "nodata" and not required:
        reason += " (not needed at this step)"
    return MetricCheck(name, group, ctx.criticality(name), classification, stable, candidate, reason, units, needed,
                       population, required)


def is_ok(row: SampleRow) -> bool:
    """An answer with status ok."""
    return row.status == "ok"
