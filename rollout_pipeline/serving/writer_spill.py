"""The log writer's database side: writes that set refused rows aside, the outage state, spill and replay.

``SpillingWrites`` is a mixin of ``serving.writer.LogWriter``: it works on the writer's
attributes (``engine``, ``table``, ``spill``, ``counts``, the retry settings and state) and
holds the exactly-once replay of spill segments described in ``serving.writer``; the
spill folder's file format and bookkeeping live in ``serving.spill``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rollout_pipeline.serving.spill import TS_POSITION
from rollout_pipeline.store.logs import DATA_ERRORS, unstorable_rows
from rollout_pipeline.store.serving_queries import count_same_rows
from rollout_pipeline.store.tables import IDENTITY_COLUMNS, metadata

log = logging.getLogger("rollout_pipeline.serving.writer")  # the writer's messages, under its one name

REPLAYED, NOTHING, FAILED = "replayed", "nothing", "failed"


class PoisonBatch(RuntimeError):
    """The database refuses a batch with a data error, yet accepts each of its rows alone."""


class Barrier:
    """Put in the queue by ``flush``: set once every row queued before it is written or spilled."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = threading.Event()


class SpillingWrites:
    """Writing a batch or a spill segment, spilling what cannot be written, replaying the spill folder."""

    def _write_valid(self, rows: list, keep: Callable[[list], None]) -> int:
        """Write ``rows`` in one transaction; rows the database refuses go to rejected.jsonl first.

        ``keep(good_rows)`` is called before the rows left after a rejection are written, so
        that what is kept for a retry (the in-flight batch, the segment) no longer holds them.
        A connection failure propagates (an outage); ``PoisonBatch`` when no row is to blame.
        """
        if not rows:
            return 0
        try:
            return self._bulk_write(self.engine, rows)
        except DATA_ERRORS as exc:
            first_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        bad = unstorable_rows(self.engine, self.table, rows)
        if not bad:
            raise PoisonBatch(f"the database refuses the batch ({first_error}) but none of its rows alone")
        for index, reason in bad:
            self.spill.reject(rows[index], reason)
        refused = {index for index, _ in bad}
        good = [row for index, row in enumerate(rows) if index not in refused]
        keep(good)
        try:
            return self._bulk_write(self.engine, good) if good else 0
        except DATA_ERRORS as exc:
            raise PoisonBatch(f"the database refuses the rest of the batch: {type(exc).__name__}") from exc

    def _mark_down(self, exc: BaseException) -> None:
        text = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if not self._down:
            log.warning("%s: database write failed (%s); spilling to %s", self.name, text, self.spill_dir)
        else:
            self._backoff = min(self._backoff * 2, self.max_retry_seconds)
        self._down = True
        self._last_error = text
        self._next_retry = time.monotonic() + self._backoff

    def _mark_up(self) -> None:
        if self._down:
            log.warning("%s: database reachable again; replaying spill segments", self.name)
        self._down = False
        self._backoff = self.retry_seconds
        self._last_error = None

    # --- spill segments ------------------------------------------------------------------------

    def _spill(self, rows: list, *, reason: str) -> None:
        """Rows known not to be in the database: append them to the open segment."""
        rows = [r for r in rows if not isinstance(r, Barrier)]
        if not rows:
            return
        self.spill.append(rows)
        self.counts["spilled"] += len(rows)
        log.debug("%s: spilled %d rows (%s)", self.name, len(rows), reason)

    def _spill_attempted(self, rows: list) -> None:
        """Rows whose write may have committed: a segment of their own, marked as attempted."""
        self.spill.write_attempted(rows)
        self.counts["spilled"] += len(rows)

    def _write_segment(self, segment: Path, rows: list) -> int:
        def keep(good: list) -> None:
            self.spill.rewrite(segment, good)  # a crash after this replays only the storable rows
            self._inflight = good

        self._inflight = rows
        try:
            return self._write_valid(rows, keep)
        finally:
            self._inflight = None

    def _replay_one(self) -> str:
        """Replay the oldest spill segment: REPLAYED, NOTHING (no segment) or FAILED (database down)."""
        self._replaying = True
        try:
            return self._replay_oldest()
        finally:
            self._replaying = False

    def _replay_oldest(self) -> str:
        try:
            result = self.spill.replay_oldest(self._write_segment, self._already_stored)
        except PoisonBatch as exc:
            segment = self.spill.oldest()
            if segment is not None:
                self.spill.quarantine(segment, str(exc))
            self._mark_up()
            return REPLAYED
        except Exception as exc:  # noqa: BLE001 - still down (or down again): the marker stays
            self._mark_down(exc)
            return FAILED
        if result is None:
            return NOTHING
        if result.outcome == "already_present":
            self.counts["already_present"] += result.rows
            log.info("%s: %s was already written before an interruption; not writing it again",
                     self.name, result.segment)
        elif result.outcome == "replayed":
            self.counts["replayed"] += result.rows
        self._mark_up()
        return REPLAYED

    def _already_stored(self, rows: list) -> bool:
        """True if the segment's transaction committed: its identifying row is stored as often as it occurs."""
        probe = next((r for r in rows if r[0] is not None), rows[0])
        key = self._identity(probe)
        expected = sum(1 for r in rows if self._identity(r) == key)
        with self.engine.connect() as connection:
            return count_same_rows(connection, self.table, probe) >= expected

    def _identity(self, row: tuple) -> tuple:
        ts = row[TS_POSITION]
        if isinstance(ts, dt.datetime):
            ts = ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts.astimezone(dt.UTC)
        columns = list(metadata.tables[self.table].columns.keys())  # rows are tuples in this order
        return tuple(ts if name == "ts" else row[columns.index(name)] for name in IDENTITY_COLUMNS[self.table])
