"""What a day of logs says, per variant: the records the collect step returns.

They hold aggregates over the whole day plus a bounded sample, so their size
depends on the sample size and bin counts, never on the day's row count.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

# A latency or prediction at or beyond this magnitude is absurd: the log-quality suite flags it like a
# non-finite value, and the day's sums leave it out (in PostgreSQL the square of 1e200 overflows float8).
ABSURD_VALUE = 1e15
LATENCY_BINS_PER_E = 50  # latency histogram: bucket k holds exp(k/50)-1 <= ms < exp((k+1)/50)-1 (2% wide)
PREDICTION_BINS = 40


def finite(x) -> bool:
    """A real number: not None, not NaN, not infinite."""
    return isinstance(x, (int, float)) and math.isfinite(x)


def latency_bucket_upper(bucket: int) -> float:
    """Upper edge in ms of latency bucket ``bucket``."""
    return math.expm1((bucket + 1) / LATENCY_BINS_PER_E)


def quantile_from_histogram(buckets: dict[int, int], q: float) -> float | None:
    """The ``q`` quantile from a log-bucket histogram, interpolated inside its bucket (within 2%)."""
    total = sum(buckets.values())
    if total == 0:
        return None
    target = q * total
    seen = 0
    for bucket in sorted(buckets):
        count = buckets[bucket]
        if seen + count >= target:
            lo, hi = math.expm1(bucket / LATENCY_BINS_PER_E), latency_bucket_upper(bucket)
            inside = (target - seen) / count if count else 0.0
            return lo + (hi - lo) * inside
        seen += count
    return latency_bucket_upper(max(buckets))


@dataclass(frozen=True)
class VariantDay:
    """One variant's answers of one kind (served or shadow) over a day."""

    variant: str
    served: bool
    requests: int
    ok: int
    errors: int
    timeouts: int
    unknown_status: int
    missing_correlation_id: int
    invalid_latency: int
    latency_mean: float | None
    latency_max: float | None
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    predictions: int
    prediction_mean: float | None
    prediction_std: float | None
    prediction_min: float | None
    prediction_max: float | None
    nonfinite_predictions: int
    prediction_histogram: tuple[int, ...] = ()
    label_counts: tuple[tuple[str, int], ...] = ()
    complaints: int = 0
    actuals: int = 0
    abs_error_mean: float | None = None
    label_accuracy: float | None = None
    null_outputs: int = 0  # rows with status ok but neither a prediction nor a label (an answer that says nothing)
    broken_feedback: int = 0  # feedback rows about these requests whose value is NaN, infinite or |x| >= ABSURD_VALUE
    # The whole day's latency histogram: (bucket, count) of the rows with a valid latency (bucket k holds
    # exp(k/50)-1 <= ms < exp((k+1)/50)-1). Exact counts: "p99 <= T" is "at most 1% above T", a count.
    latency_histogram: tuple[tuple[int, int], ...] = ()
    shed: int = 0  # shadow calls the mirror dropped (its pool was saturated): no answer of the model's

    @property
    def answers(self) -> int:
        """Rows that carry the model's own answer (ok, error or timeout): shed calls are missing evidence."""
        return self.requests - self.shed

    @property
    def error_rate(self) -> float | None:
        return (self.errors + self.timeouts) / self.answers if self.answers else None

    @property
    def complaint_rate(self) -> float | None:
        return self.complaints / self.requests if self.requests else None

    @property
    def broken(self) -> int:
        """Answers that say nothing usable: ok without any output, or a non-finite or absurd prediction."""
        return self.null_outputs + self.nonfinite_predictions


@dataclass(frozen=True)
class SampleRow:
    """A sampled log row (row-level checks and the statistical tests)."""

    correlation_id: str | None
    variant: str
    served: bool
    latency_ms: float | None
    status: str | None
    prediction: float | None
    label: str | None
    entity_id: str | None = None  # the sticky-assignment key: the unit randomized in canary
    actual: float | None = None  # feedback ``actual`` value for this request, if it arrived in the window
    actual_label: str | None = None  # feedback ``actual`` label for this request
    complaints: int = 0  # feedback ``complaint`` rows for this request


@dataclass(frozen=True)
class Pairing:
    """Shadow pairing measured on the hash sample (both halves of a pair are sampled together)."""

    sample_fraction: float
    served_in_sample: int
    shadow_in_sample: int
    matched: int
    unmatched_shadow: int
    duplicate_correlation_ids: int
    diff_abs_mean: float | None
    disagreement_rate: float | None


@dataclass(frozen=True)
class Extreme:
    """An unusually high or low candidate output and what the stable model said for the same request."""

    correlation_id: str | None
    candidate_prediction: float
    stable_prediction: float | None
    side: str  # "high" | "low"


@dataclass(frozen=True)
class DaySummary:
    """Everything the judge and the validations need about one model's day."""

    model_name: str
    day: dt.date
    stable_variant: str
    candidate_variant: str
    variants: tuple[VariantDay, ...]
    prediction_edges: tuple[float, ...]
    pairing: Pairing | None
    extremes: tuple[Extreme, ...]
    sample: tuple[SampleRow, ...]
    unknown_variants: tuple[str, ...] = ()
    collect_seconds: float = 0.0
    duplicate_served_ids: int = 0  # served rows of the sample whose correlation id another served row has too
    # Late labels: accuracy is judged on the requests of ``accuracy_day`` (= day - policy.label_delay_days),
    # whose outcomes had time to arrive; ``accuracy_sample`` is the hash sample of that day with its feedback.
    # When accuracy_day == day (no delay) accuracy_sample is empty and ``sample`` is used.
    accuracy_day: dt.date | None = None
    accuracy_sample: tuple[SampleRow, ...] = ()
    sample_fraction: float = 1.0  # share of hash buckets sampled of the requests the stable served
    # Per side (variant, served, share of hash buckets sampled): the two answers to one request share a fraction.
    sample_fractions: tuple[tuple[str, bool, float], ...] = ()

    def outcome_sample(self) -> tuple[SampleRow, ...]:
        """The sampled rows whose outcomes (actuals) the accuracy gate judges."""
        if self.accuracy_day is None or self.accuracy_day == self.day:
            return self.sample
        return self.accuracy_sample

    def fraction(self, variant: str, served: bool) -> float:
        """The share of ``variant``'s served (or shadow) rows that the sample holds."""
        return next((f for v, s, f in self.sample_fractions if v == variant and s == served), self.sample_fraction)

    def get(self, variant: str, served: bool) -> VariantDay | None:
        """The stats of ``variant``'s served (or shadow) answers, if any were logged."""
        return next((v for v in self.variants if v.variant == variant and v.served == served), None)

    @property
    def total_rows(self) -> int:
        return sum(v.requests for v in self.variants)
