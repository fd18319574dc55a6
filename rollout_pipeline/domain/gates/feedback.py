"""Gates on what users say: complaints per served request."""

from __future__ import annotations

from pydantic import Field

from rollout_pipeline.domain.gates.comparisons import rate_gate
from rollout_pipeline.domain.gates.context import GateContext, MetricCheck
from rollout_pipeline.domain.gates.registry import Limits, gate
from rollout_pipeline.domain.ranges import MAX_FACTOR
from rollout_pipeline.domain.summary import SampleRow


class ComplaintLimits(Limits):
    """``gates.complaints``: the candidate's complaint rate against the stable's."""

    margin: float = Field(0.005, ge=0, le=1, description="candidate complaint rate may exceed the stable's by this")
    regression_allowed: float = Field(0.5, ge=0, le=MAX_FACTOR,
                                      description="... or by this fraction of it, whichever is larger")
    detectable: float = Field(0.03, gt=0, le=1, description="excess complaint rate the minimum sample must catch")

    flat_names = {"complaint_margin": "margin", "complaint_regression_allowed": "regression_allowed",
                  "complaint_detectable": "detectable"}
    beyond = (("detectable", "margin"),)


COMPLAINTS_DOC = (
    "| `complaints` (normal) | complaints per served request, candidate − stable, over entities (canary only: nobody "
    "complains about a shadow answer) | excess > max(`gates.complaints.margin` 0.5 point, "
    "`gates.complaints.regression_allowed` 50% of the stable's rate) | excess < `gates.complaints.detectable` 3 points "
    "| `test_gate_verdicts[complaints-*]` |")


@gate("complaints", group="feedback", limits=ComplaintLimits, order=80, doc=COMPLAINTS_DOC)
def complaints(ctx: GateContext) -> MetricCheck | None:
    """Complaints per served request, candidate against stable (only served answers reach users)."""
    if ctx.stage != "canary":
        return None
    lim = ctx.policy.gates.complaints

    def value(row: SampleRow) -> float:
        return float(row.complaints > 0)

    return rate_gate(ctx, "complaints", "feedback", "complaint rate", value,
                     lambda s: max(lim.margin, lim.regression_allowed * s), lim.detectable, None,
                     served_only=True)
