"""Issue #22, probe 6: the mirror never blames the model for its own queue.

A burst of shadow calls larger than the pool can run before their deadline: the calls it could not
start in time are logged `shed` (latency 0, no output: missing evidence), never the candidate's
`timeout`. Was: with a 200 ms candidate and the default 4-worker pool, 30 of 50 burst shadow calls were
logged as candidate timeouts, which the error gates then read as the candidate failing."""

from __future__ import annotations

import collections
import datetime as dt
import time

from rollout_pipeline.domain.records import SHED, STATUSES
from rollout_pipeline.serving.outputs import Output
from rollout_pipeline.serving.router import Router
from rollout_pipeline.serving.shadow import ShadowMirror
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline_tests.serving_tests.conftest import rows, set_routing

TS = dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)


def _candidate_200ms(_features):
    time.sleep(0.2)
    return Output(prediction=1.0, latency_ms=200.0)  # its own latency, whatever the machine's load adds


def test_a_burst_past_the_default_pool_is_shed_never_a_candidate_timeout(sqlite_url, tmp_path):
    """The issue's burst: a 200 ms candidate, the Router's defaults (4 shadow workers, 1,000 ms timeout),
    50 requests at once. The pool runs 4 calls per 200 ms, so about 20 start before their deadline; the rest
    are shed. Not one row is a timeout: the candidate answered each call it got in 200 ms."""
    engine = make_engine(sqlite_url)
    set_routing(engine, "m", 0, shadow=True)
    router = Router(engine, "m", {"v1": lambda x: 0.0, "v2": _candidate_200ms}, spill_dir=tmp_path / "spill",
                    refresh_seconds=None)
    try:
        answers = [router.predict(float(k), f"u{k}", ts=TS) for k in range(50)]
        assert router.drain(timeout=10)
    finally:
        router.close()
    shadow = [r for r in rows(engine, "m") if not r.served]
    engine.dispose()
    assert sorted(r.correlation_id for r in shadow) == sorted(a.correlation_id for a in answers)  # one row each
    statuses = collections.Counter(r.status for r in shadow)
    assert statuses["timeout"] == 0, statuses
    assert statuses["ok"] + statuses[SHED] == 50 and statuses["ok"] >= 4 and statuses[SHED] >= 20, statuses
    assert all(r.latency_ms == 0.0 and r.prediction is None and r.label is None for r in shadow if r.status == SHED)
    assert all(r.latency_ms == 200.0 for r in shadow if r.status == "ok")
    assert SHED in STATUSES


def test_a_model_slower_than_the_timeout_still_times_out_from_when_it_started():
    """Shedding takes nothing away from a slow model: a call a worker started and that runs past the timeout
    (counted from its start, not from when it was queued) is the model's `timeout`."""
    logged = []
    mirror = ShadowMirror("m", logged.append, timeout_ms=100, workers=1)

    def hangs(_features):
        time.sleep(1.0)
        return 1.0

    mirror.submit("v2", hangs, None, "slow", TS, None)
    mirror.submit("v2", hangs, None, "queued-behind", TS, None)
    assert mirror.drain(timeout=5)
    mirror.close()
    by_id = {r.correlation_id: r for r in logged}
    assert by_id["slow"].status == "timeout" and 100 <= by_id["slow"].latency_ms < 1_000
    assert by_id["queued-behind"].status == SHED and by_id["queued-behind"].latency_ms == 0.0


def test_past_max_pending_a_call_is_shed_at_once_and_the_model_never_called():
    logged, calls = [], []
    mirror = ShadowMirror("m", logged.append, timeout_ms=2_000, workers=1, max_pending=2)

    def model(features):
        calls.append(features)
        time.sleep(0.3)
        return 1.0

    for k in range(5):
        mirror.submit("v2", model, k, f"c{k}", TS, None)
    assert [r.correlation_id for r in logged] == ["c2", "c3", "c4"]  # shed when submitted, not at a deadline
    assert all(r.status == SHED and r.latency_ms == 0.0 for r in logged)
    assert mirror.drain(timeout=5)
    mirror.close()
    assert calls == [0, 1] and mirror.counts[SHED] == 3


def test_the_intraday_guardrail_does_not_count_shed_calls_as_requests_or_errors(sqlite_url):
    from rollout_pipeline.domain.records import PredictionRow
    from rollout_pipeline.store.intraday import counts_so_far
    from rollout_pipeline.store.logs import write_predictions

    engine = make_engine(sqlite_url)
    rows_ = [PredictionRow(f"c{k}", TS, "m", "v1", False, None, 0.0, SHED, None, None) for k in range(10)]
    rows_ += [PredictionRow(f"d{k}", TS, "m", "v1", False, None, 5.0, "ok", 0.5, None) for k in range(5)]
    rows_ += [PredictionRow("e", TS, "m", "v1", False, None, 5.0, "timeout", None, None)]
    write_predictions(engine, rows_)
    with engine.connect() as conn:
        counts = counts_so_far(conn, "m", TS + dt.timedelta(hours=1), slo_ms=None, bounds=None)
    engine.dispose()
    assert (counts[("v1", False)].requests, counts[("v1", False)].errors) == (6, 1)
