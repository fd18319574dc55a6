"""Telling a call that waits on something it must not from a call that was merely descheduled.

A test machine running the suite on 2 cores stalls any thread now and then (a
full garbage collection, the GIL held by another thread, the scheduler): one
call in a few hundred may take a few hundred milliseconds for reasons that have
nothing to do with the code under test. A call that *does* wait — on a shadow
model, a database lock, a connect timeout — is slow every time it hits the
thing it waits on. So these checks look at how many calls were slow and how
slow, not at the single slowest one.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterable


def assert_rarely_slow(durations: list[float], *, slow: float = 0.05, allowed: int = 2,
                       waiting_costs: float | None = None, what: str = "call") -> None:
    """Most calls fast, at most ``allowed`` slower than ``slow`` seconds, none as slow as a real wait.

    ``waiting_costs``: the least a call would take if it waited on the thing under test
    (e.g. a connect timeout); no call may take that long.
    """
    assert durations, "no calls were timed"
    median = statistics.median(durations)
    slow_ones = sorted((d for d in durations if d >= slow), reverse=True)
    shown = ", ".join(f"{d * 1000:.1f}" for d in slow_ones[:5])
    assert median < slow / 10, f"the median {what} took {median * 1000:.2f} ms"
    assert len(slow_ones) <= allowed, (
        f"{len(slow_ones)} of {len(durations)} {what}s took {slow * 1000:.0f} ms or more (slowest: {shown} ms)")
    if waiting_costs is not None:
        assert not slow_ones or slow_ones[0] < waiting_costs, (
            f"a {what} took {slow_ones[0] * 1000:.1f} ms, as long as waiting would ({waiting_costs * 1000:.0f} ms)")


class TimedProducer:
    """Submits rows from a background thread, ``batch`` at a time with a pause between, timing every submit.

    ``rows(start, n)`` makes the rows numbered start .. start + n - 1. Used as a
    context manager: the thread runs inside the block and is stopped and joined on
    leaving it; ``submitted`` and ``durations`` are then final.
    """

    def __init__(self, submit: Callable[[object], None], rows: Callable[[int, int], Iterable[object]], *,
                 batch: int = 50, pause: float = 0.002):
        self._submit, self._rows, self._batch, self._pause = submit, rows, batch, pause
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="timed-producer")
        self.submitted = 0
        self.durations: list[float] = []

    def _run(self) -> None:
        while not self._stop.is_set():
            for row in self._rows(self.submitted, self._batch):
                started = time.perf_counter()
                self._submit(row)
                self.durations.append(time.perf_counter() - started)
            self.submitted += self._batch
            time.sleep(self._pause)

    def __enter__(self) -> TimedProducer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
