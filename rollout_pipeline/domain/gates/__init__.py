"""The gates: one small pure function per metric, each with its inputs, limits and bar, registered by its module.

Every gate answers one question about the candidate against the stable model and
says why in one line ("candidate p99 412 ms > SLO 250 ms: 3.1% of 5,210 answers
above it"). It reads the **pooled nights of the step** (``domain.pool``), and its
bounds stay valid however many nights are looked at (``domain.sequential``). Its
verdict is one of:

- ``high`` / ``low``: confidently past the policy's **limit** -- the anytime-valid
  bound at ``gate_confidence`` is beyond it (a false failure over all the nights of
  a step has probability at most 1 - gate_confidence);
- ``pass``: confidently within the step's **bar** -- the anytime-valid bound at
  ``pass_confidence`` is within the gate's detectable regression times the step's
  multiplier (``Policy.bar_multiplier``: looser where the next step exposes few
  users, the detectable itself before production);
- ``nodata``: neither yet, or fewer units than ``min_units`` -- more nights are
  needed; the reason names the counts and about how many units would do;
- ``n/a``: the question does not apply (no labels, no complaints in shadow, a
  constant baseline has no spread, no outcome ever arrived for the model).

Units are what was randomized. Wherever the other model answered the same request
in shadow (shadow; canary with the stable and/or the candidate mirrored; the watch
after promotion) answers are compared **pair by pair**, clustered by entity. Else,
in canary, the candidate and the stable model serve different entities: means are
compared over entities, and a rate's clustering is measured on the stable's many
entities (``comparisons.with_shared_design_effect``). Questions a count answers exactly are
answered from the whole days' counts (latency above a threshold, broken answers),
not from the sample. Integrity gates (``INTEGRITY``) check that the latest night's
logs can be judged at all; their failures hold the day.

One module per family (``latencies``, ``errors``, ``outputs``, ``feedback``, ``outcomes``,
``integrity``) over the shared ``context`` (what a gate reads) and ``comparisons``
(the statistics they share). Each gate registers itself (``registry.gate``) with its
default criticality, its limits (``Policy.gates.<name>``) and its docs row; ``GATES`` and
``INTEGRITY`` are the registry's, in order.
"""

from __future__ import annotations

from rollout_pipeline.domain.gates.comparisons import Comparison, compare
from rollout_pipeline.domain.gates.context import (
    GateContext,
    MetricCheck,
    Pair,
    answer_sides,
    compared_sides,
    context_for,
    ok_values,
    pairs_of,
    sample_values,
)
from rollout_pipeline.domain.gates.errors import broken_answers, error_rate
from rollout_pipeline.domain.gates.feedback import complaints
from rollout_pipeline.domain.gates.integrity import (
    duplicate_rows,
    feedback_values,
    null_outputs,
    orphan_rows,
    shadow_coverage,
)
from rollout_pipeline.domain.gates.latencies import (
    LATENCY_QUANTILE,
    count_above,
    histogram_quantile_bounds,
    latency,
    latency_distribution,
    merged_histogram,
)
from rollout_pipeline.domain.gates.outcomes import accuracy
from rollout_pipeline.domain.gates.outputs import STABLE_RANGE, disagreement, extremes, prediction_shift
from rollout_pipeline.domain.gates.registry import GATES, INTEGRITY, Gate, GateSpec, Limits, gate, register, unregister

__all__ = [
    "GATES", "INTEGRITY", "LATENCY_QUANTILE", "STABLE_RANGE", "Comparison", "Gate", "GateContext", "GateSpec", "Limits",
    "MetricCheck", "Pair", "accuracy", "answer_sides", "broken_answers", "compare", "compared_sides", "complaints",
    "context_for", "count_above", "disagreement", "duplicate_rows", "error_rate", "extremes", "feedback_values", "gate",
    "histogram_quantile_bounds", "latency", "latency_distribution", "merged_histogram", "null_outputs", "ok_values",
    "orphan_rows", "pairs_of", "prediction_shift", "register", "sample_values", "shadow_coverage", "unregister",
]
