"""Bulk log writes round-trip on both backends; contract breaches are stored or rejected, never dropped."""

import datetime as dt
import math
import uuid

import pytest
import sqlalchemy as sa

from rollout_pipeline.domain.records import FeedbackRow, PredictionRow
from rollout_pipeline.store import tables
from rollout_pipeline.store.logs import ContractError, unstorable_rows, write_feedback, write_predictions

UTC = dt.UTC
T0 = dt.datetime(2026, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)


def _read(engine, table):
    with engine.connect() as conn:
        return conn.execute(sa.select(table).order_by(table.c.correlation_id)).all()


def _as_utc(ts: dt.datetime) -> dt.datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def test_rows_round_trip_exactly(engine):
    rows = [
        PredictionRow("a", T0, "churn", "v1", True, "user-1", 12.5, "ok", 0.25, None),
        PredictionRow("a", T0, "churn", "v2", False, "user-1", 30.0, "ok", 0.75, None),
        # Awkward text: COPY's special characters, quotes, unicode.
        PredictionRow("b", T0, "churn", "v1", True, "tab\there\nnew\\line 'q' \"dq\" ünï 🚀", 1.0, "ok", None, "cat,dog"),
    ]
    assert write_predictions(engine, rows) == 3
    got = _read(engine, tables.prediction_log)
    assert [tuple(r[:1]) + (_as_utc(r.ts),) + tuple(r[2:10]) for r in got] == [tuple(r) for r in rows]


def test_the_writer_stores_the_bucket_the_database_hashes_the_id_into(engine):
    """The sample bucket is written with the row, and is what the database's own hash of the id gives (so a day
    mixing rows written with and without it is sampled as if all were hashed when read)."""
    from rollout_pipeline.store.summary import hash_bucket

    ids = [f"req-{i}" for i in range(300)] + ["tab\there ünï 🚀", "", str(uuid.UUID(int=7)), None]
    rows = [PredictionRow(cid, T0, "churn", "v1", True, None, 1.0, "ok", 0.5, None) for cid in ids]
    # A row with an unusual value type takes the row-by-row path: it gets its bucket too.
    rows.append(PredictionRow("slow", T0, "churn", "v1", True, None, 1, "ok", 0.5, None))
    assert write_predictions(engine, rows) == len(rows)
    p = tables.prediction_log.c
    with engine.connect() as conn:
        got = conn.execute(sa.select(p.correlation_id, p.sample_bucket, hash_bucket(p.correlation_id))).all()
    assert len(got) == len(rows)
    assert all(stored == hashed for _, stored, hashed in got), [r for r in got if r[1] != r[2]][:5]
    assert {cid for cid, stored, _ in got if stored is None} == {None}
    assert len({stored for _, stored, _ in got}) > 250  # spread over the buckets


def test_mappings_and_aware_non_utc_timestamps_are_accepted(engine):
    plus_two = dt.timezone(dt.timedelta(hours=2))
    row = {"correlation_id": "m1", "ts": dt.datetime(2026, 3, 14, 11, 0, tzinfo=plus_two), "model_name": "m",
           "variant": "v1", "served": True, "latency_ms": 3}
    write_predictions(engine, [row])
    (got,) = _read(engine, tables.prediction_log)
    assert _as_utc(got.ts) == dt.datetime(2026, 3, 14, 9, 0, tzinfo=UTC)
    assert got.status is None and got.latency_ms == 3.0


def test_contract_breaches_that_validation_must_see_are_stored(engine):
    rows = [
        PredictionRow(None, T0, "m", "v1", True, latency_ms=5.0),  # missing correlation id
        PredictionRow("s", T0, "m", "v1", True, status="exploded", latency_ms=5.0),  # unknown status
        PredictionRow("n", T0, "m", "v1", True, latency_ms=-4.0),  # negative latency
        PredictionRow("x", T0, "m", "v1", True, latency_ms=float("nan"), prediction=1e300),  # NaN latency, absurd
    ]
    assert write_predictions(engine, rows) == 4
    got = {r.correlation_id: r for r in _read(engine, tables.prediction_log)}
    assert set(got) == {None, "s", "n", "x"}
    assert got["s"].status == "exploded"
    assert got["n"].latency_ms == -4.0
    assert got["x"].prediction == 1e300
    nan_latency = got["x"].latency_ms
    # PostgreSQL keeps NaN; SQLite has none and stores NULL. Both are flagged as invalid latency.
    assert nan_latency is None if engine.dialect.name == "sqlite" else math.isnan(nan_latency)


@pytest.mark.parametrize(
    "bad, field",
    [
        (PredictionRow("c", None, "m", "v", True), "ts"),
        (PredictionRow("c", "2026-01-01", "m", "v", True), "ts"),
        (PredictionRow("c", T0, "", "v", True), "model_name"),
        (PredictionRow("c", T0, "m", None, True), "variant"),
        (PredictionRow("c", T0, "m", "v", "yes"), "served"),
        (PredictionRow("c", T0, "m", "v", True, latency_ms="12"), "latency_ms"),
        (PredictionRow("c", T0, "m", "v", True, label="nul\x00byte"), "label"),
        (("c", T0, "m"), "row"),
        ({"correlation_id": "c", "ts": T0, "model_name": "m", "variant": "v", "served": True, "oops": 1}, "row"),
    ],
)
def test_unstorable_rows_reject_the_whole_batch_naming_the_row(engine, bad, field):
    good = [PredictionRow(f"g{i}", T0, "m", "v", True, latency_ms=1.0) for i in range(3)]
    with pytest.raises(ContractError) as info:
        write_predictions(engine, [*good, bad, *good])
    assert info.value.index == 3
    assert info.value.field == field
    assert "row 3" in str(info.value) and field in str(info.value)
    assert _read(engine, tables.prediction_log) == []


def test_a_bad_row_after_the_first_chunk_rolls_back_the_chunks_already_sent(engine):
    rows = [PredictionRow(f"g{i:03d}", T0, "m", "v", True, latency_ms=1.0) for i in range(25)]
    rows.append(PredictionRow("bad", T0, "m", "v", "maybe"))
    with pytest.raises(ContractError):
        write_predictions(engine, rows, chunk_rows=10)
    assert _read(engine, tables.prediction_log) == []


def test_feedback_round_trips(engine):
    rows = [
        FeedbackRow("a", T0, "churn", "complaint", 1.0, None),
        FeedbackRow("b", T0, "churn", "actual", None, "spam"),
        FeedbackRow("c", T0, "churn", "my-own-kind", 0.5, "x"),
    ]
    assert write_feedback(engine, rows) == 3
    got = _read(engine, tables.feedback)
    assert [(r.correlation_id, r.kind, r.value, r.label) for r in got] == [
        ("a", "complaint", 1.0, None), ("b", "actual", None, "spam"), ("c", "my-own-kind", 0.5, "x")]


def test_empty_batch_writes_nothing(engine):
    assert write_predictions(engine, []) == 0
    assert write_predictions(engine, iter(())) == 0


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), 1e308, -1e15, 10**400])
def test_a_non_finite_or_absurd_feedback_value_rejects_the_batch_naming_row_and_field(engine, value):
    good = [FeedbackRow(f"g{i}", T0, "m", "actual", 0.5) for i in range(3)]
    with pytest.raises(ContractError) as info:
        write_feedback(engine, [*good, FeedbackRow("bad", T0, "m", "actual", value), *good])
    assert (info.value.index, info.value.field) == (3, "value")
    assert "row 3: value must be a finite number" in str(info.value)
    assert _read(engine, tables.feedback) == []


def test_feedback_values_just_below_the_absurd_limit_are_stored(engine):
    assert write_feedback(engine, [FeedbackRow("a", T0, "m", "actual", 1e15 - 1), FeedbackRow("b", T0, "m", "actual", -3)]) == 2


def test_unstorable_rows_names_each_row_the_database_refuses_and_writes_nothing(engine):
    rows = [FeedbackRow(f"g{i:02d}", T0, "m", "actual", 1.0) for i in range(20)]
    # PostgreSQL: a day partition has no upper bound after 9999-12-31 (SQLite stores that day).
    rows[3] = rows[3]._replace(ts=dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC))
    rows[11] = rows[11]._replace(value=float("nan"))
    rows[17] = rows[17]._replace(label="surrogate \ud800")  # not encodable in UTF-8
    bad = dict(unstorable_rows(engine, "feedback", rows))
    expected = {11, 17} if engine.dialect.name == "sqlite" else {3, 11, 17}
    assert set(bad) == expected, bad
    assert "value must be a finite number" in bad[11] and "surrogate" in bad[17]
    assert _read(engine, tables.feedback) == []
    assert write_feedback(engine, [r for i, r in enumerate(rows) if i not in expected]) == 20 - len(expected)


def test_the_writers_bucket_count_is_the_samples():
    from rollout_pipeline.domain.collect import HASH_BUCKETS
    from rollout_pipeline.store import buckets

    assert buckets.HASH_BUCKETS == HASH_BUCKETS
