"""Adding a gate that needs no new data is one module: a toy gate defined in this file, registered, is judged by
``evaluate`` and its limit is set through the policy (YAML or a mapping) under ``gates.<name>.<field>``, with no
other module edited. Also: every shipped gate's docs row is the one in docs/policy.md.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydantic import Field

from rollout_pipeline.domain.evaluate import evaluate
from rollout_pipeline.domain.gates import GATES, GateContext, Limits, MetricCheck, gate, unregister
from rollout_pipeline.domain.gates.context import check, is_ok
from rollout_pipeline.domain.gates.registry import specs
from rollout_pipeline.domain.policy import Policy, PolicyError, parse_policy, policy_from_yaml
from rollout_pipeline_tests.domain_tests.test_gates import summary_of, traffic

DOC = (Path(__file__).resolve().parents[2] / "docs" / "policy.md").read_text()
DEFAULT_VERSION = "832e8d4ac8fe"  # the default policy's version (hashed over the flat names, as before the grouping; pool_nights 28)


# --- the toy gate: what a new gate's module holds -----------------------------------------------------------

class MeanPredictionLimits(Limits):
    """``gates.mean_prediction``: the candidate's mean prediction stays within a bound."""

    max_abs_mean: float = Field(1000.0, gt=0, le=1e15, description="|mean prediction| above this fails")


def mean_prediction(ctx: GateContext) -> MetricCheck | None:
    """The candidate's mean sampled prediction within +-max_abs_mean."""
    bound = ctx.policy.gates.mean_prediction.max_abs_mean
    values = [r.prediction for r in ctx.candidate_rows if is_ok(r) and r.prediction is not None]
    if len(values) < ctx.policy.min_units:
        return check(ctx, "mean_prediction", "predictions", "nodata", None, None,
                     f"mean prediction not judged: {len(values)} answers", len(values), ctx.policy.min_units)
    mean = statistics.fmean(values)
    verdict = "high" if abs(mean) > bound else "pass"
    return check(ctx, "mean_prediction", "predictions", verdict, None, mean,
                 f"candidate mean prediction {mean:.4g} {'>' if verdict == 'high' else '<='} {bound:g}", len(values))


@contextmanager
def toy_gate() -> Iterator[None]:
    """Register the toy gate for one test (a shipped gate registers once, when its module is imported)."""
    gate("mean_prediction", group="predictions", criticality="critical", limits=MeanPredictionLimits)(mean_prediction)
    try:
        yield
    finally:
        unregister("mean_prediction")


def _toy_check(policy: Policy):
    ev = evaluate(summary_of(traffic("shadow", 2000, seed=5)), "shadow", policy)
    (found,) = [c for c in ev.checks if c.name == "mean_prediction"]
    return ev, found


def test_a_toy_gate_registered_in_one_module_is_judged_and_its_limit_set_through_the_policy():
    with toy_gate():
        assert list(GATES)[-1] == "mean_prediction"
        policy = Policy()
        assert policy.gates.mean_prediction.max_abs_mean == 1000.0 and policy.metrics["mean_prediction"] == "critical"
        ev, found = _toy_check(policy)
        assert found.classification == "pass" and "<= 1000" in found.reason and not ev.critical_failures
        # Its limit from a policy file, under gates.<name>.<field>, with the shipped gates' fields flat or grouped.
        strict = policy_from_yaml("latency_slo_p99_ms: 300\ngates:\n  mean_prediction:\n    max_abs_mean: 10\n")
        assert strict.gates.mean_prediction.max_abs_mean == 10 and strict.gates.latency.slo_p99_ms == 300
        ev, found = _toy_check(strict)
        assert found.classification == "high" and "> 10" in found.reason
        assert ev.critical_failures == [found.reason]
        # Its criticality through metrics, like any gate's; its range checked, the field named in one line.
        report = parse_policy({"gates": {"mean_prediction": {"max_abs_mean": 10}},
                               "metrics": {"mean_prediction": "report-only"}})
        assert not _toy_check(report)[0].critical_failures
        with pytest.raises(PolicyError) as caught:
            parse_policy({"gates": {"mean_prediction": {"max_abs_mean": -1}}}, "p.yaml")
        assert "gates.mean_prediction.max_abs_mean" in str(caught.value) and "\n" not in str(caught.value)
    # Gone again: the policy is the shipped one, with its version.
    assert "mean_prediction" not in GATES and Policy().version == DEFAULT_VERSION
    with pytest.raises(PolicyError, match="gates.mean_prediction"):
        parse_policy({"gates": {"mean_prediction": {"max_abs_mean": 10}}})


def test_flat_fields_of_earlier_versions_load_into_their_gates_and_stay_readable():
    flat = {"latency_slo_p99_ms": 300, "prediction_bounds": [0, 10], "max_null_output_share": 0.002,
            "label_delay_days": 2}
    policy = parse_policy(flat)
    assert policy == parse_policy({"gates": {"latency": {"slo_p99_ms": 300}, "extremes": {"bounds": [0, 10]},
                                             "broken_answers": {"limit": 0.002},
                                             "accuracy": {"label_delay_days": 2}}})
    assert (policy.latency_slo_p99_ms, policy.prediction_bounds, policy.label_delay_days) == (300, (0, 10), 2)
    # Hashed over the flat names, as before: a policy keeps the version its decisions recorded.
    assert policy.version == "6a64376cbc82" and Policy().version == DEFAULT_VERSION
    # A flat field over a preset that groups it: the file's value wins, as it did when both were flat.
    first = policy_from_yaml("latency_regression_allowed: 0.3\nlatency_slo_p99_ms: 400", preset="first-model")
    assert (first.gates.latency.regression_allowed, first.gates.latency.slo_p99_ms) == (0.3, 400)
    assert first.gates.accuracy.detectable == 1.0  # the preset's, kept
    with pytest.raises(PolicyError, match="latency_slo_p99_ms .and under gates: latency: slo_p99_ms"):
        parse_policy({"latency_slo_p99_ms": 300, "gates": {"latency": {"slo_p99_ms": 200}}})


def test_every_shipped_gate_has_its_row_in_docs_policy_md():
    shipped = [s for s in specs() if s.run.__module__.startswith("rollout_pipeline.")]
    assert len(shipped) == 14
    missing = [s.name for s in shipped if not s.doc or s.doc not in DOC]
    assert missing == [], "docs/policy.md, The gates: paste the gate's doc row"
