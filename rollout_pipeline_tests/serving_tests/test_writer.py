"""The log writer against real databases: outages, slowness, restarts and crashes lose no row and duplicate none."""

from __future__ import annotations

import datetime as dt
import json
import os
import time

import pytest
import sqlalchemy as sa

from rollout_pipeline.domain.records import FeedbackRow, PredictionRow
from rollout_pipeline.serving.writer import LogWriter, SpillFolderInUse
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.logs import write_predictions
from rollout_pipeline_tests.serving_tests.conftest import count, duplicates, set_connections
from rollout_pipeline_tests.timing import TimedProducer, assert_rarely_slow

T0 = dt.datetime(2026, 3, 14, 8, 0, tzinfo=dt.UTC)


def make_rows(n: int, start: int = 0, model: str = "m") -> list[PredictionRow]:
    return [PredictionRow(f"c{start + i:08d}", T0 + dt.timedelta(microseconds=start + i), model, "v1", True,
                          f"u{(start + i) % 97}", 1.5, "ok", float(start + i), None) for i in range(n)]


def segments(folder) -> list[str]:
    return sorted(p for p in os.listdir(folder) if p.endswith(".jsonl") and p != "rejected.jsonl")


def test_close_flushes_everything_to_the_database(engine, tmp_path):
    writer = LogWriter(engine, tmp_path / "spill", batch_rows=500, flush_seconds=5)
    writer.submit_many(make_rows(2_345))
    writer.close()
    assert count(engine) == 2_345 and duplicates(engine) == 0
    assert segments(tmp_path / "spill") == []


def test_rows_spilled_while_down_are_replayed_exactly_once_by_the_next_writer(engine, unreachable_engine, tmp_path):
    folder = tmp_path / "spill"
    down = LogWriter(unreachable_engine, folder, batch_rows=1_000, segment_rows=2_000, retry_seconds=0.05)
    down.submit_many(make_rows(5_000))
    assert down.flush(timeout=30)
    assert not down.database_up
    down.close(timeout=5)
    assert count(engine) == 0
    assert segments(folder)

    with LogWriter(engine, folder) as up:  # a restart, now with the database reachable
        assert up.wait_replayed(timeout=30)
    assert count(engine) == 5_000 and duplicates(engine) == 0
    assert segments(folder) == []

    with LogWriter(engine, folder) as again:  # a second restart replays nothing
        assert again.wait_replayed(timeout=10)
    assert count(engine) == 5_000


def test_a_segment_committed_just_before_a_crash_is_not_written_twice(engine, unreachable_engine, tmp_path):
    folder = tmp_path / "spill"
    committed, not_committed = make_rows(300), make_rows(200, start=1_000)
    for batch in (committed, not_committed):
        writer = LogWriter(unreachable_engine, folder, retry_seconds=60)
        writer.submit_many(batch)
        writer.close(timeout=5)
    first, second = segments(folder)
    # The crash window: the first segment's transaction committed, the process died
    # before deleting the segment; the second was being written when it died.
    write_predictions(engine, committed)
    (folder / (first + ".attempted")).touch()
    (folder / (second + ".attempted")).touch()

    with LogWriter(engine, folder) as writer:
        assert writer.wait_replayed(timeout=30)
        assert writer.counts["already_present"] == 300
        assert writer.counts["replayed"] == 200
    assert count(engine) == 500 and duplicates(engine) == 0


def test_a_torn_last_line_is_kept_aside_and_the_rest_replayed(engine, unreachable_engine, tmp_path):
    folder = tmp_path / "spill"
    writer = LogWriter(unreachable_engine, folder, retry_seconds=60)
    writer.submit_many(make_rows(10))
    writer.close(timeout=5)
    (name,) = segments(folder)
    with open(folder / name, "a") as f:
        f.write('["c-torn","2026-03-14T08:00')  # a crash in the middle of an append
    with LogWriter(engine, folder) as up:
        assert up.wait_replayed(timeout=30)
    assert count(engine) == 10
    rejected = [json.loads(line) for line in (folder / "rejected.jsonl").read_text().splitlines()]
    assert len(rejected) == 1 and "unreadable" in rejected[0]["reason"]


def test_a_row_the_database_cannot_store_is_set_aside_not_lost(engine, tmp_path):
    rows = make_rows(100)
    rows[42] = rows[42]._replace(entity_id="nul\x00byte")
    with LogWriter(engine, tmp_path / "spill") as writer:
        writer.submit_many(rows)
    assert count(engine) == 99
    (line,) = (tmp_path / "spill" / "rejected.jsonl").read_text().splitlines()
    assert "NUL" in json.loads(line)["reason"] and "c00000042" in json.loads(line)["row"]


def test_one_live_writer_per_spill_folder(engine, tmp_path):
    with LogWriter(engine, tmp_path / "spill"):
        with pytest.raises(SpillFolderInUse):
            LogWriter(engine, tmp_path / "spill")
    LogWriter(engine, tmp_path / "spill").close()  # free again after close


def test_feedback_rows_take_the_same_path(engine, unreachable_engine, tmp_path):
    rows = [FeedbackRow(f"c{i}", T0, "m", "complaint", 1.0) for i in range(50)]
    down = LogWriter(unreachable_engine, tmp_path / "fb", kind="feedback", retry_seconds=60)
    down.submit_many(rows)
    down.close(timeout=5)
    with LogWriter(engine, tmp_path / "fb", kind="feedback") as up:
        assert up.wait_replayed(timeout=30)
    assert count(engine, table="feedback") == 50 and duplicates(engine, "feedback") == 0


def _hold_write_lock(db_url: str):
    """A connection that blocks every writer of prediction_log until it is released."""
    engine = make_engine(db_url, poolclass=sa.pool.NullPool)
    conn = engine.connect()
    if engine.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.begin()
        conn.exec_driver_sql("LOCK TABLE prediction_log IN ACCESS EXCLUSIVE MODE")
    return engine, conn


def test_a_slow_database_never_blocks_submit_and_memory_stays_bounded(engine, db_url, tmp_path):
    writer = LogWriter(engine, tmp_path / "spill", batch_rows=500, max_buffer_rows=2_000, flush_seconds=0.05)
    writer.submit_many(make_rows(10))  # first write: creates the day partition before the lock
    assert writer.flush(timeout=30)
    lock_engine, lock = _hold_write_lock(db_url)
    try:
        durations, peak = [], 0
        for row in make_rows(20_000, start=10):
            started = time.perf_counter()
            writer.submit(row)
            durations.append(time.perf_counter() - started)
            peak = max(peak, len(writer._buffer))
        assert writer.counts["overflowed"] > 15_000  # the database is blocked: rows went to disk
        assert peak <= 2 * 2_000 + 1
        # A submit that waited on the locked table would never return (the lock is held until below).
        assert_rarely_slow(durations, slow=0.05, allowed=5, what="submit")
    finally:
        lock.rollback()
        lock.close()
        lock_engine.dispose()
    assert writer.wait_replayed(timeout=60)
    writer.close()
    assert count(engine) == 20_010 and duplicates(engine) == 0


def test_no_row_is_lost_or_duplicated_across_a_postgres_outage(pg_server, pg_url, tmp_path):
    """Rows keep coming while the database refuses connections and its sessions are killed mid-write."""
    database = sa.engine.make_url(pg_url).database
    engine = make_engine(pg_url, connect_args={"connect_timeout": 2})
    writer = LogWriter(engine, tmp_path / "spill", batch_rows=200, flush_seconds=0.02, retry_seconds=0.1,
                       max_retry_seconds=0.5)
    try:
        with TimedProducer(writer.submit, lambda start, n: make_rows(n, start=start), pause=0.002) as producer:
            time.sleep(0.5)
            set_connections(pg_server, database, False)
            deadline = time.monotonic() + 10
            while writer.database_up and time.monotonic() < deadline:
                time.sleep(0.01)
            assert not writer.database_up, "the writer never noticed the outage"
            time.sleep(1.0)
            spilled_during_outage = writer.counts["spilled"]
            assert spilled_during_outage > 0
            set_connections(pg_server, database, True)
            time.sleep(0.5)
    finally:
        set_connections(pg_server, database, True)
    assert writer.wait_replayed(timeout=60), writer.stats()
    writer.close()
    # Waiting on the database would cost a submit the 2 s connect timeout.
    assert_rarely_slow(producer.durations, slow=0.05, allowed=5, waiting_costs=2.0, what="submit")
    assert count(engine) == producer.submitted, (count(engine), producer.submitted, writer.stats())
    assert duplicates(engine) == 0
    assert segments(tmp_path / "spill") == []
    engine.dispose()


def test_a_poison_row_is_not_an_outage_the_valid_rows_around_it_are_written(engine, tmp_path):
    """Feedback stamped 9999-12-31 (PostgreSQL: no day partition can bound it; was taken for an outage and
    retried forever), a NaN value and a lone surrogate: each set aside with its reason, the rest stored."""
    rows = [FeedbackRow(f"c{i:03d}", T0, "m", "complaint", 1.0) for i in range(300)]
    rows[10] = rows[10]._replace(ts=dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC))
    rows[150] = rows[150]._replace(value=float("nan"))
    rows[299] = rows[299]._replace(label="\ud800")
    bad = {150, 299} if engine.dialect.name == "sqlite" else {10, 150, 299}
    with LogWriter(engine, tmp_path / "fb", kind="feedback", batch_rows=100) as writer:
        writer.submit_many(rows)
        assert writer.flush(30)
        later = [FeedbackRow(f"later{i}", T0, "m", "complaint", 1.0) for i in range(5)]
        writer.submit_many(later)
        assert writer.flush(30)
        stats = writer.stats()
    assert stats["database_up"] and stats["pending_segments"] == 0 and stats["spilled"] == 0, stats
    assert stats["rejected"] == len(bad)
    assert count(engine, table="feedback") == 305 - len(bad) and duplicates(engine, "feedback") == 0
    rejected = [json.loads(line) for line in (tmp_path / "fb" / "rejected.jsonl").read_text().splitlines()]
    reasons = " | ".join(r["reason"] for r in rejected)
    assert "value must be a finite number" in reasons and "surrogate" in reasons
    assert {json.loads(r["row"])[0] for r in rejected} == {f"c{i:03d}" for i in bad}


def test_a_spilled_segment_with_a_poison_row_replays_the_rest_once(engine, unreachable_engine, tmp_path):
    folder = tmp_path / "fb"
    rows = [FeedbackRow(f"c{i}", T0, "m", "actual", float(i)) for i in range(50)]
    rows[7] = rows[7]._replace(value=1e308)
    down = LogWriter(unreachable_engine, folder, kind="feedback", retry_seconds=60)
    down.submit_many(rows)
    down.close(timeout=5)
    assert segments(folder)
    with LogWriter(engine, folder, kind="feedback") as up:
        assert up.wait_replayed(timeout=30)
        assert up.counts["replayed"] == 49 and up.stats()["rejected"] == 1
    assert count(engine, table="feedback") == 49 and segments(folder) == []
    with LogWriter(engine, folder, kind="feedback") as again:  # nothing replayed twice
        assert again.wait_replayed(timeout=10)
    assert count(engine, table="feedback") == 49


def test_writer_degraded_follows_spilling_and_rejections(engine, unreachable_engine, tmp_path):
    from rollout_pipeline.serving.writer import writer_degraded

    with LogWriter(engine, tmp_path / "ok") as fine:
        fine.submit_many(make_rows(5))
        assert fine.flush(30)
        assert not writer_degraded(fine.stats())
        fine.submit(make_rows(1, start=99)[0]._replace(entity_id="nul\x00"))
        assert fine.flush(30)
        assert writer_degraded(fine.stats())
    down = LogWriter(unreachable_engine, tmp_path / "down", retry_seconds=60)
    down.submit_many(make_rows(5))
    assert down.flush(30)
    assert writer_degraded(down.stats())
    down.close(timeout=5)
