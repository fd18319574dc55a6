"""Decisions on logs written the way another serving system would (``rollout_pipeline.quality``), several seeds per
scenario, through the product's own path: bulk writer -> collect_day -> log-quality suite -> gates -> state machine.

The full figures (hundreds of days) come from ``benchmarks/decision_quality.py``; this keeps them from regressing.
"""

from __future__ import annotations

import pytest

from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.quality.run import decide_generated_day, log_quality_failures
from rollout_pipeline.quality.traffic import FAULTS, DaySpec

SEEDS = (11, 12)
# Which gate must speak for each fault (a word of its reason).
NAMED_BY = {
    "latency": "p99", "errors": "error rate", "error_burst": "error rate", "shifted": "shifted",
    "extreme": "outside", "null": "empty, non-finite or absurd", "inaccurate": "confidently worse",
    "complaints": "complaint rate", "missing": "answered only", "orphan": "served=true during shadow",
    "duplicates": "duplicate",
}


@pytest.fixture(scope="module")
def quality_engine(tmp_path_factory):
    from rollout_pipeline.store.engine import make_engine
    from rollout_pipeline.store.migrate import upgrade

    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('quality')}/days.db")
    upgrade(engine)
    yield engine
    engine.dispose()


def _visible_stage(fault: str, seed: int) -> str:
    stages = [s for s in FAULTS[fault].stages if s != "canary-1"]  # 1% of a test-sized day is too small to judge
    return stages[seed % len(stages)]


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_faulty_days_are_never_promoted_and_the_right_gate_says_why(quality_engine, fault):
    for seed in SEEDS:
        spec = DaySpec(_visible_stage(fault, seed), 8000, seed, fault, labels=fault not in ("shifted",) and seed % 2 == 0)
        out = decide_generated_day(quality_engine, spec, f"{fault}-{seed}", Policy(), log_quality_failures)
        assert out.decision.action != "promote", (spec, out.decision.reasons)
        assert NAMED_BY[fault] in " ".join(out.decision.reasons), (spec, out.decision.reasons)


@pytest.mark.parametrize("stage", ["shadow", "canary-20", "canary-50", "production"])
def test_healthy_days_promote_over_several_seeds(quality_engine, stage):
    for seed in (21, 22, 23):
        spec = DaySpec(stage, 8000, seed, None, labels=seed % 2 == 1)
        out = decide_generated_day(quality_engine, spec, f"h-{stage}-{seed}", Policy(), log_quality_failures)
        assert out.verdict == "correct", (spec, out.decision.reasons)


# --- whole rollouts, night by night, no force (benchmarks/decision_quality.py --rollouts runs hundreds) ---------


def _rollout(quality_engine, spec, model: str):
    import datetime as dt

    from rollout_pipeline.quality.run import run_rollout

    policy = Policy(shadow_stable_during_canary=spec.mirrored, shadow_candidate_during_canary=spec.mirrored)
    return run_rollout(quality_engine, spec, model, policy, first_day=dt.date(2026, 3, 2), max_nights=8,
                       watch_nights=1)


@pytest.mark.parametrize("mirrored", [True, False])
def test_a_healthy_rollout_walks_the_seeds_steps_by_itself(quality_engine, mirrored):
    from rollout_pipeline.quality.rollouts import RolloutSpec

    out = _rollout(quality_engine, RolloutSpec(12_000, 31, mirrored=mirrored), f"walk-{mirrored}")
    walk = [(n.stage, n.percent, n.action) for n in out.nights]
    assert not out.rolled_back and out.reached_production is not None and out.reached_production <= 6, walk
    assert [s for s, p, a in walk if a == "promote"] == ["shadow", "canary", "canary", "canary"], walk
    assert out.nights[-1].stage == "production" and out.nights[-1].action == "hold"  # the watch holds up


def test_a_faulty_candidate_is_stopped_before_production_and_its_exposure_counted(quality_engine):
    from rollout_pipeline.quality.rollouts import RolloutSpec

    spec = RolloutSpec(8_000, 32, fault="complaints", size=2.0, fault_from="canary-1", mirrored=True)
    out = _rollout(quality_engine, spec, "faulty")
    assert out.rolled_back and out.reached_production is None, [(n.stage, n.percent, n.action) for n in out.nights]
    # The fault only shows in what users were shown: it is on from 1%, and every served night counts.
    assert out.exposure == sum(n.percent for n in out.nights if n.stage == "canary" and n.fault_on)
    assert 1 <= out.exposure <= 71


@pytest.mark.parametrize("stage, fault, drawn, asked", [
    ("canary-1", "errors", {"rate": 0.05}, False),  # under the first step's gross bar (5 x 3 points)
    ("canary-1", "errors", {"rate": 0.20}, True),
    ("canary-50", "errors", {"rate": 0.05}, True),  # the last step before production asks the detectable
    ("canary-1", "complaints", {"factor": 8.0}, False),  # the first step does not need the complaints gate
    ("canary-20", "complaints", {"factor": 8.0}, True),
    ("shadow", "latency", {"factor": 2.0}, True),  # a latency blow-up is stopped at every step
])
def test_the_day_benchmark_counts_a_promotion_against_what_its_step_promises(stage, fault, drawn, asked):
    from rollout_pipeline.quality.run import asked_at_step

    assert asked_at_step(DaySpec(stage, 8000, 1, fault), drawn, Policy()) is asked
