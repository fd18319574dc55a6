"""The spill folder on its own, without threads or a database: segments written, listed, replayed exactly
once through callables, marked done, and a poison file quarantined so that the segments after it go on."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from rollout_pipeline.domain.records import FeedbackRow, PredictionRow
from rollout_pipeline.serving.spill import SpillFolder, SpillFolderInUse, decode_row, encode_row

T0 = dt.datetime(2026, 3, 14, 8, 0, tzinfo=dt.UTC)


def rows(n: int, start: int = 0) -> list[PredictionRow]:
    return [PredictionRow(f"c{start + i}", T0, "m", "v1", True, None, 1.0, "ok", float(start + i), None) for i in range(n)]


@pytest.fixture
def spill(tmp_path):
    folder = SpillFolder(tmp_path / "s", prefix="pred", row_type=PredictionRow, segment_rows=10)
    yield folder
    folder.release()


def test_rows_round_trip_through_a_line_including_nan_and_a_lone_surrogate():
    row = PredictionRow("c", T0, "m", "v1", False, "e\ud800", float("nan"), "ok", None, "ü")
    back = decode_row(encode_row(row), PredictionRow)
    assert back[:6] == row[:6] and back.latency_ms != back.latency_ms and back.label == "ü"
    assert encode_row(row).isascii()  # a surrogate cannot break the file's UTF-8


def test_append_seals_full_segments_and_lists_them_oldest_first(spill):
    for start in (0, 10, 20):  # a segment is sealed once it holds segment_rows (10) rows
        spill.append(rows(10 if start < 20 else 5, start))
    assert [p.name for p in spill.segments()] == ["pred-000000000001.jsonl", "pred-000000000002.jsonl"]
    assert spill.pending() == 3  # two sealed, the open one holds 5 rows
    assert spill.read(spill.segments()[0]) == rows(10)


def test_replay_writes_each_segment_once_then_deletes_it(spill):
    spill.append(rows(10))
    spill.append(rows(5, 10))
    written: list = []

    def write(_segment, batch):
        written.extend(batch)
        return len(batch)

    outcomes = []
    while (result := spill.replay_oldest(write, already_stored=lambda _rows: pytest.fail("not attempted"))):
        outcomes.append((result.outcome, result.rows))
    assert outcomes == [("replayed", 10), ("replayed", 5)]
    assert written == rows(15) and spill.pending() == 0 and spill.segments() == []


def test_a_failed_write_leaves_the_segment_marked_and_an_already_stored_one_is_not_written_again(spill):
    spill.append(rows(10))
    (segment,) = spill.segments()

    def outage(_segment, _batch):
        raise ConnectionError("database down")

    with pytest.raises(ConnectionError):
        spill.replay_oldest(outage, already_stored=lambda _rows: False)
    assert segment.exists() and spill.attempted(segment)
    result = spill.replay_oldest(lambda *_: pytest.fail("written twice"), already_stored=lambda _rows: True)
    assert (result.outcome, result.rows) == ("already_present", 10)
    assert not segment.exists() and not spill.marker(segment).exists()


def test_an_attempted_segment_that_is_not_stored_is_written(spill):
    path = spill.write_attempted(rows(3))
    assert spill.attempted(path)
    result = spill.replay_oldest(lambda _s, batch: len(batch), already_stored=lambda _rows: False)
    assert (result.outcome, result.rows) == ("replayed", 3) and not path.exists()


def test_a_poison_file_is_quarantined_and_the_next_segment_replayed(spill):
    spill.append(rows(10))
    spill.append(rows(10, 10))
    first, second = spill.segments()
    first.write_bytes(b"\xff\xfe not utf-8 \x00\x81")
    result = spill.replay_oldest(lambda _s, batch: len(batch), already_stored=lambda _rows: False)
    assert result.outcome == "quarantined" and spill.quarantined == 1
    assert (spill.quarantine_dir / first.name).exists()
    assert "unreadable" in (spill.quarantine_dir / (first.name + ".reason")).read_text()
    result = spill.replay_oldest(lambda _s, batch: len(batch), already_stored=lambda _rows: False)
    assert (result.outcome, result.rows) == ("replayed", 10) and not second.exists()
    assert spill.replay_oldest(lambda *_: pytest.fail("replayed"), already_stored=lambda _rows: False) is None


def test_a_torn_line_is_rejected_with_its_reason_and_the_rest_read(spill):
    spill.append(rows(3))
    spill.seal()
    (segment,) = spill.segments()
    with open(segment, "a") as f:
        f.write('["c-torn","2026-03-14T08:00')
    assert spill.read(segment) == rows(3)
    (line,) = spill.rejected_path.read_text().splitlines()
    assert "line 4 unreadable" in json.loads(line)["reason"] and spill.rejected == 1


def test_rewrite_replaces_a_segment_and_recovery_drops_an_interrupted_rewrite(tmp_path):
    folder = SpillFolder(tmp_path / "s", prefix="fb", row_type=FeedbackRow)
    path = folder.write_attempted([FeedbackRow("a", T0, "m", "actual", 1.0), FeedbackRow("b", T0, "m", "actual", 2.0)])
    folder.rewrite(path, [FeedbackRow("b", T0, "m", "actual", 2.0)])
    assert folder.read(path) == [FeedbackRow("b", T0, "m", "actual", 2.0)]
    (tmp_path / "s" / (path.name + ".tmp")).write_text("half")
    folder.release()
    again = SpillFolder(tmp_path / "s", prefix="fb", row_type=FeedbackRow)
    assert not (tmp_path / "s" / (path.name + ".tmp")).exists() and again.segments() == [path]
    assert again.write_attempted([]).name == "fb-000000000002.jsonl"  # numbering goes on
    again.release()


def test_one_live_folder_per_path(tmp_path):
    first = SpillFolder(tmp_path / "s", prefix="pred", row_type=PredictionRow)
    with pytest.raises(SpillFolderInUse):
        SpillFolder(tmp_path / "s", prefix="pred", row_type=PredictionRow)
    first.release()
    SpillFolder(tmp_path / "s", prefix="pred", row_type=PredictionRow).release()
