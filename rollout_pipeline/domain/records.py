"""Records of the log contract.

Log rows are ``NamedTuple``s rather than dataclasses: they are immutable like the
other records, and being tuples they go to the bulk writer without conversion,
which matters at hundreds of thousands of rows a second.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

# ``shed``: a shadow call the mirror could not run in time (its pool saturated) -- the model was never called, so
# the row is missing evidence, never the candidate's error or timeout (latency 0, no output; served=false only).
SHED = "shed"
STATUSES = ("ok", "error", "timeout", SHED)


class PredictionRow(NamedTuple):
    """One answer of one variant to one request (``prediction_log``)."""

    correlation_id: str | None
    ts: dt.datetime
    model_name: str
    variant: str
    served: bool
    entity_id: str | None = None
    latency_ms: float | None = None
    status: str | None = "ok"
    prediction: float | None = None
    label: str | None = None


class FeedbackRow(NamedTuple):
    """Something learned about a request after the fact (``feedback``)."""

    correlation_id: str | None
    ts: dt.datetime
    model_name: str
    kind: str
    value: float | None = None
    label: str | None = None


PREDICTION_COLUMNS = PredictionRow._fields
FEEDBACK_COLUMNS = FeedbackRow._fields
