"""The Router against a real store: config from the database, sticky split, shadow mirroring, every answer logged."""

from __future__ import annotations

import collections
import datetime as dt
import threading
import time

import pytest
import sqlalchemy as sa

from rollout_pipeline.domain.routing import RoutingConfig, VariantRoute
from rollout_pipeline.serving.outputs import Output
from rollout_pipeline.serving.router import NoRouting, PredictionFailed, Router, StoreUnavailable
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.routing import write_routing
from rollout_pipeline_tests.serving_tests.conftest import count, duplicates, rows, set_connections, set_routing
from rollout_pipeline_tests.timing import assert_rarely_slow

UTC = dt.UTC


def stable(x):
    return x + 1.0


def candidate(x):
    return x + 2.0


def make_router(engine, tmp_path, models=None, **kwargs):
    kwargs.setdefault("refresh_seconds", None)
    return Router(engine, "m", models or {"v1": stable, "v2": candidate}, spill_dir=tmp_path / "spill", **kwargs)


def test_a_model_without_routing_is_refused_with_a_clear_message(engine, tmp_path):
    with pytest.raises(NoRouting, match="m has no routing config: start its rollout first"):
        make_router(engine, tmp_path)


def test_canary_share_is_sticky_and_close_to_the_configured_one(engine, tmp_path):
    set_routing(engine, "m", 20)
    with make_router(engine, tmp_path) as router:
        first = {f"u{k}": router.predict(1.0, f"u{k}").variant for k in range(3_000)}
        again = {f"u{k}": router.predict(1.0, f"u{k}").variant for k in range(3_000)}
        anonymous = collections.Counter(router.predict(1.0).variant for _ in range(3_000))
    assert first == again
    share = sum(v == "v2" for v in first.values()) / len(first)
    assert 0.17 < share < 0.23, share
    assert 0.17 < anonymous["v2"] / 3_000 < 0.23
    logged = rows(engine, "m")
    assert len(logged) == 9_000
    assert all(r.served and r.status == "ok" for r in logged)
    assert {r.prediction for r in logged if r.variant == "v2"} == {3.0}


def test_refresh_follows_the_store_and_raising_the_share_keeps_candidate_entities(engine, tmp_path):
    set_routing(engine, "m", 20)
    with make_router(engine, tmp_path) as router:
        entities = [f"u{k}" for k in range(2_000)]
        at20 = {e: router.assign(e) for e in entities}
        set_routing(engine, "m", 50)
        assert router.config.version == 1  # cached until refreshed
        assert router.refresh()
        assert router.config.version == 2
        at50 = {e: router.predict(0.0, e).variant for e in entities}
    assert all(at50[e] == "v2" for e in entities if at20[e] == "v2")
    assert sum(v == "v2" for v in at50.values()) > sum(v == "v2" for v in at20.values())


def test_background_refresh_picks_up_a_rollback(engine, tmp_path):
    set_routing(engine, "m", 50)
    with make_router(engine, tmp_path, refresh_seconds=0.1) as router:
        set_routing(engine, "m", 0)
        deadline = time.monotonic() + 10
        while router.config.version != 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert {router.predict(0.0, f"u{k}").variant for k in range(500)} == {"v1"}


def test_last_good_config_stays_when_the_store_is_unreachable(unreachable_engine, tmp_path):
    given = RoutingConfig("m", 7, (VariantRoute("v1", "stable", 100), VariantRoute("v2", "candidate", 0, True)))
    with pytest.raises(StoreUnavailable):
        Router(unreachable_engine, "m", {"v1": stable, "v2": candidate}, spill_dir=tmp_path / "a", refresh_seconds=None)
    router = Router(unreachable_engine, "m", {"v1": stable, "v2": candidate}, spill_dir=tmp_path / "b",
                    refresh_seconds=None, initial_config=given)
    try:
        assert router.predict(1.0, "u1").value == 2.0
        assert router.refresh() is False
        assert router.config.version == 7
        health = router.health()
        assert health["status"] == "degraded" and health["routing_error"]
    finally:
        router.close(timeout=5)


def test_a_refreshed_config_that_cannot_be_served_keeps_the_old_one(engine, tmp_path):
    set_routing(engine, "m", 20)
    with make_router(engine, tmp_path) as router:
        set_routing(engine, "m", 20, candidate="v3")  # no model loaded for v3
        assert router.refresh() is False
        assert router.config.version == 1
        assert "v3" in router.health()["routing_error"]


def test_shadow_answers_are_logged_with_the_served_correlation_id(engine, tmp_path):
    set_routing(engine, "m", 0, shadow=True)
    ts = dt.datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
    with make_router(engine, tmp_path) as router:
        answers = [router.predict(float(k), f"u{k}", ts=ts) for k in range(200)]
    assert {a.variant for a in answers} == {"v1"}
    assert [a.value for a in answers] == [k + 1.0 for k in range(200)]
    by_cid = collections.defaultdict(dict)
    for r in rows(engine, "m"):
        by_cid[r.correlation_id][r.served] = r
    assert len(by_cid) == 200
    for answer in answers:
        pair = by_cid[answer.correlation_id]
        assert pair[True].variant == "v1" and pair[False].variant == "v2"
        assert pair[False].prediction == pair[True].prediction + 1.0
        assert pair[True].entity_id == pair[False].entity_id
        assert pair[True].ts.replace(tzinfo=UTC) == ts == pair[False].ts.replace(tzinfo=UTC)


def test_a_shadow_that_sleeps_or_raises_never_delays_or_changes_the_answer(engine, tmp_path):
    set_routing(engine, "m", 0, shadow=True)
    release = threading.Event()
    calls = collections.Counter()

    def sleepy_or_failing(x):
        calls["shadow"] += 1
        if x % 2:
            raise RuntimeError("candidate exploded")
        release.wait(5)  # far longer than the shadow timeout
        return 99.0

    router = make_router(engine, tmp_path, {"v1": stable, "v2": sleepy_or_failing}, shadow_timeout_ms=200,
                         shadow_workers=2)
    try:
        times, answers = [], []
        for k in range(40):
            started = time.perf_counter()
            answers.append(router.predict(float(k), f"u{k}"))
            times.append(time.perf_counter() - started)
        assert [a.value for a in answers] == [k + 1.0 for k in range(40)]
        # Waiting on the shadow would cost every sleeper's request its 200 ms timeout (20 of 40).
        assert_rarely_slow(times, slow=0.05, allowed=2, what="request")
        assert router.drain(timeout=5)
    finally:
        release.set()
        router.close()
    shadow = {r.correlation_id: r for r in rows(engine, "m") if not r.served}
    assert len(shadow) == 40
    statuses = collections.Counter(shadow[a.correlation_id].status for a in answers)
    odd = {shadow[answers[k].correlation_id].status for k in range(1, 40, 2)}
    # Two workers: a raising call frees its worker at once, so both end up blocked on sleepers, which time out
    # (the model's own deadline). Every call still queued behind them at its deadline is shed: the mirror's
    # queue, never the model's timeout. Odd requests raise when they run, else are shed.
    assert odd <= {"error", "shed"} and "error" in odd
    assert statuses["timeout"] == 2 and statuses["error"] + statuses["shed"] == 38, statuses
    assert all(r.prediction is None for r in shadow.values())
    assert all(r.latency_ms is not None and r.latency_ms >= 0 for r in shadow.values())
    assert all(r.latency_ms == 0 for r in shadow.values() if r.status == "shed")


def test_a_reported_latency_over_the_timeout_is_a_timeout(engine, tmp_path):
    set_routing(engine, "m", 0, shadow=True)
    with make_router(engine, tmp_path, {"v1": stable, "v2": lambda x: Output(prediction=5.0, latency_ms=900.0)},
                     shadow_timeout_ms=300) as router:
        router.predict(1.0, "u1")
    (shadow,) = [r for r in rows(engine, "m") if not r.served]
    assert shadow.status == "timeout" and shadow.latency_ms == 900.0 and shadow.prediction is None


def test_a_failing_served_model_raises_and_logs_an_error_row(engine, tmp_path):
    set_routing(engine, "m", 100)

    def broken(x):
        raise ValueError("bad input")

    with make_router(engine, tmp_path, {"v1": stable, "v2": broken}) as router:
        with pytest.raises(PredictionFailed, match="m/v2 failed on request") as info:
            router.predict(1.0, "u1")
    (row,) = rows(engine, "m")
    assert row.status == "error" and row.served and row.correlation_id == info.value.correlation_id


def test_outputs_land_in_prediction_and_label(engine, tmp_path):
    set_routing(engine, "m", 0, shadow=True)
    models = {"v1": lambda x: "cat", "v2": lambda x: ["a", "b", 3]}
    with make_router(engine, tmp_path, models) as router:
        answer = router.predict(None, "u1")
    assert answer.value == "cat"
    got = {r.variant: (r.prediction, r.label) for r in rows(engine, "m")}
    assert got == {"v1": (None, "cat"), "v2": (None, '["a","b","3"]')}


def test_inactive_old_stable_keeps_shadowing_after_promotion(engine, tmp_path):
    with engine.begin() as conn:
        write_routing(conn, "m", (VariantRoute("v2", "stable", 100), VariantRoute("v1", "inactive", 0, True,
                                                                                  dt.date(2026, 3, 1))),
                      expected_version=None, actor="test", reason="promoted")
    with make_router(engine, tmp_path) as router:
        assert router.predict(1.0, "u1").variant == "v2"
    assert sorted((r.variant, r.served) for r in rows(engine, "m")) == [("v1", False), ("v2", True)]
    assert count(engine, "m") == 2


def test_a_router_rides_out_a_postgres_outage(pg_server, pg_url, tmp_path):
    """Config kept and rows spilled while the database refuses connections; all rows stored once afterwards."""
    engine = make_engine(pg_url, connect_args={"connect_timeout": 2})
    database = sa.engine.make_url(pg_url).database
    set_routing(engine, "m", 0, shadow=True)
    router = Router(engine, "m", {"v1": stable, "v2": candidate}, spill_dir=tmp_path / "spill", refresh_seconds=None)
    router.writer.retry_seconds = router.writer.max_retry_seconds = 0.1
    try:
        before = [router.predict(1.0, f"u{k}") for k in range(100)]
        set_connections(pg_server, database, False)
        try:
            assert router.refresh() is False
            during = [router.predict(1.0, f"u{k}") for k in range(300)]
            assert {a.variant for a in during} == {"v1"} and {a.value for a in during} == {2.0}
            assert router.drain(5) and router.writer.flush(30)
            assert router.health()["status"] == "degraded"
            assert router.writer.counts["spilled"] >= 300
        finally:
            set_connections(pg_server, database, True)
        assert router.refresh() is True
        after = [router.predict(1.0, f"u{k}") for k in range(100)]
        assert router.drain(5) and router.writer.wait_replayed(30)
    finally:
        router.close()
    assert count(engine, "m") == 2 * (len(before) + len(during) + len(after))
    assert duplicates(engine) == 0
    engine.dispose()


def test_the_clock_is_injectable_for_synthetic_days(engine, tmp_path):
    set_routing(engine, "m", 0, shadow=True)
    fixed = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    with make_router(engine, tmp_path, clock=lambda: fixed) as router:
        router.predict(1.0, "u1")
    assert {r.ts.replace(tzinfo=UTC) for r in rows(engine, "m")} == {fixed}
