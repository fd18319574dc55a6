"""What a log store's scans of one model's day return: plain rows, the scans' interface, and the sample's sizes.

Two implementations of ``DayScans``: SQL on the pipeline's database (``store.summary``)
and Spark SQL over Parquet (``store.spark_summary``); ``domain.collect`` folds their rows
into a ``DaySummary``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import NamedTuple, Protocol

from rollout_pipeline.domain.summary import Extreme

HASH_BUCKETS = 10_000  # correlation ids hash into 0..9999; a sample keeps the buckets below a threshold
POPULATIONS = 2  # the requests each variant served, each sampled to its own size (see sample_thresholds)
# Requests sampled per population at most (with their shadow twins: twice as many rows). A population this
# small is kept whole; the day's counts (latency histograms, errors, broken answers) are exact whatever its size.
SAMPLE_REQUESTS = 10_000
EXTREME_FETCH_MAX = 5_000  # candidate rows beyond the extreme thresholds fetched with the sample, at most


def blake2b_bucket(text: str | None) -> int | None:
    """The hash bucket (0..HASH_BUCKETS-1) of a text as SQLite's sample and the pure layers compute it: the first
    four bytes of its BLAKE2b, big-endian (None for None)."""
    if text is None:
        return None
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big") % HASH_BUCKETS
FEEDBACK_WINDOW = dt.timedelta(days=2)  # feedback about a day's requests may arrive until two days later

Key = tuple[str, bool]  # (variant, served)


class GroupRow(NamedTuple):
    """One group of the grouped scan: a (variant, served, latency bucket)'s decomposable aggregates.

    ``bucket`` is None for rows without a valid latency. The prediction sums and
    min/max cover the finite, not absurd predictions when ``nonfinite`` is 0.
    """

    variant: str
    served: bool
    bucket: int | None
    n: int
    ok: int
    errors: int
    timeouts: int
    missing_cid: int
    labels: int
    null_outputs: int
    lat_sum: float | None
    lat_max: float | None
    pred_n: int
    nonfinite: int
    pred_sum: float | None
    pred_sq: float | None
    pred_min: float | None
    pred_max: float | None
    shed: int = 0  # shadow calls the mirror dropped (status ``shed``): neither an answer nor an unknown status


class Moments(NamedTuple):
    """A (variant, served)'s sums and range of its finite predictions (re-read when a group held a non-finite one)."""

    variant: str
    served: bool
    pred_sum: float | None
    pred_sq: float | None
    pred_min: float | None
    pred_max: float | None


class CountRow(NamedTuple):
    """A count per (variant, served, key): prediction-histogram bins or label values."""

    variant: str
    served: bool
    key: object
    n: int


class FeedbackAgg(NamedTuple):
    """Feedback of one kind about a (variant, served)'s requests: count, mean |prediction - actual|, label hit rate."""

    variant: str
    served: bool
    kind: str
    n: int
    abs_error_mean: float | None
    label_accuracy: float | None
    broken: int = 0  # rows whose value is NaN, infinite or |x| >= ABSURD_VALUE: counted, never averaged


class LogRow(NamedTuple):
    """A prediction-log row fetched by the sample scan, with its correlation id's hash bucket."""

    correlation_id: str | None
    variant: str
    served: bool
    entity_id: str | None
    latency_ms: float | None
    status: str | None
    prediction: float | None
    label: str | None
    ts: dt.datetime
    bucket: int | None


class FeedbackItem(NamedTuple):
    """One feedback row about a sampled request."""

    correlation_id: str
    kind: str
    ts: dt.datetime
    value: float | None
    label: str | None


class Found(NamedTuple):
    """A candidate output picked as one of the day's extremes."""

    side: str  # "high" | "low"
    correlation_id: str | None
    prediction: float
    ts: dt.datetime


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a UTC day."""
    lo = dt.datetime.combine(day, dt.time(), dt.UTC)
    return lo, lo + dt.timedelta(days=1)


def as_float(value) -> float | None:
    """A scan's number (an int, a Decimal, a numpy float) as a float; None stays None."""
    return None if value is None else float(value)


class DayScans(Protocol):
    """The scans of one log store over one model's day, each returning the plain rows above.

    Two implementations: SQL on the pipeline's database (``store.summary.SqlScans``) and
    Spark SQL over Parquet (``store.spark_summary.SparkScans``). ``collect_with`` drives
    either the same way, so both give the same ``DaySummary`` for the same rows.
    """

    nulls_last: bool  # NULL correlation ids sort last (PostgreSQL's order; SQLite sorts them first)

    def grouped_rows(self, model_name: str, day: dt.date) -> list[GroupRow]: ...

    def finite_moments(self, model_name: str, day: dt.date) -> list[Moments]: ...

    def variant_counts(self, model_name: str, day: dt.date) -> dict[Key, int]: ...

    def prediction_bins(self, model_name: str, day: dt.date, edges: tuple[float, ...]) -> list[CountRow]: ...

    def sample_and_extreme_rows(self, model_name: str, day: dt.date, thresholds: dict[Key, int], candidate: str,
                                t_hi: float | None, t_lo: float | None,
                                sample_rows: int) -> tuple[list[LogRow], bool]: ...

    def extreme_side(self, model_name: str, day: dt.date, candidate: str, side: str, k: int) -> list[Found]: ...

    def with_stable_answers(self, model_name: str, day: dt.date, stable: str,
                            found: list[Found]) -> tuple[Extreme, ...]: ...

    def label_counts(self, model_name: str, day: dt.date) -> list[CountRow]: ...

    def feedback_by_variant(self, model_name: str, day: dt.date) -> list[FeedbackAgg]: ...

    def sample_feedback(self, model_name: str, rows: list[LogRow], thresholds: dict[Key, int],
                        lo: dt.datetime, hi: dt.datetime) -> list[FeedbackItem]: ...
