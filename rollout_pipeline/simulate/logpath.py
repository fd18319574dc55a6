"""A simulated day's log path: the candidate's logging faults, the lake sink, correlation ids, and rows that
break the log contract (corrupt rows, orphan candidate rows)."""

from __future__ import annotations

import datetime as dt
import math
import os
import threading
from typing import Any

import numpy as np

from rollout_pipeline.domain.records import FeedbackRow, PredictionRow
from rollout_pipeline.domain.routing import RoutingConfig
from rollout_pipeline.serving.writer import LogWriter
from rollout_pipeline.simulate.models import ModelPair
from rollout_pipeline.simulate.scenarios import Knobs
from rollout_pipeline.store.lake import LakeWriter

_DAY_US = 86_400_000_000


class FaultyLog:
    """The log writer as a faulty candidate's logging path reaches it: some of its rows lost, some doubled.

    Wraps the day's LogWriter for the Router (``submit`` from the request path and the
    shadow threads; everything else delegated). Which requests are hit is drawn per
    request index beforehand, so the counts are the seed's, whatever the threads' order.

    A simulated failure takes no simulated time: its ``error`` row is logged with 0 ms,
    not with the microseconds the replaying machine took to raise it (which the Router
    measures), so a day's rows depend on its arguments only, never on the machine's load.
    """

    def __init__(self, writer: LogWriter, candidate: str | None, drop_shadow: set[str], duplicate: set[str]):
        self._writer, self._candidate = writer, candidate
        self._drop, self._duplicate = drop_shadow, duplicate
        self._lock = threading.Lock()
        self.dropped = self.duplicated = 0

    def submit(self, row: PredictionRow) -> None:
        if row.status == "error":
            row = row._replace(latency_ms=0.0)
        if row.variant == self._candidate:
            if not row.served and row.correlation_id in self._drop:
                with self._lock:
                    self.dropped += 1
                return
            if row.correlation_id in self._duplicate:
                self._writer.submit(row)
                with self._lock:
                    self.duplicated += 1
        self._writer.submit(row)

    def __getattr__(self, name: str):
        return getattr(self._writer, name)


class LakeLog:
    """The day's log path into a lake instead of the database, with the LogWriter interface the Router uses.

    ``submit`` comes from the request path and the shadow threads, so appends to the
    (not thread-safe) LakeWriter hold a lock. Nothing spills: the rows reach the
    writer's buffers at once; the caller owns the LakeWriter and closes it.
    """

    def __init__(self, sink: LakeWriter):
        self._sink = sink
        self._lock = threading.Lock()

    def submit(self, row: PredictionRow) -> None:
        with self._lock:
            self._sink.append("prediction_log", (row,))

    def write_feedback(self, rows: list[FeedbackRow]) -> None:
        with self._lock:
            self._sink.append("feedback", rows)

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float | None = None) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {"queued": 0, "database_up": True, "pending_segments": 0, "last_error": None, "written": 0,
                "spilled": 0, "overflowed": 0, "replayed": 0, "already_present": 0, "rejected": 0,
                "quarantined": 0, "sink": self._sink.root}


class Ids:
    """Correlation ids: random (``os.urandom``), or drawn from a generator seeded by the day's arguments."""

    def __init__(self, rng: np.random.Generator | None):
        self._rng = rng

    def take(self, n: int) -> list[str]:
        if self._rng is None:
            return [os.urandom(16).hex() for _ in range(n)]
        raw = self._rng.bytes(16 * n).hex()
        return [raw[32 * k:32 * k + 32] for k in range(n)]

    def one(self) -> str:
        return self.take(1)[0]


def corrupt_rows(model: str, config: RoutingConfig, pair: ModelPair, day_start: dt.datetime, times: np.ndarray,
                  rng: np.random.Generator, count: int, ids: Ids) -> list[PredictionRow]:
    """Rows that break the log contract, cycling through the kinds of breach the validation must catch."""
    if count <= 0:
        return []
    stable = config.stable.variant if config.stable else config.routes[0].variant
    shadow = config.candidate.variant if config.candidate else stable
    preds, labels = pair.outputs["stable"]
    out = []
    for k in range(count):
        ts = day_start + dt.timedelta(microseconds=int(times[rng.integers(len(times))]) if len(times) else
                                      int(rng.integers(_DAY_US)))
        row = int(rng.integers(pair.rows))
        pred = None if preds is None else float(preds[row])
        label = None if labels is None else labels[row]
        cid = ids.one()
        entity = f"{model}-corrupt-{k}"
        breach = k % 5
        if breach == 0:  # missing correlation id
            out.append(PredictionRow(None, ts, model, stable, True, entity, 10.0, "ok", pred, label))
        elif breach == 1:  # unknown status
            out.append(PredictionRow(cid, ts, model, stable, True, entity, 10.0, "exploded", pred, label))
        elif breach == 2:  # negative latency
            out.append(PredictionRow(cid, ts, model, stable, True, entity, -5.0, "ok", pred, label))
        elif breach == 3:  # NaN latency
            out.append(PredictionRow(cid, ts, model, stable, True, entity, float("nan"), "ok", pred, label))
        else:  # a shadow answer with no served twin
            out.append(PredictionRow(cid, ts, model, shadow, False, entity, 10.0, "ok", pred, label))
    return out


def orphan_rows(model: str, candidate: str, pair: ModelPair, knobs: Knobs, day_start: dt.datetime,
                 times: np.ndarray, rows: list[int], entity_ids: list, rng: np.random.Generator,
                 count: int, ids: Ids) -> list[PredictionRow]:
    """Candidate rows marked served, for requests no stable answer exists for (a mis-wired candidate)."""
    if count <= 0 or not len(times):
        return []
    preds, labels = pair.outputs["candidate"]
    out = []
    for _ in range(count):
        i = int(rng.integers(len(times)))
        ts = day_start + dt.timedelta(microseconds=int(times[i]))
        row = rows[i]
        latency = knobs.candidate_base_ms + float(rng.lognormal(math.log(knobs.median_extra_ms), knobs.latency_sigma))
        out.append(PredictionRow(ids.one(), ts, model, candidate, True, entity_ids[i], latency, "ok",
                                 None if preds is None else float(preds[row]),
                                 None if labels is None else labels[row]))
    return out
