"""A rollout's plan from the model's last days of traffic (``domain.plan``), for ``plan``, ``rollout start`` and
``status``: the expected nights of each step and the gate that decides it, with a warning where a step cannot
decide within a week. No Dagster here; the traffic comes from the log store, the rest from the stored evidence."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from rollout_pipeline.domain.plan import StepPlan, TrafficProfile, plan_rollout, total_nights
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.store import evidence as evidence_store
from rollout_pipeline.store import rollouts as repo
from rollout_pipeline.store.summary import feedback_of_days, traffic_of_day

DAYS = 7


def traffic_profile(connection: sa.Connection, model: str, policy: Policy, *, today: dt.date,
                    days: int = DAYS) -> TrafficProfile | None:
    """The model's average night over the last ``days`` UTC days with traffic before ``today``; None without any."""
    measured = []
    for k in range(1, days + 1):
        day = today - dt.timedelta(days=k)
        served, entities, errors, shadow = traffic_of_day(connection, model, day)
        if served:
            measured.append((served, entities, errors))
    if not measured:
        return None
    n = len(measured)
    requests = sum(m[0] for m in measured) / n
    first = today - dt.timedelta(days=days)
    kinds = feedback_of_days(connection, model, first, today - dt.timedelta(days=1))
    rollout = repo.latest_rollout(connection, model)
    outcomes = bool(kinds.get("actual")) or (rollout is not None and evidence_store.outcomes_arrived(connection,
                                                                                                     rollout.id))
    return TrafficProfile(
        requests=requests, entities=sum(m[1] for m in measured) / n, days=n,
        error_rate=max(sum(m[2] for m in measured) / max(1, sum(m[0] for m in measured)), 0.001),
        complaint_rate=max(kinds.get("complaint", 0) / max(1.0, requests * n), 0.005),
        outcomes=outcomes,
        mirrored=policy.shadow_stable_during_canary and policy.shadow_candidate_during_canary)


def plan_for(connection: sa.Connection, model: str, policy: Policy, *, today: dt.date,
             days: int = DAYS) -> tuple[TrafficProfile | None, tuple[StepPlan, ...]]:
    """The profile of the last days and the plan it gives (empty without traffic)."""
    profile = traffic_profile(connection, model, policy, today=today, days=days)
    return profile, (plan_rollout(profile, policy) if profile is not None else ())


def plan_lines(profile: TrafficProfile | None, steps: tuple[StepPlan, ...]) -> list[str]:
    """The plan as a person reads it in a terminal."""
    if profile is None:
        return ["plan: no traffic logged for this model in the last days; nothing to plan from yet "
                "(`rollout-pipeline plan --model M` once a day of logs is in)"]
    total = total_nights(steps)
    mirrored = "mirrored" if profile.mirrored else "not mirrored in canary"
    lines = [f"plan from the last {profile.days} day(s): ~{profile.requests:,.0f} requests and "
             f"~{profile.entities:,.0f} entities a night, {mirrored}, "
             f"{'with' if profile.outcomes else 'without'} actual outcomes: "
             + (f"production in ~{total} nights" if total is not None else "production not reachable at this traffic")]
    for s in steps:
        slow = s.slowest()
        nights = "?" if s.nights is None else str(s.nights)
        lines.append(f"  {s.step:12} ~{nights:>3} night(s)" + (f"   decided by {slow.describe()}" if slow else ""))
    lines += [f"  warning: {s.warning}" for s in steps if s.warning]
    return lines


def plan_json(profile: TrafficProfile | None, steps: tuple[StepPlan, ...]) -> dict:
    """The plan as ``plan --json`` prints it."""
    return {
        "traffic": None if profile is None else {
            "requests_per_night": round(profile.requests), "entities_per_night": round(profile.entities),
            "days": profile.days, "mirrored": profile.mirrored, "outcomes": profile.outcomes},
        "nights_to_production": total_nights(steps) if steps else None,
        "steps": [{"step": s.step, "share": s.share, "nights": s.nights, "warning": s.warning or None,
                   "gates": [{"gate": g.gate, "needed": g.needed, "per_night": round(g.per_night, 1),
                              "nights": g.nights} for g in s.gates]} for s in steps],
    }


def start_planned(engine: sa.Engine, model: str, stable: str, candidate: str, policy: Policy, *, actor: str,
                  today: dt.date) -> tuple[repo.Rollout, TrafficProfile | None, tuple[StepPlan, ...]]:
    """Register a rollout in stage shadow (committed), then plan it from the model's last days of traffic."""
    with engine.begin() as connection:
        rollout = repo.start_rollout(connection, model, stable, candidate, policy, actor=actor)
    with engine.connect() as connection:
        profile, steps = plan_for(connection, model, policy, today=today)
    return rollout, profile, steps


def model_plan(engine: sa.Engine, model: str, *, today: dt.date,
               days: int = DAYS) -> tuple[TrafficProfile | None, tuple[StepPlan, ...]]:
    """The plan of ``model``'s latest rollout under its policy; ``RolloutError`` when it has none."""
    with engine.connect() as connection:
        rollout = repo.latest_rollout(connection, model)
        if rollout is None:
            raise repo.RolloutError(f"{model} has no rollout: the plan follows its policy "
                                    f"(`rollout-pipeline rollout start --model {model} ...`)")
        return plan_for(connection, model, rollout.policy, today=today, days=days)


def remaining_plan(connection: sa.Connection, rollout: repo.Rollout | None, *, today: dt.date) -> dict | None:
    """An active rollout's remaining plan from the last week's traffic (``status`` shows its one line)."""
    if rollout is None or not rollout.active:
        return None
    profile, steps = plan_for(connection, rollout.model_name, rollout.policy, today=today)
    if profile is None:
        return {"nights_to_production": None, "says": "plan: no traffic in the last 7 days"}
    here = "shadow" if rollout.stage == "shadow" else f"canary {rollout.canary_percent}%"
    labels = [s.step for s in steps]
    ahead = steps[labels.index(here):] if here in labels else ()
    nights = total_nights(ahead) if ahead else None
    warn = next((s.warning for s in ahead if s.warning), "")
    says = (f"plan: production in ~{nights} nights at the last {profile.days} day(s)' traffic "
            f"(~{profile.requests:,.0f} requests a night)" if nights is not None
            else "plan: production not reachable at the last days' traffic")
    return {"nights_to_production": nights, "says": says + (f"; {warn}" if warn else "")}
