"""The collect step's pure builder, table-driven: scan rows in, DaySummary pieces out, no database."""

import datetime as dt
import math

import pytest

from rollout_pipeline.domain.collect import (
    HASH_BUCKETS,
    CollectedDay,
    CountRow,
    FeedbackAgg,
    FeedbackItem,
    GroupRow,
    LogRow,
    Moments,
    accumulate,
    apply_moments,
    build_summary,
    counted_histograms,
    duplicate_served,
    extreme_thresholds,
    pairing_of,
    pick_extremes,
    prediction_edges,
    sample_of,
    sample_thresholds,
    scaled_histograms,
)
from rollout_pipeline.domain.summary import PREDICTION_BINS, SampleRow

T = dt.datetime(2026, 5, 4, 12, tzinfo=dt.UTC)
DAY = T.date()


def group(variant="v1", served=True, bucket=100, n=10, ok=None, errors=0, timeouts=0, missing_cid=0, labels=0,
          null_outputs=0, lat_sum=None, lat_max=5.0, pred_n=None, nonfinite=0, pred_sum=None, pred_sq=None,
          pred_min=0.0, pred_max=1.0):
    ok = n - errors - timeouts if ok is None else ok
    pred_n = n if pred_n is None else pred_n
    return GroupRow(variant, served, bucket, n, ok, errors, timeouts, missing_cid, labels, null_outputs,
                    5.0 * n if lat_sum is None else lat_sum, lat_max, pred_n, nonfinite,
                    0.5 * pred_n if pred_sum is None else pred_sum, 0.3 * pred_n if pred_sq is None else pred_sq,
                    pred_min, pred_max)


def row(cid, variant="v1", served=True, bucket=0, prediction=1.0, label=None, entity="u1", ts=T):
    return LogRow(cid, variant, served, entity, 5.0, "ok", prediction, label, ts, bucket)


def srow(cid, variant="v1", served=True, prediction=1.0, label=None):
    return SampleRow(cid, variant, served, 5.0, "ok", prediction, label)


@pytest.mark.parametrize(
    "rows, key, expect",
    [
        # Groups of one (variant, served) add up; statuses, missing ids and null outputs are counted.
        ([group(n=10, errors=2, timeouts=1, null_outputs=3), group(bucket=101, n=5, missing_cid=1)],
         ("v1", True), dict(requests=15, ok=12, errors=2, timeouts=1, unknown_status=0, missing_cid=1,
                            null_outputs=3, lat_n=15, invalid_latency=0, predictions=15)),
        # Rows without a valid latency (bucket None) are invalid_latency, not in the histogram.
        ([group(bucket=None, n=4, lat_sum=None), group(n=6)], ("v1", True),
         dict(requests=10, invalid_latency=4, lat_n=6, latency_histogram={100: 6})),
        # ok + errors + timeouts short of n: the rest have an unknown status.
        ([group(n=10, ok=7, errors=1)], ("v1", True), dict(unknown_status=2)),
        # A group with a non-finite prediction spoils the sums (re-read by Moments), not the count of finite ones.
        ([group(n=10, nonfinite=2, pred_sum=None)], ("v1", True), dict(predictions=8, nonfinite=2, spoiled=True,
                                                                        pred_sum=0.0)),
        # Served and shadow answers of one variant are kept apart.
        ([group(served=True, n=3), group(served=False, n=4)], ("v1", False), dict(requests=4)),
    ],
)
def test_accumulate_rolls_groups_up(rows, key, expect):
    totals = accumulate(rows, candidate="v2")
    got = totals.by_key[key]
    assert {name: getattr(got, name) for name in expect} == expect


def test_accumulate_keeps_the_candidates_clean_group_extremes_and_moments_fix_spoiled_sums():
    totals = accumulate([group("v2", False, 1, pred_min=-1, pred_max=3), group("v2", False, 2, pred_min=0, pred_max=9),
                         group("v2", False, 3, nonfinite=1, pred_min=-5, pred_max=math.inf),
                         group("v1", True, 1, pred_max=100)], candidate="v2")
    assert sorted(totals.candidate_group_max) == [3.0, 9.0] and sorted(totals.candidate_group_min) == [-1.0, 0.0]
    assert totals.spoiled and totals.finite_predictions("v2") == 29
    apply_moments(totals, [Moments("v2", False, 12.0, 50.0, -5.0, 9.0), Moments("v1", True, 0.0, 0.0, 7.0, 7.0)])
    v2, v1 = totals.by_key[("v2", False)], totals.by_key[("v1", True)]
    assert (v2.pred_sum, v2.pred_min, v2.pred_max) == (12.0, -5.0, 9.0)
    assert (v1.pred_min, v1.pred_max) == (0.0, 100.0)  # not spoiled: untouched


def sides(stable_pop: int, candidate_pop: int) -> dict:
    """Thresholds per side: the stable-served population (stable served, candidate shadow), the candidate-served
    one (candidate served, stable shadow)."""
    return {("v1", True): stable_pop, ("v2", False): stable_pop, ("v2", True): candidate_pop, ("v1", False): candidate_pop}


@pytest.mark.parametrize(
    "counts, sample_rows, expect",
    [
        # Small day: everything.
        ({("v1", True): 100, ("v2", False): 100}, 1000, (sides(HASH_BUCKETS, HASH_BUCKETS), True)),
        # Shadow: the served answer and its shadow twin share one threshold, so pairs are sampled whole.
        ({("v1", True): 100_000, ("v2", False): 50_000}, 1000, (sides(100, HASH_BUCKETS), True)),
        # Canary without shadows: each population its own threshold (the 1% candidate is kept whole).
        ({("v1", True): 99_000, ("v2", True): 1_000}, 2000, (sides(202, HASH_BUCKETS), False)),
        # The candidate's 1% with the stable shadowing it stays whole whatever the stable's volume.
        ({("v1", True): 990_000, ("v2", True): 10_000, ("v1", False): 10_000}, 20_000, (sides(202, HASH_BUCKETS), True)),
        # Both ways mirrored at 20%: each population sampled to its size.
        ({("v1", True): 80_000, ("v2", False): 80_000, ("v2", True): 20_000, ("v1", False): 20_000}, 2000,
         (sides(250, 1000), True)),
        # Huge days never go below one bucket.
        ({("v1", True): 10**9}, 10, (sides(1, HASH_BUCKETS), False)),
    ],
)
def test_sample_thresholds(counts, sample_rows, expect):
    assert sample_thresholds(counts, "v1", "v2", sample_rows) == expect


@pytest.mark.parametrize(
    "group_max, group_min, finite, k, expect",
    [
        ([5, 9, 7, 1], [0, -3, 2, -1], 100, 2, (7, -1)),  # the k-th largest max / smallest min
        ([5], [0], 100, 3, (-math.inf, math.inf)),  # few groups, few rows: fetch every candidate row
        ([5], [0], 10_000, 3, (None, None)),  # few groups, many rows: sorted queries
        ([], [], 0, 3, (None, None)),  # nothing to find
        ([5, 6], [0, 1], 10, 0, (None, None)),
    ],
)
def test_extreme_thresholds(group_max, group_min, finite, k, expect):
    assert extreme_thresholds(group_max, group_min, finite, k) == expect


def test_pick_extremes_takes_the_k_most_extreme_candidate_outputs_with_database_tie_order():
    rows = [row("b", "v2", False, prediction=9.0), row("a", "v2", False, prediction=9.0),
            row(None, "v2", False, prediction=9.0), row("c", "v2", False, prediction=3.0),
            row("d", "v1", True, prediction=100.0), row("e", "v2", False, prediction=math.nan),
            row("f", "v2", False, prediction=-4.0)]
    high = pick_extremes(rows, "v2", "high", 3.0, 3, nulls_last=True)
    assert [(f.correlation_id, f.prediction) for f in high] == [("a", 9.0), ("b", 9.0), (None, 9.0)]
    assert [f.correlation_id for f in pick_extremes(rows, "v2", "high", 3.0, 1, nulls_last=False)] == [None]
    assert [f.correlation_id for f in pick_extremes(rows, "v2", "low", 3.0, 5, nulls_last=True)] == ["f", "c"]


def test_sample_keeps_rows_below_their_threshold_with_their_requests_feedback():
    rows = [row("a", "v1", True, bucket=10, entity="u1"), row("a", "v2", False, bucket=10, entity="u1"),
            row("b", "v1", True, bucket=60), row("c", "v2", False, bucket=60), row(None, "v1", True, bucket=None),
            row("z", "v9", True, bucket=0)]
    feedback = [
        FeedbackItem("a", "actual", T + dt.timedelta(hours=2), 3.0, "late"),
        FeedbackItem("a", "actual", T + dt.timedelta(hours=1), 1.0, "early"),  # older: replaced
        FeedbackItem("a", "complaint", T, 1.0, None),
        FeedbackItem("a", "complaint", T, 1.0, None),
        FeedbackItem("c", "complaint", T, 1.0, None),
        FeedbackItem("b", "click", T, 1.0, None),  # other kinds are not outcomes
    ]
    sample = sample_of(rows, {("v1", True): 50, ("v2", False): 100, ("v2", True): 100, ("v1", False): 50}, feedback)
    assert [(r.correlation_id, r.variant) for r in sample] == [("a", "v1"), ("a", "v2"), ("c", "v2")]
    a1, a2, c = sample
    assert (a1.entity_id, a1.actual, a1.actual_label, a1.complaints) == ("u1", 3.0, "late", 2)
    assert (a2.actual, a2.actual_label, a2.complaints) == (3.0, "late", 2)  # both halves of the pair
    assert (c.actual, c.complaints) == (None, 1)


@pytest.mark.parametrize(
    "sample, expect",
    [
        # Matched pairs, |diff| and label disagreement on the pairs only.
        ([srow("a", prediction=1.0, label="x"), srow("a", "v2", False, prediction=3.0, label="y"),
          srow("b", prediction=1.0, label="x"), srow("b", "v2", False, prediction=0.0, label="x")],
         dict(served_in_sample=2, shadow_in_sample=2, matched=2, unmatched_shadow=0, duplicate_correlation_ids=0,
              diff_abs_mean=1.5, disagreement_rate=0.5)),
        # A shadow answer with no served twin; a served id twice; NaN predictions are not differences.
        ([srow("a"), srow("a"), srow("a", "v2", False, prediction=math.nan), srow("o", "v2", False)],
         dict(served_in_sample=2, shadow_in_sample=2, matched=1, unmatched_shadow=1, duplicate_correlation_ids=1,
              diff_abs_mean=None, disagreement_rate=None)),
        ([], dict(matched=0, diff_abs_mean=None)),
    ],
)
def test_pairing(sample, expect):
    pairing = pairing_of(sample, 0.25)
    assert pairing.sample_fraction == 0.25
    assert {name: getattr(pairing, name) for name in expect} == expect


def test_duplicate_served_counts_repeats_of_a_served_id_only():
    assert duplicate_served([srow("a"), srow("a"), srow("a"), srow("a", "v2", False), srow(None), srow(None)]) == 2


def test_histograms_exact_from_a_scan_and_scaled_from_the_sample():
    exact = counted_histograms([CountRow("v1", True, 0, 3), CountRow("v1", True, None, 5),
                                CountRow("v1", True, 99, 1), CountRow("v9", True, 1, 7)], "v1", "v2")
    assert list(exact) == [("v1", True)]
    assert exact[("v1", True)][0] == 3 and exact[("v1", True)][-1] == 1 and sum(exact[("v1", True)]) == 4
    edges = tuple(float(k) for k in range(PREDICTION_BINS + 1))
    sample = [srow(str(i), prediction=0.5 if i % 4 else 39.5) for i in range(40)] + [srow("n", prediction=None)]
    scaled = scaled_histograms(sample, edges, {("v1", True): 1001, ("v2", False): 50})
    hist = scaled[("v1", True)]
    assert sum(hist) == 1001 and hist[0] == 751 and hist[-1] == 250  # largest remainder: exact total
    assert ("v2", False) not in scaled  # nothing sampled for it


def test_prediction_edges_span_stable_and_candidate_only():
    totals = accumulate([group("v1", pred_min=2.0, pred_max=4.0), group("v2", False, pred_min=0.0, pred_max=3.0),
                         group("v9", pred_min=-100.0, pred_max=100.0)], "v2")
    edges = prediction_edges(totals, "v1", "v2")
    assert (edges[0], edges[-1], len(edges)) == (0.0, 4.0, PREDICTION_BINS + 1)
    flat = accumulate([group("v1", pred_min=2.0, pred_max=2.0)], "v2")
    assert (prediction_edges(flat, "v1", "v2")[0], prediction_edges(flat, "v1", "v2")[-1]) == (2.0, 3.0)
    assert prediction_edges(accumulate([], "v2"), "v1", "v2") == ()


def _collected(**overrides) -> CollectedDay:
    totals = accumulate([
        group("v1", True, 100, n=8, lat_sum=40.0, pred_min=0.0, pred_max=1.0, pred_sum=4.0, pred_sq=4.0),
        group("v2", False, 110, n=8, lat_sum=48.0, null_outputs=2, pred_min=0.0, pred_max=2.0),
        group("v7", True, 100, n=1),
    ], "v2")
    sample = (srow("a", prediction=1.0), srow("a", "v2", False, prediction=2.0))
    values = dict(model_name="m", day=DAY, stable="v1", candidate="v2", totals=totals,
                  thresholds=sides(2500, 2500), shadowing=True,
                  edges=prediction_edges(totals, "v1", "v2"), histograms={}, sample=sample,
                  labels=(CountRow("v1", True, "x", 5),),
                  feedback=(FeedbackAgg("v1", True, "actual", 4, 0.5, None), FeedbackAgg("v1", True, "complaint", 2,
                                                                                         None, None)),
                  extremes=())
    values.update(overrides)
    return CollectedDay(**values)


def test_build_summary_puts_the_pieces_together():
    s = build_summary(_collected(), collect_seconds=1.5)
    assert [(v.variant, v.served) for v in s.variants] == [("v1", True), ("v2", False), ("v7", True)]
    v1, v2 = s.get("v1", True), s.get("v2", False)
    assert (v1.latency_mean, v1.prediction_mean, v1.prediction_std) == (5.0, 0.5, 0.5)
    assert (v1.actuals, v1.abs_error_mean, v1.complaints, v1.label_counts) == (4, 0.5, 2, (("x", 5),))
    assert v2.null_outputs == 2 and v2.latency_p50 == pytest.approx(math.expm1(110.5 / 50), rel=0.02)
    assert sum(v1.prediction_histogram) == 8  # sampled day: scaled from the sample to the day's count
    assert s.sample_fraction == 0.25 and s.pairing.sample_fraction == 0.25 and s.pairing.matched == 1
    assert s.fraction("v2", False) == 0.25 and s.fraction("v2", True) == 0.25
    # The whole day's latency histogram is kept (exact counts: a share above a threshold is a count).
    assert v1.latency_histogram == ((100, 8),) and v2.latency_histogram == ((110, 8),)
    assert s.unknown_variants == ("v7",) and s.collect_seconds == 1.5
    assert (s.accuracy_day, s.accuracy_sample) == (DAY, ())


@pytest.mark.parametrize(
    "overrides, check",
    [
        # No shadows logged: no pairing.
        (dict(shadowing=False), lambda s: s.pairing is None),
        # A day no larger than the sample keeps the exact histograms it was given.
        (dict(thresholds=sides(HASH_BUCKETS, HASH_BUCKETS), histograms={("v1", True): [8] + [0] * 39}),
         lambda s: s.get("v1", True).prediction_histogram[0] == 8 and s.sample_fraction == 1.0),
        # Late labels: the earlier day's sample is the outcome sample.
        (dict(accuracy_day=DAY - dt.timedelta(days=2), accuracy_sample=(srow("old"),)),
         lambda s: s.accuracy_day == DAY - dt.timedelta(days=2) and s.outcome_sample() == (srow("old"),)),
        # Duplicate served ids in the sample are counted.
        (dict(sample=(srow("a"), srow("a"))), lambda s: s.duplicate_served_ids == 1),
    ],
)
def test_build_summary_cases(overrides, check):
    assert check(build_summary(_collected(**overrides)))
