"""The day's checks in front of the decision: what each validates or shows, by name.

Two kinds, each doing its own job:

* **Validation** (``log_quality``, blocking; ``prediction_distribution``): Great
  Expectations suites over the day summary and its sample (``validation.suites``).
* **The judge's latency gates** (``latency_slo``, a warning): the decision's own
  ``latency`` and ``latency_distribution`` gates (``domain.gates``) on the day, shown as
  a check so that the UI's check and the decision never contradict. Their verdicts are
  reported as they are, not re-validated: a gate with too little data is "not judged",
  never a pass.

Both come back as the same plain record (``validation.results.SuiteResult``), stored
with the day's evidence and read by the decision and the review.
"""

from __future__ import annotations

from rollout_pipeline.domain.formatting import num
from rollout_pipeline.domain.gates import context_for, latency_distribution
from rollout_pipeline.domain.gates import latency as latency_gate
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.domain.summary import DaySummary
from rollout_pipeline.validation.results import ExpectationOutcome, SuiteResult
from rollout_pipeline.validation.suites import LOG_QUALITY, PREDICTIONS, validate_day

LATENCY = "latency_slo"
# A latency gate's verdicts that do not find the candidate slower. Too little data ("nodata") is neither a pass
# nor a latency failure: the check says "not judged" (a failed WARN check, never a green pass).
LATENCY_NOT_WORSE = ("pass", "low", "n/a")
NOT_JUDGED = "nodata"
CHECKS = (LOG_QUALITY, LATENCY, PREDICTIONS)


def latency_check(summary: DaySummary, stage: str, policy: Policy) -> SuiteResult:
    """The decision's latency gates on ``summary``, one outcome each, in the gates' own words.

    A raw p99 against the SLO would pass a day the decision rolls back for a regression against the
    stable's p99 (+ the policy's allowance), and fail a day whose p99 bound does not exceed the SLO.
    """
    ctx = context_for(summary, stage, policy)
    allowed = num(_pct(policy.latency_regression_allowed), "%")
    outcomes = []
    for gate in (c for c in (latency_gate(ctx), latency_distribution(ctx)) if c is not None):
        what = (f"p99 bound vs SLO {num(policy.latency_slo_p99_ms, ' ms')} and stable p99 + {allowed}"
                if gate.name == "latency" else f"Mann-Whitney, +{allowed} allowed")
        outcomes.append(ExpectationOutcome(
            expectation=f"{gate.name} gate",
            description=f"decision's {gate.name} gate does not find the candidate slower ({what})",
            success=gate.classification in LATENCY_NOT_WORSE,
            errored=False,
            observed=f"{gate.classification}: {gate.reason}",
            not_judged=gate.classification == NOT_JUDGED,
        ))
    return SuiteResult(LATENCY, False, tuple(outcomes))


def _pct(share: float | None) -> float | None:
    return None if share is None else 100 * share


def run_check(name: str, summary: DaySummary, stage: str, policy: Policy) -> SuiteResult:
    """Check ``name`` (one of ``CHECKS``) on the day; GX is imported only for a validation suite."""
    if name == LATENCY:
        return latency_check(summary, stage, policy)
    (suite,) = validate_day(summary, stage, policy, suites=(name,))
    return suite
