"""Shadow mirroring off the request path.

A shadow call is handed to a thread pool and the request goes on at once. Each
call ends in exactly one log row: ``ok`` or ``error`` when the model answers or
raises; ``timeout`` when the model itself ran longer than the timeout (measured
from when a worker started it: logged by a watcher thread at that deadline if it
hangs, or when it answers late); ``shed`` when the mirror could not run it in
time — still queued behind other calls at its deadline (the pool saturated), or
never queued because too many were pending. A shed call never reached the model
(latency 0): it is missing evidence, never the candidate's timeout. A call that
times out is not interrupted (Python threads cannot be), but its late answer is
dropped, and a queued call whose deadline passed is skipped.

Capacity: ``workers`` calls at once, so about ``workers`` x 1000 / (the model's
latency in ms) calls a second; a burst beyond that waits in the queue for up to
the deadline, and what has not started by then is shed.
"""

from __future__ import annotations

import collections
import concurrent.futures
import datetime as dt
import heapq
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from rollout_pipeline.domain.records import SHED, PredictionRow
from rollout_pipeline.serving.outputs import to_output

log = logging.getLogger(__name__)

_perf = time.perf_counter


class _Call:
    __slots__ = ("variant", "model", "features", "correlation_id", "ts", "entity_id", "started", "deadline", "claim",
                 "begun")

    def __init__(self, variant, model, features, correlation_id, ts, entity_id, started, deadline):
        self.variant = variant
        self.model = model
        self.features = features
        self.correlation_id = correlation_id
        self.ts = ts
        self.entity_id = entity_id
        self.started = started
        self.deadline = deadline
        # Whoever acquires first logs the call's row: the worker or the watcher.
        self.claim = threading.Lock()
        self.begun: float | None = None  # when a worker started the model (None: still queued)


class ShadowMirror:
    """Runs shadow calls in a thread pool and logs one row per call through ``log_row``."""

    def __init__(
        self,
        model_name: str,
        log_row: Callable[[PredictionRow], None],
        *,
        timeout_ms: float = 1_000.0,
        workers: int = 4,
        max_pending: int = 10_000,
        deadline_ms: float | None = None,
    ):
        self.model_name = model_name
        self.timeout_ms = float(timeout_ms)
        # Wall-clock deadline of a call (default: the timeout). A replay that reports simulated
        # latencies sets it far above the timeout, so that only the reported latency decides.
        self.deadline_ms = float(deadline_ms) if deadline_ms is not None else self.timeout_ms
        self.max_pending = max_pending
        self._log_row = log_row
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"shadow-{model_name}")
        self._deadlines: collections.deque[_Call] = collections.deque()
        # Calls a worker started before their queue deadline: (own deadline, sequence, call), soonest first.
        self._running: list[tuple[float, int, _Call]] = []
        self._sequence = 0
        self._pending = 0  # calls submitted and not yet logged
        self._pending_lock = threading.Condition()
        self._stop = threading.Event()
        self.counts = collections.Counter()
        self._watcher = threading.Thread(target=self._watch, name=f"shadow-watch-{model_name}", daemon=True)
        self._watcher.start()

    def submit(self, variant: str, model: Callable[[Any], Any], features: Any, correlation_id: str,
               ts: dt.datetime, entity_id: str | None) -> None:
        """Mirror one request to ``model``; returns without waiting for it."""
        now = _perf()
        call = _Call(variant, model, features, correlation_id, ts, entity_id, now, now + self.deadline_ms / 1000.0)
        with self._pending_lock:
            self._pending += 1
            saturated = self._pending > self.max_pending
        if saturated:  # too many outstanding: shed at once, the model is never called
            call.claim.acquire()
            self.counts[SHED] += 1
            self._finish(call, 0.0, SHED, None, None)
            return
        self._deadlines.append(call)  # deadlines are appended in order: one queue deadline per call
        self._pool.submit(self._run, call)

    def _run(self, call: _Call) -> None:
        call.begun = _perf()  # before the check: the watcher either sees it started or has shed it already
        if call.claim.locked():
            return  # its deadline passed while queued: already logged as shed
        started = call.begun
        try:
            output = to_output(call.model(call.features))
        except Exception as exc:  # noqa: BLE001 - a failing shadow is data, never the caller's problem
            latency = (_perf() - started) * 1000.0
            if call.claim.acquire(blocking=False):
                self.counts["error"] += 1
                log.debug("shadow %s/%s raised %s: %s", self.model_name, call.variant, type(exc).__name__, exc)
                self._finish(call, latency, "error", None, None)
            return
        latency = output.latency_ms if output.latency_ms is not None else (_perf() - started) * 1000.0
        if not call.claim.acquire(blocking=False):
            self.counts["late"] += 1
            return
        if latency > self.timeout_ms:
            # The model answered, but later than a caller could have used (or reported so itself).
            self.counts["timeout"] += 1
            self._finish(call, latency, "timeout", None, None)
        else:
            self.counts["ok"] += 1
            self._finish(call, latency, "ok", output.prediction, output.label)

    def _finish(self, call: _Call, latency: float, status: str, prediction, label) -> None:
        try:
            self._log_row(PredictionRow(call.correlation_id, call.ts, self.model_name, call.variant, False,
                                        call.entity_id, latency, status, prediction, label))
        finally:
            with self._pending_lock:
                self._pending -= 1
                if self._pending == 0:
                    self._pending_lock.notify_all()

    def _watch(self) -> None:
        poll = min(0.05, max(self.deadline_ms / 10_000.0, 0.001))
        deadlines, running = self._deadlines, self._running
        while True:
            now = _perf()
            while deadlines and deadlines[0].deadline <= now:
                call = deadlines.popleft()
                begun = call.begun
                if begun is None:
                    # Still queued at its deadline: the pool is saturated. Shed, not the model's timeout.
                    if call.claim.acquire(blocking=False):
                        self.counts[SHED] += 1
                        self._finish(call, 0.0, SHED, None, None)
                elif not call.claim.locked():
                    # Running: the model gets its own full deadline, counted from when it started.
                    self._sequence += 1
                    heapq.heappush(running, (begun + self.deadline_ms / 1000.0, self._sequence, call))
            while running and running[0][0] <= now:
                _, _, call = heapq.heappop(running)
                if call.claim.acquire(blocking=False):
                    self.counts["timeout"] += 1
                    self._finish(call, (now - call.begun) * 1000.0, "timeout", None, None)
            if self._stop.is_set() and not deadlines and not running:
                return
            # Completed calls stay in the queue until their deadline; drop them early
            # so the queue's length stays about (calls per second) x (timeout).
            while deadlines and deadlines[0].claim.locked():
                deadlines.popleft()
            time.sleep(poll)

    @property
    def pending(self) -> int:
        """Shadow calls not yet logged."""
        return self._pending

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every shadow call so far is logged (answered, failed or timed out); False on timeout."""
        with self._pending_lock:
            return self._pending_lock.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Log every outstanding call (waiting at most its queue deadline plus its own), then stop the threads."""
        self.drain(timeout if timeout is not None else 2 * self.deadline_ms / 1000.0 + 1.0)
        self._stop.set()
        self._watcher.join(timeout=2 * self.deadline_ms / 1000.0 + 1.0)
        self._pool.shutdown(wait=False, cancel_futures=True)
