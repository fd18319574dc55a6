"""The latency_slo check and the decision's latency gate agree: same summary, same rule, same verdict.

The check shows the judge's latency gates (``day_checks``) without Great Expectations; validation (the GX suites)
checks the logs against their contract.

A day whose candidate p99 is well under the SLO but far above the stable's p99 (+20%) is rolled back by
the gate; the check used to compare only the raw p99 with the SLO and said "passed".
"""

import dataclasses
import datetime as dt
import math

import pytest

from rollout_pipeline.domain.evaluate import evaluate
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.domain.summary import LATENCY_BINS_PER_E, DaySummary, SampleRow, VariantDay
from rollout_pipeline.day_checks import CHECKS, LATENCY, latency_check, run_check
from rollout_pipeline.validation.suites import SUITES, validate_day

DAY = dt.date(2026, 6, 1)
N = 2000


def _variant(variant, served, p99, latencies):
    hist: dict[int, int] = {}
    for ms in latencies:  # the whole day's histogram, as the grouped scan counts it
        b = math.floor(math.log1p(ms) * LATENCY_BINS_PER_E)
        hist[b] = hist.get(b, 0) + 1
    return VariantDay(variant, served, N, N, 0, 0, 0, 0, 0, p99 / 3, p99 / 2, p99 * 0.9, p99, p99, N,
                      0.5, 0.1, 0.0, 1.0, 0, (), (), latency_histogram=tuple(sorted(hist.items())))


def _summary(stable_ms: float, candidate_ms: float) -> DaySummary:
    """A shadow day: the stable serves, the candidate answers the same requests in shadow."""
    sample = []
    for i in range(N):
        spread = 1 + (i % 100) / 100  # each side's latencies spread over [x, 2x)
        sample.append(SampleRow(f"c{i}", "v1", True, stable_ms * spread, "ok", 0.5, None))
        sample.append(SampleRow(f"c{i}", "v2", False, candidate_ms * spread, "ok", 0.5, None))
    sides = (_variant("v1", True, stable_ms * 2, [r.latency_ms for r in sample if r.variant == "v1"]),
             _variant("v2", False, candidate_ms * 2, [r.latency_ms for r in sample if r.variant == "v2"]))
    return DaySummary("m", DAY, "v1", "v2", sides, (), None, (), tuple(sample))


@pytest.mark.parametrize("stable_ms, candidate_ms, passed", [
    (10.0, 10.0, True),      # same speed
    (10.0, 60.0, False),     # p99 ~120 ms: under the 250 ms SLO, six times the stable's: the gate says high
    (100.0, 200.0, False),   # p99 ~400 ms: over the SLO
])
def test_the_latency_check_says_what_the_decision_s_latency_gate_says(stable_ms, candidate_ms, passed):
    summary, policy = _summary(stable_ms, candidate_ms), Policy()
    gate = {c.name: c for c in evaluate(summary, "shadow", policy).checks}["latency"]
    suite = run_check(LATENCY, summary, "shadow", policy)
    assert suite == latency_check(summary, "shadow", policy) and suite.name == LATENCY and not suite.blocking
    assert suite.passed is passed and not suite.errored
    assert (gate.classification == "pass") is passed
    latency = next(o for o in suite.outcomes if "latency gate" in o.description)
    # The check shows the gate's own words, so the UI's check and the decision's reasons read alike.
    assert latency.observed == f"{gate.classification}: {gate.reason}"
    if not passed:
        assert any(gate.reason in f for f in suite.failures)


def test_a_latency_gate_not_judged_is_never_a_pass():
    """Too few candidate answers to judge a p99: the check is not passed, says "not judged" and names the count."""
    full = _summary(10.0, 10.0)
    kept = tuple(r for r in full.sample if r.variant == "v1" or int(r.correlation_id[1:]) < 20)
    few = dataclasses.replace(full, sample=kept, variants=(
        full.variants[0], _variant("v2", False, 20.0, [r.latency_ms for r in kept if r.variant == "v2"])))
    policy = Policy()
    gate = {c.name: c for c in evaluate(few, "shadow", policy).checks}["latency"]
    assert gate.classification == "nodata"
    suite = latency_check(few, "shadow", policy)
    assert suite.passed is False and suite.outcome == "not judged" and suite.failures == []
    assert any(gate.reason in x for x in suite.not_judged)
    assert suite.summary().startswith("2 of 2 not judged: ") and "20 candidate answers" in suite.summary()
    latency = next(o for o in suite.outcomes if "latency gate" in o.description)
    assert latency.status == "not judged"


def test_a_log_quality_failure_names_the_column_the_rule_the_count_and_an_example():
    from rollout_pipeline.validation.suites import LOG_QUALITY

    summary = _summary(10.0, 10.0)
    bad = VariantDay("v3", True, 5, 5, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 5, 0.5, 0.1, 0.0, 1.0, 0, (), ())
    summary = DaySummary("m", DAY, "v1", "v2", (*summary.variants, bad), (), None, (), summary.sample)
    (suite,) = validate_day(summary, "shadow", Policy(), suites=(LOG_QUALITY,))
    (failure,) = [f for f in suite.failures if "variant" in f]
    assert "column variant: 1 of 3 rows not one of v1, v2, e.g. v3" in failure, failure
    assert "unexpected" not in failure


def test_validation_does_not_judge_and_every_check_runs_by_name():
    """The GX suites are log quality and the predictions' bounds; the latency check is the judge's, apart."""
    assert LATENCY not in SUITES and set(CHECKS) == {*SUITES, LATENCY}
    summary = _summary(10.0, 10.0)
    assert [s.name for s in validate_day(summary, "shadow", Policy())] == list(SUITES)
    assert [run_check(name, summary, "shadow", Policy()).name for name in CHECKS] == list(CHECKS)
