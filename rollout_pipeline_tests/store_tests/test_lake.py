"""The lake layout: logs URLs parsed or refused in one line; rows written with LakeWriter read back with pyarrow
exactly (UTC timestamps, the day of their own ts, no hidden file visible), and replace_days replacing a day
only once the new files are complete, keeping other models' rows when asked."""

from __future__ import annotations

import datetime as dt
import math
import os

import pytest

from rollout_pipeline_tests.extras import need

pa = need("pyarrow")
ds = need("pyarrow.dataset")

from rollout_pipeline.domain.records import FeedbackRow, PredictionRow  # noqa: E402
from rollout_pipeline.store.lake import (  # noqa: E402
    COLUMNS,
    LakeUrlError,
    LakeWriter,
    arrow_schema,
    day_dir,
    lake_root,
)

UTC = dt.UTC
DAY = dt.date(2026, 3, 14)
T0 = dt.datetime.combine(DAY, dt.time(), UTC)


@pytest.mark.parametrize("url, root", [
    ("parquet:///data/logs", "file:///data/logs"),
    ("parquet:///data/logs/", "file:///data/logs"),
    ("file:///data/logs", "file:///data/logs"),
    ("  parquet:///data/my logs ", "file:///data/my logs"),
    ("s3a://bucket/logs/", "s3a://bucket/logs"),
    ("s3://bucket/logs", "s3://bucket/logs"),
    ("gs://bucket/logs", "gs://bucket/logs"),
    ("abfss://container@account.dfs.core.windows.net/logs", "abfss://container@account.dfs.core.windows.net/logs"),
    ("hdfs://namenode:8020/logs", "hdfs://namenode:8020/logs"),
])
def test_logs_urls_give_a_spark_readable_root(url, root):
    assert lake_root(url) == root


@pytest.mark.parametrize("url, says", [
    ("parquet://data/logs", "three slashes"),
    ("parquet:///", "absolute"),
    ("parquet:relative/path", "absolute"),
    ("parquet:///data/logs?x=1", "no query"),
    ("s3a:///logs", "bucket"),
    ("postgresql://localhost/db", "unsupported logs URL"),
    ("/data/logs", "unsupported logs URL"),
    ("", "unsupported logs URL"),
])
def test_bad_logs_urls_are_refused_in_one_line(url, says):
    with pytest.raises(LakeUrlError) as caught:
        lake_root(url)
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_day_dir_names_the_table_and_day_and_refuses_unknown_tables():
    assert day_dir("file:///x", "feedback", DAY) == "file:///x/feedback/day=2026-03-14"
    with pytest.raises(ValueError, match="unknown log table"):
        day_dir("file:///x", "decisions", DAY)


def read(root, table):
    """Every visible row of ``table`` under a local root, as the contract's tuples (NaN as a marker)."""
    path = os.path.join(root, table)
    if not os.path.isdir(path):
        return []
    dataset = ds.dataset(path, format="parquet", schema=arrow_schema(table))
    rows = dataset.to_table(columns=list(COLUMNS[table])).to_pylist()
    return [tuple("NaN" if isinstance(v, float) and math.isnan(v) else v for v in r.values()) for r in rows]


def files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, names in os.walk(root) for f in names)


def prediction_rows(model="m", day=DAY, n=10, offset=0):
    start = dt.datetime.combine(day, dt.time(), UTC)
    return [PredictionRow(f"{model}-{day}-{offset + i}", start + dt.timedelta(hours=i * 23 / max(n, 1)), model,
                          "v1" if i % 2 else "v2", bool(i % 2), None if i % 3 == 0 else f"e{i}", 10.0 + i,
                          "ok", i / 10, "yes" if i % 4 == 0 else None) for i in range(n)]


def test_rows_round_trip_by_the_day_of_their_own_ts_in_utc(tmp_path):
    late = dt.datetime(2026, 3, 15, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=3)))  # 2026-03-14 22:30 UTC
    predictions = [
        PredictionRow("a", T0, "m", "v1", True, "e1", 12.5, "ok", 0.25, None),
        PredictionRow(None, late, "m", "v2", False, None, float("nan"), "exploded", None, "tab\there 'q' é"),
        PredictionRow("c", T0 + dt.timedelta(days=1), "m", "v1", True, None, -5.0, "ok", None, None),
    ]
    fb = [FeedbackRow("a", T0 + dt.timedelta(hours=30), "m", "actual", 1.5, None),
          {"correlation_id": "a", "ts": T0, "model_name": "m", "kind": "complaint", "value": 1.0, "ignored": 1}]
    with LakeWriter(f"parquet://{tmp_path}") as writer:
        assert writer.append("prediction_log", predictions) == 3
        writer.append("feedback", fb)
    assert files(tmp_path) == sorted(os.path.relpath(f, tmp_path) for f in writer.files)
    days = sorted({f.split("/")[1] for f in files(tmp_path)})
    assert days == ["day=2026-03-14", "day=2026-03-15"]
    expected = {tuple("NaN" if isinstance(v, float) and math.isnan(v) else v for v in r) for r in predictions}
    expected = {(r[0], r[1].astimezone(UTC), *r[2:]) for r in expected}
    assert set(read(tmp_path, "prediction_log")) == expected
    assert set(read(tmp_path, "feedback")) == {("a", T0 + dt.timedelta(hours=30), "m", "actual", 1.5, None),
                                               ("a", T0, "m", "complaint", 1.0, None)}
    assert writer.rows_written == {"prediction_log": 3, "feedback": 2}
    schema = ds.dataset(os.path.join(tmp_path, "prediction_log"), format="parquet").schema
    assert schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert schema.remove_metadata().equals(arrow_schema("prediction_log"))


def test_rows_without_a_time_zone_or_of_the_wrong_shape_are_refused(tmp_path):
    with LakeWriter(f"parquet://{tmp_path}") as writer:
        with pytest.raises(ValueError, match="no time zone"):
            writer.append("prediction_log", [PredictionRow("a", T0.replace(tzinfo=None), "m", "v", True)])
        with pytest.raises(ValueError, match="fields"):
            writer.append("feedback", [("a", T0)])
        with pytest.raises(ValueError, match="unknown log table"):
            writer.append("decisions", [])


def test_batches_become_row_groups_sorted_by_model(tmp_path):
    import pyarrow.parquet as pq

    rows = prediction_rows("b", n=25) + prediction_rows("a", n=25)
    with LakeWriter(f"parquet://{tmp_path}", batch_rows=10) as writer:
        for row in rows:
            writer.append("prediction_log", [row])
    (path,) = writer.files
    meta = pq.ParquetFile(path).metadata
    assert meta.num_rows == 50
    table = pq.read_table(path)
    for k in range(meta.num_row_groups):
        group = pq.ParquetFile(path).read_row_group(k).to_pylist()
        assert 0 < len(group) <= 10
        keys = [(r["model_name"], r["ts"]) for r in group]
        assert keys == sorted(keys)
    assert table.num_rows == 50


def test_each_row_group_holds_one_band_of_sample_buckets_so_a_sample_skips_the_others(tmp_path):
    """The bucket is Spark's xxhash64 of the id (store.buckets); a row group's statistics bound it to one band."""
    import bisect

    import pyarrow.parquet as pq

    from rollout_pipeline.store.buckets import xxhash64_buckets
    from rollout_pipeline.store.lake import BUCKET_BANDS

    rows = prediction_rows(n=3000) + [PredictionRow(None, T0, "m", "v1", True, None, 1.0, "ok", 0.5, None)]
    with LakeWriter(f"parquet://{tmp_path}", batch_rows=500) as writer:
        writer.append("prediction_log", rows)
    (path,) = writer.files
    file = pq.ParquetFile(path)
    got = file.read().to_pylist()
    assert sorted((r["correlation_id"] or "", r["sample_bucket"] if r["sample_bucket"] is not None else -1)
                  for r in got) == sorted((cid or "", -1 if b is None else b)
                                          for cid, b in zip((r[0] for r in rows), xxhash64_buckets([r[0] for r in rows])))
    bands = []
    for k in range(file.metadata.num_row_groups):
        buckets = [b for b in file.read_row_group(k, columns=["sample_bucket"]).column(0).to_pylist() if b is not None]
        if buckets:
            assert len({bisect.bisect_right(BUCKET_BANDS, b) for b in buckets}) == 1
            stats = file.metadata.row_group(k).column(10).statistics
            assert (stats.min, stats.max) == (min(buckets), max(buckets))
            bands.append(bisect.bisect_right(BUCKET_BANDS, buckets[0]))
    assert sorted(set(bands)) == list(range(1, len(BUCKET_BANDS) + 1))
    # A sample below bucket 64 is in a few row groups holding about 0.64% of the rows.
    low = [k for k in range(file.metadata.num_row_groups) if file.metadata.row_group(k).column(10).statistics.min < 64]
    assert sum(file.metadata.row_group(k).num_rows for k in low) < 100


def test_a_writer_that_is_not_closed_leaves_only_hidden_files_and_a_failed_one_leaves_nothing(tmp_path):
    writer = LakeWriter(f"parquet://{tmp_path}", batch_rows=5)
    writer.append("prediction_log", prediction_rows(n=40))  # the largest band's row groups written, the rest held
    on_disk = files(tmp_path)
    assert on_disk and all(os.path.basename(f).startswith(".") for f in on_disk)
    assert read(tmp_path, "prediction_log") == []  # readers skip hidden files
    writer.close()
    assert len(read(tmp_path, "prediction_log")) == 40

    with pytest.raises(RuntimeError, match="boom"):
        with LakeWriter(f"parquet://{tmp_path}", batch_rows=5) as failing:
            failing.append("prediction_log", prediction_rows(n=12, offset=100))
            raise RuntimeError("boom")
    assert len(read(tmp_path, "prediction_log")) == 40
    assert not [f for f in files(tmp_path) if os.path.basename(f).startswith(".")]


def test_replace_days_replaces_only_those_days_and_only_once_the_new_files_are_complete(tmp_path):
    url = f"parquet://{tmp_path}"
    other_day = DAY + dt.timedelta(days=1)
    with LakeWriter(url) as writer:
        writer.append("prediction_log", prediction_rows(n=6) + prediction_rows(day=other_day, n=4))
    new = prediction_rows(n=3, offset=50)

    with pytest.raises(RuntimeError):
        with LakeWriter(url) as failing:
            failing.replace_days("prediction_log", [DAY])
            failing.append("prediction_log", new)
            raise RuntimeError("the database went away")
    assert len(read(tmp_path, "prediction_log")) == 10  # the day as it was

    with LakeWriter(url) as writer:
        writer.replace_days("prediction_log", [DAY])
        writer.append("prediction_log", new)
        assert len(read(tmp_path, "prediction_log")) == 10  # nothing changes before close
    rows = read(tmp_path, "prediction_log")
    assert sorted(r[0] for r in rows if r[1].date() == DAY) == sorted(r.correlation_id for r in new)
    assert len([r for r in rows if r[1].date() == other_day]) == 4

    with LakeWriter(url) as writer:  # a replaced day with nothing new is emptied
        writer.replace_days("prediction_log", [DAY])
    assert [r[1].date() for r in read(tmp_path, "prediction_log")] == [other_day] * 4


def test_replace_days_for_some_models_keeps_the_other_models_rows(tmp_path):
    url = f"parquet://{tmp_path}"
    with LakeWriter(url, batch_rows=4) as writer:
        writer.append("prediction_log", prediction_rows("a", n=7) + prediction_rows("b", n=5)
                      + prediction_rows("c", n=3))
    before = read(tmp_path, "prediction_log")
    replacement = prediction_rows("a", n=2, offset=70)
    with LakeWriter(url, batch_rows=4) as writer:
        writer.replace_days("prediction_log", [DAY], only_models=["a", "c"])
        writer.append("prediction_log", replacement)
    after = read(tmp_path, "prediction_log")
    assert sorted(after, key=repr) == sorted([r for r in before if r[2] == "b"] + [tuple(r) for r in replacement],
                                             key=repr)
    assert writer.rows_kept["prediction_log"] == 5 and writer.rows_written["prediction_log"] == 2
    assert len(writer.files) == 1


def test_a_missing_pyarrow_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(LakeUrlError, match=r"needs pyarrow: pip install 'rollout-pipeline\[spark\]'"):
        LakeWriter(f"parquet://{tmp_path}")
