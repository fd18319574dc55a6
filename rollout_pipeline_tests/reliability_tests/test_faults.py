"""Faults in the middle of a run: a killed connection, a PostgreSQL restart, a 30 s outage under load.

The run retries (the assets' RetryPolicy) or fails cleanly; the routing is never half-updated; a
re-run gives the same decision; the serving side's log writer loses no row. Restarts and the outage
happen in the throwaway cluster of ``conftest.cluster``, never on the shared server.
"""

from __future__ import annotations

import datetime as dt
import time
import types

import dagster as dg
import pytest
import sqlalchemy as sa

from rollout_pipeline.defs.runner import run_day
from rollout_pipeline.domain.decide import force_decision
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.domain.records import PredictionRow
from rollout_pipeline.serving.writer import LogWriter
from rollout_pipeline.store import rollouts as repo
from rollout_pipeline.store import summary as summary_store
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.logs import write_predictions
from rollout_pipeline.store.routing import read_routing, routing_history_rows
from rollout_pipeline.store.serving_queries import count_rows, duplicate_identities
from rollout_pipeline_tests.factories import log_day
from rollout_pipeline_tests.reliability_tests.conftest import wait_until_up
from rollout_pipeline_tests.timing import TimedProducer, assert_rarely_slow

DAY = dt.date(2026, 11, 28)


def _kill_backend(admin_url: str, connection: sa.Connection) -> None:
    """pg_terminate_backend on ``connection``'s server process, from another session."""
    pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
    admin.dispose()


def _routing_state(engine, model: str):
    with engine.connect() as conn:
        r = read_routing(conn, model)
        rollout = repo.latest_rollout(conn, model)
        return (r.version, sorted(r.routes, key=lambda x: x.variant), len(routing_history_rows(conn, model)),
                rollout.stage, rollout.canary_percent)


def _started(url: str, model: str = "m") -> sa.Engine:
    engine = make_engine(url)
    with engine.begin() as conn:
        repo.start_rollout(conn, model, "v1", "v2", Policy(), actor="test")
    write_predictions(engine, log_day(model, DAY, "v1", "v2"))
    return engine


def test_connection_killed_while_applying_leaves_the_routing_untouched_and_a_retry_applies(pg_url, pg_server,
                                                                                          monkeypatch):
    engine = _started(pg_url)
    # A stored, unapplied promote (the daily run applies its own decision now; the routing job applies such ones).
    with engine.begin() as conn:
        rollout = repo.active_rollout(conn, "m")
        promote = force_decision(repo.state_before(conn, rollout, DAY), "promote", "fault test", Policy(), "test")
        run = types.SimpleNamespace(result={"decision_id": repo.record_decision(
            conn, rollout, DAY, promote, actor="test", metrics={}, run_id=None).id})
    before = _routing_state(engine, "m")

    real = repo.write_routing

    def write_then_die(connection, *args, **kwargs):
        written = real(connection, *args, **kwargs)  # version bumped, config replaced, history added...
        _kill_backend(pg_server, connection)  # ...and the session dies before COMMIT
        return written

    monkeypatch.setattr(repo, "write_routing", write_then_die)
    with pytest.raises(sa.exc.OperationalError):
        with engine.begin() as conn:
            repo.apply_decision(conn, run.result["decision_id"], actor="test")
    assert _routing_state(engine, "m") == before  # nothing of the half-done change is visible
    with engine.connect() as conn:
        assert repo.get_decision(conn, run.result["decision_id"]).applied_at is None

    monkeypatch.setattr(repo, "write_routing", real)
    with engine.begin() as conn:  # the retry (a fresh connection: pool_pre_ping dropped the dead one)
        assert repo.apply_decision(conn, run.result["decision_id"], actor="test") is True
    after = _routing_state(engine, "m")
    assert (after[0], after[3], after[4]) == (before[0] + 1, "canary", 1)
    engine.dispose()


def test_connections_killed_in_the_middle_of_a_run_are_retried_and_the_decision_is_the_same(pg_url, pg_server,
                                                                                            monkeypatch):
    """pg_terminate_backend during day_summary's collect and again during the decision's write: each
    step fails once, Dagster retries it (RetryPolicy), the run succeeds; a later re-run decides the same."""
    engine = _started(pg_url)
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", pg_url)
    killed = []
    real_collect, real_record = summary_store.collect_day, repo.record_decision

    def collect_after_kill(connection, *args, **kwargs):
        if "collect" not in killed:
            killed.append("collect")
            _kill_backend(pg_server, connection)
        return real_collect(connection, *args, **kwargs)

    def record_after_kill(connection, *args, **kwargs):
        if "record" not in killed:
            killed.append("record")
            _kill_backend(pg_server, connection)
        return real_record(connection, *args, **kwargs)

    monkeypatch.setattr(summary_store, "collect_day", collect_after_kill)
    monkeypatch.setattr(repo, "record_decision", record_after_kill)
    with dg.instance_for_test() as instance:
        run = run_day("m", DAY, instance=instance)
        retries = [e for e in instance.all_logs(run.run_id) if e.dagster_event
                   and e.dagster_event.event_type_value == "STEP_UP_FOR_RETRY"]
    assert killed == ["collect", "record"]
    assert run.success, run
    assert len(retries) == 2
    first = run.result
    assert first["action"] == "promote"
    monkeypatch.setattr(summary_store, "collect_day", real_collect)
    monkeypatch.setattr(repo, "record_decision", real_record)
    with dg.instance_for_test() as instance:
        again = run_day("m", DAY, instance=instance)
    assert {k: again.result[k] for k in ("action", "from", "to", "reasons")} == \
        {k: first[k] for k in ("action", "from", "to", "reasons")}
    with engine.connect() as conn:
        history = repo.decision_history(conn, "m", include_superseded=True)
        assert len(history) == 2 and len([d for d in history if d.day == DAY]) == 2
        assert repo.live_decision(conn, "m", DAY).id == again.result["decision_id"]
    engine.dispose()


def test_postgres_restarted_in_the_middle_of_a_run(cluster, cluster_url, monkeypatch):
    """A real restart (pg_ctl stop -m fast; start) while day_summary is collecting: the step fails, is
    retried on a fresh connection, and the day gets the decision an undisturbed re-run gives."""
    engine = _started(cluster_url)
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", cluster_url)
    restarted = []
    real_collect = summary_store.collect_day

    def collect_across_a_restart(connection, *args, **kwargs):
        if not restarted:
            restarted.append(True)
            cluster.restart("fast")
            wait_until_up(cluster.url)
        return real_collect(connection, *args, **kwargs)

    monkeypatch.setattr(summary_store, "collect_day", collect_across_a_restart)
    with dg.instance_for_test() as instance:
        run = run_day("m", DAY, instance=instance)
    assert restarted and run.success and run.result["action"] == "promote"
    monkeypatch.setattr(summary_store, "collect_day", real_collect)
    with dg.instance_for_test() as instance:
        again = run_day("m", DAY, instance=instance)
    assert (again.result["action"], again.result["to"]) == (run.result["action"], run.result["to"])
    engine.dispose()


def test_postgres_down_while_applying_leaves_the_routing_whole(cluster, cluster_url, monkeypatch):
    """The server stops (immediate: a crash) between the routing writes and COMMIT: after it is back,
    the routing is exactly the old version, and applying again moves it once."""
    engine = _started(cluster_url)
    with engine.begin() as conn:
        rollout = repo.active_rollout(conn, "m")
        state = repo.state_before(conn, rollout, DAY)
        forced = repo.record_decision(conn, rollout, DAY,
                                      force_decision(state, "promote", "fault test", rollout.policy, "test"),
                                      actor="test", metrics={}, run_id=None)
    before = _routing_state(engine, "m")
    real = repo.write_routing

    def write_then_crash(connection, *args, **kwargs):
        written = real(connection, *args, **kwargs)
        cluster.stop("immediate")
        return written

    monkeypatch.setattr(repo, "write_routing", write_then_crash)
    try:
        with pytest.raises(sa.exc.OperationalError):
            with engine.begin() as conn:
                repo.apply_decision(conn, forced.id, actor="test")
    finally:
        cluster.start()
    monkeypatch.setattr(repo, "write_routing", real)
    wait_until_up(cluster.url)
    assert _routing_state(engine, "m") == before
    with engine.begin() as conn:
        assert repo.apply_decision(conn, forced.id, actor="test") is True
    after = _routing_state(engine, "m")
    assert after[0] == before[0] + 1 and (after[3], after[4]) == ("canary", 1)
    engine.dispose()


def test_log_writer_survives_a_30_second_outage_under_load(cluster, cluster_url, tmp_path):
    """The serving side keeps submitting ~2,500 rows/s while the cluster is stopped for 30 s; every row
    arrives exactly once after it is started again, and no submit ever waits on the database."""
    engine = make_engine(cluster_url, connect_args={"connect_timeout": 2})
    writer = LogWriter(engine, tmp_path / "spill", batch_rows=500, flush_seconds=0.05, retry_seconds=0.2,
                       max_retry_seconds=2.0)
    t0 = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)

    def rows(start, n):
        return [PredictionRow(f"c{i:09d}", t0 + dt.timedelta(milliseconds=i), "m", "v1", True, f"u{i % 97}", 2.0,
                              "ok", float(i), None) for i in range(start, start + n)]

    try:
        with TimedProducer(writer.submit, rows, pause=0.02) as producer:
            time.sleep(2)
            cluster.stop("fast")
            outage_started = time.monotonic()
            time.sleep(30)
            down_for = time.monotonic() - outage_started
            spilled = writer.counts["spilled"]
            assert not writer.database_up
            cluster.start()
            time.sleep(3)
    finally:
        if not cluster_is_up(cluster):
            cluster.start()
    assert writer.wait_replayed(timeout=120), writer.stats()
    writer.close()
    with engine.connect() as conn:
        stored = count_rows(conn, "prediction_log")
        dupes = duplicate_identities(conn, "prediction_log")
    engine.dispose()
    assert down_for >= 30 and spilled > 30_000, (down_for, spilled)
    assert stored == producer.submitted, (stored, producer.submitted, writer.stats())
    assert dupes == 0
    # A submit never waits on the database (that would take the 2 s connect timeout, or the 30 s outage).
    assert_rarely_slow(producer.durations, slow=0.05, allowed=10, waiting_costs=2.0, what="submit")


def cluster_is_up(cluster) -> bool:
    from rollout_pipeline_tests import postgres

    return postgres._reachable(cluster.url) is None


def test_every_step_of_every_job_has_the_one_retry_policy():
    """Issue #22, probe 5: assets, asset checks and ops all retry transient database errors the same way."""
    from rollout_pipeline.definitions import defs
    from rollout_pipeline.defs.failures import DATABASE_RETRY

    steps = {(job.name, op.name): op.retry_policy
             for job in defs.get_repository_def().get_all_jobs() for op in job.graph.iterate_op_defs()}
    assert {("daily_analysis", f"day_summary_{c}") for c in ("log_quality", "latency_slo", "prediction_distribution")} \
        <= set(steps)
    assert {k: v for k, v in steps.items() if v != DATABASE_RETRY} == {}


def test_connections_killed_during_each_check_are_retried_and_the_run_decides(pg_url, pg_server, monkeypatch):
    """Issue #22, probe 5: a database connection killed while each of the three asset checks stores its result.
    Was: `collect` and `decision` retried, the checks failed the run (exit 3 in 2 of 5 tries). Now each check's
    step fails once, is retried by the same RetryPolicy, and the run decides as an undisturbed one does."""
    from rollout_pipeline.store import evidence as evidence_store

    engine = _started(pg_url)
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", pg_url)
    killed = []
    real_save = evidence_store.save_validation

    def save_after_kill(connection, evidence_id, name, suite):
        if name not in killed:
            killed.append(name)
            _kill_backend(pg_server, connection)
        return real_save(connection, evidence_id, name, suite)

    monkeypatch.setattr(evidence_store, "save_validation", save_after_kill)
    with dg.instance_for_test() as instance:
        run = run_day("m", DAY, instance=instance)
        retried = sorted(e.step_key for e in instance.all_logs(run.run_id) if e.dagster_event
                         and e.dagster_event.event_type_value == "STEP_UP_FOR_RETRY")
    assert sorted(killed) == ["latency_slo", "log_quality", "prediction_distribution"]
    assert retried == ["day_summary_latency_slo", "day_summary_log_quality", "day_summary_prediction_distribution"]
    assert run.success and run.result["action"] == "promote", run
    assert not run.failed_checks
    monkeypatch.setattr(evidence_store, "save_validation", real_save)
    with dg.instance_for_test() as instance:
        again = run_day("m", DAY, instance=instance)
    assert (again.result["action"], again.result["to"]) == (run.result["action"], run.result["to"])
    engine.dispose()
