"""A rollout's plan from its traffic: the nights each step should take, and which gates decide when.

For a candidate as good as the stable model, each gate a step needs passes once the
step's pooled evidence is large enough (``domain.gates``: the anytime-valid bound within
the step's bar). How large is known in advance from the traffic: requests and entities
a night, the stable's error, complaint and slow-request rates, whether the other model
answers in shadow (mirrored rows), whether actual outcomes arrive. Dividing what a gate
needs by what a night brings at the step's share gives its nights; the step takes the
slowest gate's. Estimates, not promises: they assume tomorrow's traffic is like the last
days', and a heavy user landing in (or out of) a small canary's buckets moves them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.domain.sequential import min_radius, trials_to_show_below
from rollout_pipeline.domain.stats import z_of

FEW_USERS = 10  # a canary step of fewer users a night than this decides on which ones it got
WEEK = 7


@dataclass(frozen=True)
class TrafficProfile:
    """What the last days' logs say about a model's traffic (averages per night)."""

    requests: float  # requests a night (served answers)
    entities: float  # distinct entities a night
    days: int  # days it was measured on
    error_rate: float = 0.002  # the stable's errors and timeouts per answer
    complaint_rate: float = 0.01  # complaints per served request
    tail_share: float = 0.005  # the stable's answers above its own p99 x (1 + allowed regression)
    outcomes: bool = True  # actual outcomes arrive for the model
    mirrored: bool = True  # in canary the other model answers every request in shadow
    design_effect: float = 2.0  # how much one entity's requests cluster (complaints)


@dataclass(frozen=True)
class GatePlan:
    """One gate at one step: the units it needs, the units a night brings, the nights."""

    gate: str
    needed: int
    per_night: float
    nights: int | None  # None: more than a year at this traffic

    def describe(self) -> str:
        when = "never at this traffic" if self.nights is None else f"{self.nights} night" + \
            ("s" if self.nights != 1 else "")
        return f"{self.gate}: ~{self.needed:,} needed, ~{self.per_night:,.0f} a night -> {when}"


@dataclass(frozen=True)
class StepPlan:
    """One step of the rollout: where it leads, the nights it should take, and the gates that decide it."""

    step: str  # "shadow", "canary 1%", ...
    share: int  # the candidate's share of the traffic at this step (%)
    nights: int | None
    gates: tuple[GatePlan, ...]
    warning: str = ""

    def slowest(self) -> GatePlan | None:
        if not self.gates:
            return None
        return max(self.gates, key=lambda g: g.needed / g.per_night if g.per_night > 0 else math.inf)


def _nights(needed: float, per_night: float) -> int | None:
    if needed <= 0:
        return 1
    if per_night <= 0:
        return None
    n = math.ceil(needed / per_night)
    return n if n <= 366 else None


def _rate_units(rate: float, bar: float, deff: float, paired: bool, policy: Policy) -> int:
    """Requests a rate gate needs on the candidate's side for an equal candidate's bound to fall within ``bar``."""
    k = min_radius(1 - policy.pass_confidence) + z_of(policy.power)
    p = max(rate, 1e-4)
    var = (2 * p if paired else p * (1 - p) * deff * 1.25)  # paired: both answers to a request; else + stable side
    floor = 1 / max(bar / k, 1e-9)  # the smoothed floor of a rate with no event: se ~ 1 / n
    return max(policy.min_units, math.ceil(var * (k / bar) ** 2), math.ceil(floor))


def plan_rollout(profile: TrafficProfile, policy: Policy) -> tuple[StepPlan, ...]:
    """The expected nights of each step (shadow, then every canary step) and the gate that decides each."""
    steps = [("shadow", 0)] + [("canary", s) for s in policy.canary_steps if s < 100]
    out = []
    for stage, share in steps:
        mult = policy.bar_multiplier(stage, share)
        required = policy.required_at(stage, share)
        served = profile.requests * share / 100
        paired = stage == "shadow" or profile.mirrored
        answers = profile.requests if paired else served  # the candidate's own answers, served or mirrored
        entities = profile.entities * (1 if paired else share / 100)
        gates: list[GatePlan] = []

        def add(name: str, needed: float, per_night: float) -> None:
            if required is None or name in required:
                if policy.metrics.get(name, "normal") != "report-only":
                    gates.append(GatePlan(name, math.ceil(needed), per_night, _nights(needed, per_night)))

        alpha, g = 1 - policy.pass_confidence, policy.gates
        latency_bar = min(0.5, g.latency.tail_detectable * mult)
        add("latency", max(policy.min_units, trials_to_show_below(profile.tail_share, latency_bar, alpha) or 10**9),
            answers)
        add("error_rate", _rate_units(profile.error_rate, min(1.0, g.error_rate.detectable * mult),
                                      1.0, paired, policy), answers)
        add("broken_answers", max(policy.min_units, trials_to_show_below(
            0.0, min(0.5, g.broken_answers.detectable * mult), alpha) or 10**9), answers)
        add("extremes", max(policy.min_units, trials_to_show_below(
            0.0, min(0.5, g.extremes.detectable * mult), alpha) or 10**9), answers)
        if stage == "canary":
            add("complaints", _rate_units(profile.complaint_rate, min(1.0, g.complaints.detectable * mult),
                                          profile.design_effect, False, policy), served)
        add("prediction_shift", policy.min_units, entities)
        add("latency_distribution", policy.min_units, entities if not paired else answers)
        if profile.outcomes:
            add("accuracy", policy.min_units, entities * 0.6)
        nights = None if any(g.nights is None for g in gates) else max((g.nights for g in gates), default=1)
        minimum = policy.min_shadow_days if stage == "shadow" else policy.min_days_per_step
        if nights is not None:
            nights = max(nights, minimum)
        label = f"canary {share}%" if stage == "canary" else stage
        helps = []
        if stage == "canary" and share == policy.canary_steps[0]:
            helps.append("a larger first step (canary_steps)")
        if not profile.mirrored and stage == "canary":
            helps.append("mirrored rows (shadow_stable_during_canary and shadow_candidate_during_canary)")
        helps.append(f"a longer window (pool_nights, now {policy.pool_nights})")
        warning = ""
        if nights is None or nights > WEEK:
            slow = max(gates, key=lambda g: (g.nights is None, g.nights or 0))
            warning = (f"{label} cannot decide within a week at this traffic: {slow.describe()}; what would help: "
                       + ", ".join(helps))
        elif not paired and entities < FEW_USERS:
            # Users are routed whole: a step holding a handful of them serves what those few send, which the
            # average above does not say (in the rollout benchmark, half the 1% canaries of a 2,000-request,
            # 250-user service served under 5 answers a night, and sat at 1% for weeks).
            warning = (f"{label} serves about {entities:.1f} of the model's {profile.entities:,.0f} users a night "
                       f"(users are routed whole): its answers depend on which users land in its buckets, and "
                       f"may take many more nights than {nights}; what would help: " + ", ".join(helps))
        out.append(StepPlan(label, share, nights, tuple(gates), warning))
    return tuple(out)


def total_nights(steps: tuple[StepPlan, ...]) -> int | None:
    """Nights from shadow to production when every step takes its expected nights."""
    if any(s.nights is None for s in steps):
        return None
    return sum(s.nights for s in steps)


def profile_of_day(summary, outcomes: bool) -> TrafficProfile:
    """A night's traffic as the plan reads it, from that night's summary (no other scan of the logs).

    Requests: the answers served to users; entities: the distinct entities of the sample
    scaled by the sampled share; mirrored: whether both models answered in shadow.
    """
    served = [v for v in summary.variants if v.served and v.variant in (summary.stable_variant,
                                                                        summary.candidate_variant)]
    requests = sum(v.requests for v in served)
    errors = sum(v.errors + v.timeouts for v in served)
    seen = {r.entity_id for r in summary.sample if r.served and r.entity_id is not None}
    fraction = max(summary.sample_fraction, 1e-4)
    complaints = sum(v.complaints for v in served)
    mirrored = all(summary.get(v, False) is not None for v in (summary.stable_variant, summary.candidate_variant))
    return TrafficProfile(requests=float(requests), entities=len(seen) / fraction, days=1,
                          error_rate=max(errors / requests, 0.001) if requests else 0.002,
                          complaint_rate=max(complaints / requests, 0.005) if requests else 0.01,
                          outcomes=outcomes, mirrored=mirrored)


def remaining(steps: tuple[StepPlan, ...], stage: str, percent: int) -> tuple[StepPlan, ...]:
    """The steps from the one the rollout is at on (shadow: all; production: none)."""
    here = "shadow" if stage == "shadow" else f"canary {percent}%"
    labels = [s.step for s in steps]
    return steps[labels.index(here):] if here in labels else ()


def plan_line(profile: TrafficProfile, steps: tuple[StepPlan, ...], stage: str, percent: int) -> str:
    """One line: the nights left to production from (stage, percent) at this traffic, and the first warning."""
    ahead = remaining(steps, stage, percent)
    if not ahead:
        return ""
    nights = total_nights(ahead)
    said = (f"~{nights} more night(s) to production at ~{profile.requests:,.0f} requests a night"
            if nights is not None else f"production not reachable at ~{profile.requests:,.0f} requests a night")
    warn = next((s.warning for s in ahead if s.warning), "")
    return said + (f"; {warn}" if warn else "")
