"""The batched log writer: never blocks a request, never loses a row.

``submit(row)`` appends to an in-memory queue (a deque append: no lock, no I/O)
and returns. A background thread takes batches off the queue and writes each
with the store's all-or-nothing bulk writer.

When the database is down or slow, rows go to **spill segments**: append-only
JSON-lines files in the writer's spill folder (inside the state folder). When
the database answers again they are replayed, one segment per transaction, and
a segment is deleted only after its transaction committed. Replay is
exactly-once, also across restarts and crashes:

* Before a segment is written, an ``.attempted`` marker is created next to it.
  A segment found with its marker (the writer crashed after writing it, or the
  connection broke during COMMIT, so the outcome is unknown) is first looked up
  in the database (``count_same_rows`` on one of its rows: a router's rows have
  random correlation ids, and the segment went in entirely or not at all); if
  it is there, it is deleted instead of written again.
* A live batch whose write failed is spilled as a segment of its own, with the
  marker, since its commit may have happened.

Memory is bounded: past ``max_buffer_rows`` queued rows, the submitting thread
moves the oldest rows to the open spill segment (a buffered append to a local
file; it never waits for the database).

A bad row is never taken for an outage. When the database refuses a batch with a
data error (``store.logs.DATA_ERRORS``: a ``ContractError`` such as a NUL character
or a non-finite feedback value, a value out of range, a date the partitioning
cannot hold), the rows it refuses are found by trial writes that roll back
(``store.logs.unstorable_rows``), moved to ``rejected.jsonl`` in the spill folder
with their reason, and the rest of the batch is written in one transaction. A
batch or segment that fails with a data error although no single row does is
quarantined (``quarantine/``), so the rows after it go on. The spill folder's
file format and its exactly-once bookkeeping live in ``serving.spill``; the writes,
the spilling and the replay of segments in ``serving.writer_spill``.

What is not covered: rows still queued in memory when the process is killed
(SIGKILL, power loss) — at most ``flush_seconds`` worth plus one batch — are
lost; a clean ``close()`` flushes them to the database or the spill folder.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from rollout_pipeline.domain.records import FeedbackRow, PredictionRow
from rollout_pipeline.serving.spill import SpillFolder, SpillFolderInUse
from rollout_pipeline.serving.writer_spill import (
    FAILED,
    REPLAYED,
    Barrier,
    PoisonBatch,
    SpillingWrites,
)
from rollout_pipeline.store.logs import write_feedback, write_predictions

log = logging.getLogger(__name__)

__all__ = ["LogWriter", "PoisonBatch", "SpillFolderInUse", "writer_degraded"]

_KINDS: dict[str, tuple[str, type, str, Callable[..., int]]] = {
    # kind: (table, row type, spill file prefix, bulk writer)
    "prediction": ("prediction_log", PredictionRow, "pred", write_predictions),
    "feedback": ("feedback", FeedbackRow, "fb", write_feedback),
}


def writer_degraded(stats: dict[str, Any]) -> bool:
    """True when a writer's ``stats()`` show it spilling, holding unreplayed rows, or having set rows aside."""
    return (not stats["database_up"] or stats["pending_segments"] > 0 or stats["rejected"] > 0
            or stats.get("quarantined", 0) > 0)


class LogWriter(SpillingWrites):
    """Batched background writer of prediction (or feedback) rows with a local spill folder.

    ``kind`` is ``"prediction"`` (``PredictionRow``s into ``prediction_log``) or
    ``"feedback"`` (``FeedbackRow``s into ``feedback``). One live writer per spill
    folder (enforced with a file lock). Use as a context manager, or call ``close()``.
    """

    def __init__(
        self,
        engine: sa.Engine,
        spill_dir: str | os.PathLike,
        *,
        kind: str = "prediction",
        batch_rows: int = 2_000,
        flush_seconds: float = 0.2,
        max_buffer_rows: int = 50_000,
        segment_rows: int = 50_000,
        retry_seconds: float = 0.5,
        max_retry_seconds: float = 10.0,
        name: str | None = None,
    ):
        if kind not in _KINDS:
            raise ValueError(f"unknown kind {kind!r}: 'prediction' or 'feedback'")
        if batch_rows < 1 or max_buffer_rows < batch_rows or segment_rows < 1:
            raise ValueError("need batch_rows >= 1, max_buffer_rows >= batch_rows and segment_rows >= 1")
        self.engine = engine
        self.kind = kind
        self.table, row_type, prefix, self._bulk_write = _KINDS[kind]
        self.spill_dir = Path(spill_dir)
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self.max_buffer_rows = max_buffer_rows
        self.retry_seconds = retry_seconds
        self.max_retry_seconds = max_retry_seconds
        self.name = name or f"{kind}-writer"
        self.spill = SpillFolder(self.spill_dir, prefix=prefix, row_type=row_type, segment_rows=segment_rows,
                                 name=self.name)

        self._buffer: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._abandoned = False
        self._spill_lock = threading.Lock()  # overflow vs the thread: who moves rows and barriers
        self._pending_barriers: list[Barrier] = []
        self._inflight: list | None = None
        self._replaying = False  # a spill segment is being replayed (deleted from disk before its rows are counted)
        self._down = False
        self._backoff = retry_seconds
        self._next_retry = 0.0
        self._last_error: str | None = None
        self._closing_deadline = 0.0
        self.counts = collections.Counter()  # written, spilled, replayed, already_present, overflowed
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    # --- the request path -------------------------------------------------------------

    def submit(self, row: tuple) -> None:
        """Queue one row; returns at once (never waits for the database)."""
        if self._closed:
            self._spill([row], reason="after close")
            return
        buffer = self._buffer
        buffer.append(row)
        size = len(buffer)
        if size >= self.batch_rows:
            self._wake.set()
            if size > self.max_buffer_rows:
                self._overflow(size)

    def submit_many(self, rows: Iterable[tuple]) -> None:
        """Queue several rows."""
        for row in rows:
            self.submit(row)

    def _overflow(self, size: int) -> None:
        # Bounded memory: move the oldest rows to the open segment. Two rows out per
        # row in keeps the queue shrinking; a busy spill lock is skipped unless the
        # queue is far over its bound, so a request waits on local disk only then.
        blocking = size > 2 * self.max_buffer_rows
        if not self._spill_lock.acquire(blocking=blocking):
            return
        try:
            moved = []
            for _ in range(64 if blocking else 2):
                try:
                    item = self._buffer.popleft()
                except IndexError:
                    break
                if isinstance(item, Barrier):
                    self._pending_barriers.append(item)
                else:
                    moved.append(item)
            if moved:
                try:
                    self.spill.append(moved)
                except OSError:  # local disk full or gone: keep the rows in memory rather than fail a request
                    self._buffer.extendleft(reversed(moved))
                    log.exception("%s: cannot spill to %s; keeping rows in memory", self.name, self.spill_dir)
                    return
                self.counts["overflowed"] += len(moved)
        finally:
            self._spill_lock.release()

    # --- public control -------------------------------------------------------------------

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every row submitted so far is written to the database or spilled; False on timeout."""
        if self._closed:
            return True
        barrier = Barrier()
        self._buffer.append(barrier)
        self._wake.set()
        return barrier.event.wait(timeout)

    def wait_replayed(self, timeout: float = 30.0) -> bool:
        """Wait until the queue is empty and no spill segment is left (everything is in the database)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Segments first, then the replay flag: a segment is deleted before its rows are counted, and the
            # flag drops only after they are (so "no segment and no replay under way" means counted).
            if not self._buffer and self._inflight is None and self.pending_segments() == 0 and not self._replaying:
                return True
            self._wake.set()
            time.sleep(0.02)
        return False

    def pending_segments(self) -> int:
        """Spill segments waiting to be replayed (the open one counts if it holds rows)."""
        return self.spill.pending()

    @property
    def database_up(self) -> bool:
        """False while the last write failed and the writer is spilling."""
        return not self._down

    def stats(self) -> dict[str, Any]:
        """Counters and state, for health endpoints and tests."""
        return {
            "queued": len(self._buffer),
            "database_up": not self._down,
            "pending_segments": self.pending_segments(),
            "last_error": self._last_error,
            **{k: self.counts[k] for k in ("written", "spilled", "overflowed", "replayed", "already_present")},
            "rejected": self.spill.rejected,
            "quarantined": self.spill.quarantined,
        }

    def close(self, timeout: float = 30.0) -> None:
        """Flush: write what is queued (and replay spill segments) until ``timeout``, spill the rest, release the folder."""
        if self._closed:
            return
        self._closing_deadline = time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self._closed = True
        if self._thread.is_alive():
            # The database hangs in a write. Spill the in-flight batch as "attempted" (the
            # next replay looks it up before writing) and everything queued; the thread
            # keeps the folder lock until it returns, so no other writer replays meanwhile.
            self._abandoned = True
            inflight = self._inflight
            if inflight:
                self._spill_attempted(inflight)
            self._drain_to_spill()
            log.warning("%s: database still busy after %.1f s; queued rows spilled to %s", self.name, timeout,
                        self.spill_dir)
        else:
            self._drain_to_spill()
            self.spill.release()
        remaining = self.pending_segments()
        if remaining:
            log.warning("%s: %d spill segment(s) left in %s, replayed by the next writer on this folder",
                        self.name, remaining, self.spill_dir)

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the background thread --------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                stopping = self._stop.is_set()
                batch, barriers = self._take_batch()
                if batch:
                    try:
                        self._handle(batch)
                    except Exception:  # noqa: BLE001 - e.g. the spill disk is full: retry later, keep the rows
                        log.exception("%s: could neither write nor spill a batch; retrying in 1 s", self.name)
                        self._buffer.extendleft(reversed(batch + barriers))
                        if self._abandoned:
                            return
                        time.sleep(1.0)
                        continue
                for barrier in barriers + self._take_pending_barriers():
                    barrier.event.set()
                if self._abandoned:
                    return
                replayed = False
                if self._may_try_database():
                    replayed = self._replay_one() == REPLAYED
                if stopping:
                    if self._buffer:
                        continue
                    while (not self._down and not self._abandoned and time.monotonic() < self._closing_deadline
                           and self._replay_one() == REPLAYED):
                        pass
                    return
                if len(self._buffer) < self.batch_rows and not replayed:
                    self._wake.wait(self._wait_seconds())
                    self._wake.clear()
        except BaseException:  # never die silently: whatever is queued is spilled by close()
            log.exception("%s: log writer thread failed", self.name)
            raise
        finally:
            if self._abandoned:
                self.spill.release()

    def _wait_seconds(self) -> float:
        if self._down:
            return max(0.0, min(self.flush_seconds, self._next_retry - time.monotonic()))
        return self.flush_seconds

    def _take_batch(self) -> tuple[list, list[Barrier]]:
        batch: list = []
        barriers: list[Barrier] = []
        buffer = self._buffer
        while len(batch) < self.batch_rows:
            try:
                item = buffer.popleft()
            except IndexError:
                break
            if isinstance(item, Barrier):
                barriers.append(item)
                break  # rows before the barrier must be handled before it is set
            batch.append(item)
        return batch, barriers

    def _take_pending_barriers(self) -> list[Barrier]:
        if not self._pending_barriers:
            return []
        with self._spill_lock:
            taken, self._pending_barriers = self._pending_barriers, []
        return taken

    def _may_try_database(self) -> bool:
        return not self._down or time.monotonic() >= self._next_retry

    def _handle(self, batch: list) -> None:
        if not self._may_try_database():
            self._spill(batch, reason="database down")
            return
        if self._down and self._replay_one() == FAILED:
            # still down: replaying the oldest segment was the probe
            self._spill(batch, reason="database down")
            return
        self._inflight = batch
        try:
            written = self._write_valid(batch, self._set_inflight)
        except PoisonBatch as exc:
            self.spill.quarantine_rows(self._inflight or batch, str(exc))
            self._mark_up()
        except Exception as exc:  # noqa: BLE001 - any other failure: keep the rows, find out later
            self._spill_attempted(self._inflight or batch)
            self._mark_down(exc)
        else:
            self.counts["written"] += written
            self._mark_up()
        finally:
            self._inflight = None

    def _set_inflight(self, rows: list) -> None:
        self._inflight = rows

    # --- spill segments ------------------------------------------------------------------------

    def _drain_to_spill(self) -> None:
        rows = []
        while True:
            try:
                item = self._buffer.popleft()
            except IndexError:
                break
            if isinstance(item, Barrier):
                item.event.set()
            else:
                rows.append(item)
        if rows:
            self._spill(rows, reason="close")
        self.spill.seal()
        for barrier in self._take_pending_barriers():
            barrier.event.set()
