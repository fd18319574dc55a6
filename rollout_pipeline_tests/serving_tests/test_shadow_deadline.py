"""A replay that reports simulated latencies: the real wall-clock deadline never decides a timeout."""

import datetime as dt
import time

from rollout_pipeline.serving.outputs import Output
from rollout_pipeline.serving.shadow import ShadowMirror

TS = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)


def _mirror(deadline_ms):
    rows = []
    mirror = ShadowMirror("m", rows.append, timeout_ms=50, workers=1, deadline_ms=deadline_ms)
    return mirror, rows


def _slow_model(reported_ms):
    def model(_features):
        time.sleep(0.2)  # a busy machine: 200 ms of real time
        return Output(prediction=1.0, latency_ms=reported_ms)
    return model


def test_with_a_far_deadline_the_reported_latency_decides():
    mirror, rows = _mirror(deadline_ms=10_000)
    mirror.submit("v2", _slow_model(10.0), None, "fast-on-paper", TS, None)
    mirror.submit("v2", _slow_model(80.0), None, "slow-on-paper", TS, None)
    mirror.close()
    assert {r.correlation_id: (r.status, r.latency_ms) for r in rows} == {
        "fast-on-paper": ("ok", 10.0), "slow-on-paper": ("timeout", 80.0)}


def test_by_default_the_deadline_is_the_timeout():
    mirror, rows = _mirror(deadline_ms=None)
    mirror.submit("v2", _slow_model(10.0), None, "late-in-real-time", TS, None)
    mirror.close()
    (row,) = rows
    assert row.status == "timeout" and row.latency_ms >= 50
