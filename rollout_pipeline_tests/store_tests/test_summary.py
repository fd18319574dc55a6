"""The day-summary queries against known logs, on both backends: counts, quantiles, pairing, feedback."""

import collections
import datetime as dt
import math
import random

import pytest
import sqlalchemy as sa

from rollout_pipeline.domain.records import FeedbackRow, PredictionRow
from rollout_pipeline.store.logs import write_feedback, write_predictions
from rollout_pipeline.store.summary import collect_day

UTC = dt.UTC
DAY = dt.date(2026, 5, 4)
T = dt.datetime(2026, 5, 4, 12, tzinfo=UTC)


def _shadow_day(n: int, seed: int = 1):
    rng = random.Random(seed)
    rows, stable_lat, cand_lat = [], [], []
    for i in range(n):
        cid = f"req-{i:06d}"
        ts = T + dt.timedelta(seconds=i)
        ls, lc = rng.lognormvariate(3, 0.3), rng.lognormvariate(3.5, 0.3)
        stable_lat.append(ls)
        cand_lat.append(lc)
        rows.append(PredictionRow(cid, ts, "m", "v1", True, f"e{i % 50}", ls, "ok", i / n, "a"))
        rows.append(PredictionRow(cid, ts, "m", "v2", False, f"e{i % 50}", lc, "ok", i / n + 0.1, "a" if i % 4 else "b"))
    return rows, stable_lat, cand_lat


def _exact_quantile(values, q):
    values = sorted(values)
    pos = q * (len(values) - 1)
    lo = math.floor(pos)
    return values[lo] + (values[min(lo + 1, len(values) - 1)] - values[lo]) * (pos - lo)


def test_counts_quantiles_and_pairing(engine):
    rows, stable_lat, cand_lat = _shadow_day(3000)
    # Noise that must not be counted: another model, another day.
    rows.append(PredictionRow("other", T, "other-model", "v1", True, latency_ms=1.0))
    rows.append(PredictionRow("late", T + dt.timedelta(days=1), "m", "v1", True, latency_ms=1.0))
    write_predictions(engine, rows)
    with engine.connect() as conn:
        s = collect_day(conn, "m", DAY, "v1", "v2", sample_rows=1000)
    stable, cand = s.get("v1", True), s.get("v2", False)
    assert (stable.requests, cand.requests) == (3000, 3000)
    assert s.total_rows == 6000
    for got, values in ((stable, stable_lat), (cand, cand_lat)):
        for q, attr in ((0.5, "latency_p50"), (0.95, "latency_p95"), (0.99, "latency_p99")):
            assert getattr(got, attr) == pytest.approx(_exact_quantile(values, q), rel=0.03)
        assert got.latency_mean == pytest.approx(sum(values) / len(values))
    assert stable.prediction_mean == pytest.approx(sum(i / 3000 for i in range(3000)) / 3000)
    assert sum(stable.prediction_histogram) == 3000 and sum(cand.prediction_histogram) == 3000
    assert dict(cand.label_counts) == {"a": 2250, "b": 750}
    # Pairing on the hash sample: pairs are kept whole, and the sample is bounded.
    pr = s.pairing
    assert 0.2 < pr.sample_fraction < 0.5
    assert pr.matched == pr.shadow_in_sample == pr.served_in_sample
    assert pr.unmatched_shadow == 0
    assert pr.diff_abs_mean == pytest.approx(0.1)
    assert pr.disagreement_rate == pytest.approx(0.25, abs=0.05)
    assert len(s.sample) <= 2 * 1000 * 1.2
    assert s.unknown_variants == ()


def test_sample_is_deterministic(engine):
    rows, _, _ = _shadow_day(2000)
    write_predictions(engine, rows)
    with engine.connect() as conn:
        a = collect_day(conn, "m", DAY, "v1", "v2", sample_rows=300)
        b = collect_day(conn, "m", DAY, "v1", "v2", sample_rows=300)
    assert a.sample == b.sample and len(a.sample) > 0


def test_contract_breaches_are_counted(engine):
    rows = [
        PredictionRow(None, T, "m", "v1", True, latency_ms=5.0),
        PredictionRow("s", T, "m", "v1", True, latency_ms=5.0, status="weird"),
        PredictionRow("n", T, "m", "v1", True, latency_ms=-1.0),
        PredictionRow("x", T, "m", "v1", True, latency_ms=float("nan"), prediction=float("inf")),
        PredictionRow("e", T, "m", "v2", True, latency_ms=5.0, status="error"),
        PredictionRow("t", T, "m", "v2", True, latency_ms=5.0, status="timeout"),
        PredictionRow("u", T, "m", "v9", True, latency_ms=5.0),
    ]
    write_predictions(engine, rows)
    with engine.connect() as conn:
        s = collect_day(conn, "m", DAY, "v1", "v2")
    v1, v2 = s.get("v1", True), s.get("v2", True)
    assert (v1.missing_correlation_id, v1.unknown_status, v1.invalid_latency) == (1, 1, 2)
    assert v1.nonfinite_predictions == 1  # infinity exists on both backends (NaN only on PostgreSQL)
    assert (v2.errors, v2.timeouts, v2.error_rate) == (1, 1, 1.0)
    assert s.unknown_variants == ("v9",)
    assert s.pairing is None  # no shadow answers: canary-style day


def test_extremes_carry_the_stable_answer(engine):
    rows, _, _ = _shadow_day(200)
    rows.append(PredictionRow("boom", T, "m", "v1", True, None, 10.0, "ok", 0.5, None))
    rows.append(PredictionRow("boom", T, "m", "v2", False, None, 10.0, "ok", 1e6, None))
    write_predictions(engine, rows)
    with engine.connect() as conn:
        s = collect_day(conn, "m", DAY, "v1", "v2", top_k=3)
    top = [e for e in s.extremes if e.side == "high"]
    assert top[0].correlation_id == "boom" and top[0].candidate_prediction == 1e6 and top[0].stable_prediction == 0.5
    assert len([e for e in s.extremes if e.side == "low"]) == 3


def test_feedback_rates_and_accuracy(engine):
    rows = [
        PredictionRow("a", T, "m", "v1", True, None, 1.0, "ok", 10.0, "x"),
        PredictionRow("b", T, "m", "v2", True, None, 1.0, "ok", 20.0, "y"),
        PredictionRow("c", T, "m", "v2", True, None, 1.0, "ok", 30.0, "y"),
    ]
    write_predictions(engine, rows)
    write_feedback(engine, [
        FeedbackRow("b", T + dt.timedelta(hours=1), "m", "complaint", 1.0),
        FeedbackRow("a", T + dt.timedelta(hours=30), "m", "actual", 12.0, "x"),
        FeedbackRow("b", T + dt.timedelta(hours=30), "m", "actual", 20.0, "z"),
        FeedbackRow("c", T + dt.timedelta(hours=30), "m", "actual", 25.0, "y"),
        FeedbackRow("a", T + dt.timedelta(days=5), "m", "complaint", 1.0),  # too late: outside the window
    ])
    with engine.connect() as conn:
        s = collect_day(conn, "m", DAY, "v1", "v2")
    v1, v2 = s.get("v1", True), s.get("v2", True)
    assert (v1.complaints, v2.complaints, v2.complaint_rate) == (0, 1, 0.5)
    assert (v1.actuals, v1.abs_error_mean, v1.label_accuracy) == (1, 2.0, 1.0)
    assert (v2.actuals, v2.abs_error_mean, v2.label_accuracy) == (2, 2.5, 0.5)


def test_the_feedback_join_never_nests_on_a_day_without_statistics(pg_url, reader_engine):
    """Freshly written partitions have no statistics; the join must still hash, not rescan per row.

    Read as a role that may not ANALYZE the day (the pipeline's least-privileged role),
    so the day keeps no statistics while collect joins it.
    """
    from rollout_pipeline.store.engine import make_engine

    owner = make_engine(pg_url)
    rows, _, _ = _shadow_day(2000)
    write_predictions(owner, rows)
    write_feedback(owner, [FeedbackRow(f"req-{i:06d}", T + dt.timedelta(hours=2), "m", "actual", 0.5)
                           for i in range(0, 2000, 2)])
    owner.dispose()
    plans = []

    @sa.event.listens_for(reader_engine, "after_cursor_execute")
    def explain(conn, cursor, statement, parameters, context, executemany):
        if "JOIN prediction_log" in statement and not statement.startswith("EXPLAIN"):
            with conn.connection.dbapi_connection.cursor() as c:  # same session, same settings
                c.execute("EXPLAIN " + statement, parameters)
                plans.append("\n".join(r[0] for r in c.fetchall()))

    with reader_engine.connect() as conn:
        s = collect_day(conn, "m", DAY, "v1", "v2")
        assert conn.execute(sa.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:day)"),
                            {"day": f"prediction_log_p{DAY:%Y%m%d}"}).scalar() == -1  # still no statistics
    assert s.get("v1", True).actuals == 1000
    assert len(plans) == 1 and "Hash Join" in plans[0] and "Nested Loop" not in plans[0], plans


def test_an_empty_day(engine):
    with engine.connect() as conn:
        s = collect_day(conn, "m", DAY, "v1", "v2")
    assert s.variants == () and s.total_rows == 0 and s.sample == () and s.extremes == ()


def test_sampled_rows_carry_their_entity_and_their_requests_feedback(engine):
    rows, _, _ = _shadow_day(2000)
    write_predictions(engine, rows)
    fb = []
    for i in range(2000):
        cid, served_at = f"req-{i:06d}", T + dt.timedelta(seconds=i)
        if i % 2 == 0:  # an outcome, corrected later: the latest counts
            fb.append(FeedbackRow(cid, served_at + dt.timedelta(hours=1), "m", "actual", 1.0, "first"))
            fb.append(FeedbackRow(cid, served_at + dt.timedelta(hours=20), "m", "actual", float(i), f"l{i}"))
        if i % 7 == 0:
            fb += [FeedbackRow(cid, served_at + dt.timedelta(minutes=5), "m", "complaint", 1.0)] * 2
        if i % 5 == 0:  # noise: too late, another model, another kind
            fb.append(FeedbackRow(cid, served_at + dt.timedelta(days=5), "m", "complaint", 1.0))
            fb.append(FeedbackRow(cid, served_at + dt.timedelta(hours=1), "other", "actual", -1.0))
            fb.append(FeedbackRow(cid, served_at + dt.timedelta(hours=1), "m", "click", 1.0))
    write_feedback(engine, fb)
    with engine.connect() as conn:
        s = collect_day(conn, "m", DAY, "v1", "v2", sample_rows=300)
    assert 0 < s.sample_fraction < 0.5 and s.sample_fraction == s.pairing.sample_fraction
    assert 0 < len(s.sample) <= 2 * 300 * 1.3  # bounded by the sample, feedback included
    assert {r.variant for r in s.sample} == {"v1", "v2"}
    for r in s.sample:
        i = int(r.correlation_id.split("-")[1])
        assert r.entity_id == f"e{i % 50}"
        assert (r.actual, r.actual_label) == ((float(i), f"l{i}") if i % 2 == 0 else (None, None))
        assert r.complaints == (2 if i % 7 == 0 else 0)
    assert any(r.complaints for r in s.sample) and any(r.actual is not None for r in s.sample)


def test_ok_rows_that_say_nothing_are_null_outputs(engine):
    write_predictions(engine, [
        PredictionRow("a", T, "m", "v1", True, "u", 5.0, "ok", None, None),  # null output
        PredictionRow("b", T, "m", "v1", True, "u", 5.0, "ok", 1.0, None),
        PredictionRow("c", T, "m", "v1", True, "u", 5.0, "ok", None, "x"),
        PredictionRow("d", T, "m", "v1", True, "u", 5.0, "error", None, None),  # a failure, not a null output
        PredictionRow("a", T, "m", "v2", False, "u", 5.0, "ok", None, None),  # null output
        PredictionRow("b", T, "m", "v2", False, "u", None, "ok", None, None),  # null output, no latency
        PredictionRow("c", T, "m", "v2", False, "u", 5.0, "timeout", None, None),
    ])
    with engine.connect() as conn:
        s = collect_day(conn, "m", DAY, "v1", "v2")
    assert (s.get("v1", True).null_outputs, s.get("v2", False).null_outputs) == (1, 2)
    assert s.accuracy_day == DAY and s.accuracy_sample == () and s.outcome_sample() == s.sample


def test_the_accuracy_sample_is_an_earlier_day_with_the_outcomes_arrived_since(engine):
    early = DAY - dt.timedelta(days=3)
    t_early = dt.datetime.combine(early, dt.time(9), UTC)
    write_predictions(engine, [
        PredictionRow(f"old-{i:04d}", t_early + dt.timedelta(seconds=i), "m", v, served, f"e{i % 30}", 5.0, "ok",
                      float(i), None)
        for i in range(1200) for v, served in (("v1", True), ("v2", False))
    ] + [PredictionRow("today", T, "m", "v1", True, "e0", 5.0, "ok", 1.0, None)])
    day_end = dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(), UTC)
    write_feedback(engine, [
        FeedbackRow(f"old-{i:04d}", day_end - dt.timedelta(hours=1) if i % 3 else day_end + dt.timedelta(hours=1),
                    "m", "actual", float(i) + 0.5)
        for i in range(0, 1200, 2)
    ])
    with engine.connect() as conn:
        s = collect_day(conn, "m", DAY, "v1", "v2", sample_rows=500, accuracy_day=early)
        same = collect_day(conn, "m", DAY, "v1", "v2", sample_rows=500, accuracy_day=DAY)
    assert s.accuracy_day == early and s.total_rows == 1
    acc = s.accuracy_sample
    assert 0 < len(acc) <= 2 * 500 * 1.3 and {r.variant for r in acc} == {"v1", "v2"}
    assert all(r.correlation_id.startswith("old-") for r in acc)
    halves = collections.Counter(r.correlation_id for r in acc)
    assert set(halves.values()) == {2}  # pairs sampled whole, as on the day itself
    for r in acc:
        i = int(r.correlation_id.split("-")[1])
        arrived = i % 2 == 0 and i % 3 != 0  # outcomes after the end of DAY had no time to arrive
        assert r.actual == (float(i) + 0.5 if arrived else None)
    assert s.outcome_sample() == acc
    assert (same.accuracy_day, same.accuracy_sample) == (DAY, ())


def test_absurd_feedback_stored_by_another_writer_holds_the_day_instead_of_crashing(engine):
    """A feedback value of 1e308 or NaN written past our writer (which refuses them): collect still sums the day,
    and the integrity gate turns it into a data-quality hold naming the count."""
    from rollout_pipeline.domain.decide import RolloutState, decide, evidence_from
    from rollout_pipeline.domain.evaluate import evaluate
    from rollout_pipeline.domain.policy import Policy
    from rollout_pipeline.quality.traffic import DaySpec, generate
    from rollout_pipeline.store.tables import feedback

    spec = DaySpec("canary-50", 3000, 1, day=DAY)
    rows, fb, _ = generate(spec, "m")
    write_predictions(engine, rows)
    poisoned = [dict(f._asdict(), value=(1e308 if k % 3 == 0 else math.nan) if f.kind == "actual" and k % 3 < 2
                     else f.value) for k, f in enumerate(fb)]
    with engine.begin() as conn:
        conn.execute(feedback.insert(), poisoned)
    with engine.connect() as conn:
        summary = collect_day(conn, "m", DAY, "v1", "v2")
    decision = decide(RolloutState("canary", 50, 5), evidence_from(evaluate(summary, "canary", Policy()), []), Policy())
    assert decision.action == "hold"
    assert "data quality failed" in decision.reasons[0]
    assert "sampled actual outcomes are not finite numbers" in decision.reasons[1]


def test_a_day_mixing_rows_without_a_bucket_and_rows_with_one_is_summarized_as_if_all_were_hashed(engine):
    """Rows written before the sample bucket existed (NULL) are hashed when read; the writer stores the same
    bucket, so a day of old rows, of new rows or of both gives the same summary, sample and extremes."""
    from rollout_pipeline.store.tables import prediction_log
    from rollout_pipeline_tests.summaries import differences

    rows, _, _ = _shadow_day(3000, seed=5)
    write_predictions(engine, rows)
    p = prediction_log.c

    def collect():
        with engine.connect() as conn:
            return collect_day(conn, "m", DAY, "v1", "v2", sample_rows=500)

    def forget_buckets(before):
        with engine.begin() as conn:
            conn.execute(prediction_log.update().where(p.ts < before).values(sample_bucket=None))

    new = collect()
    forget_buckets(T + dt.timedelta(seconds=1500))  # the first half of the day, as if written before 0008
    mixed = collect()
    forget_buckets(T + dt.timedelta(days=1))
    old = collect()
    assert 0 < old.sample_fraction < 0.5 and len(old.sample) > 100 and old.extremes
    skip = frozenset({"collect_seconds"})
    assert differences(new, old, skip=skip) == []
    assert differences(mixed, old, skip=skip) == []

    # The stored bucket is what is read (not the id's hash again): a pair moved to bucket 0 joins the sample.
    outside = next(r.correlation_id for r in rows if r.correlation_id not in {s.correlation_id for s in old.sample})
    with engine.begin() as conn:
        conn.execute(prediction_log.update().where(p.correlation_id == outside).values(sample_bucket=0))
    moved = collect()
    assert [s.served for s in moved.sample if s.correlation_id == outside] == [True, False]
    assert len(moved.sample) == len(old.sample) + 2
