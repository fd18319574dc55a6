"""Least privilege: the serving side and the pipeline each run under a role of their own
(``rollout_pipeline.store.roles`` = docs/roles.sql) and everything else they might try is refused.

Roles are cluster-wide, so this runs in the throwaway cluster (trust auth: the login roles need no
password here), never on the shared server."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from rollout_pipeline.defs.runner import run_day
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.serving.outputs import Output
from rollout_pipeline.serving.router import Router
from rollout_pipeline.serving.writer import LogWriter
from rollout_pipeline.store import rollouts as repo
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.roles import PIPELINE_ROLE, SERVING_ROLE, grant_roles, roles_sql
from rollout_pipeline.store.routing import read_routing
from rollout_pipeline.store.serving_queries import count_rows

DAY = dt.date(2026, 11, 28)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "roles.sql"


def test_docs_roles_sql_is_the_generated_sql():
    assert DOCS.read_text() == roles_sql(), "docs/roles.sql is stale: write roles_sql() to it"


def _login_role(owner: sa.Engine, name: str, group: str) -> None:
    with owner.begin() as conn:
        exists = conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name}).first()
        if not exists:
            conn.exec_driver_sql(f"CREATE ROLE {name} LOGIN IN ROLE {group}")


def _as(url: str, user: str) -> str:
    return sa.engine.make_url(url).set(username=user).render_as_string(hide_password=False)


def _refused(engine: sa.Engine, sql: str) -> str:
    """Run ``sql`` and return PostgreSQL's refusal (it must be refused for lack of privilege)."""
    with pytest.raises(sa.exc.ProgrammingError) as caught:
        with engine.begin() as conn:
            conn.exec_driver_sql(sql)
    assert caught.value.orig.pgcode == "42501", caught.value  # insufficient_privilege
    return caught.value.orig.diag.message_primary


@pytest.fixture
def roles(cluster_url):
    owner = make_engine(cluster_url)
    grant_roles(owner)
    grant_roles(owner)  # idempotent
    _login_role(owner, "router_app", SERVING_ROLE)
    _login_role(owner, "pipeline_app", PIPELINE_ROLE)
    serving = make_engine(_as(cluster_url, "router_app"))
    pipeline = make_engine(_as(cluster_url, "pipeline_app"))
    yield owner, serving, pipeline
    for e in (owner, serving, pipeline):
        e.dispose()


def test_each_side_works_under_its_own_role_and_nothing_more(roles, cluster_url, tmp_path, monkeypatch):
    owner, serving, pipeline = roles

    # The pipeline (its own role) starts the rollout: rollouts, routing and history rows.
    with pipeline.begin() as conn:
        repo.start_rollout(conn, "m", "v1", "v2", Policy(), actor="test")

    # The serving side (its own role): the Router reads the routing, the LogWriter inserts the logs,
    # for a day that has no partition yet (the serving role may not create one: the rows go to the
    # default partition, and the owner's init-db moves them when it creates the day's partition).
    rng = random.Random(1)
    t0 = dt.datetime.combine(DAY, dt.time(), dt.UTC)
    models = {v: (lambda x: Output(prediction=x, latency_ms=rng.lognormvariate(3.0, 0.3), value=x)) for v in ("v1", "v2")}
    with LogWriter(serving, tmp_path / "spill", flush_seconds=0.05) as writer:
        router = Router(serving, "m", models, writer=writer, refresh_seconds=None, seed=1)
        assert router.config.stable.variant == "v1"
        for i in range(1_500):
            router.predict(rng.random(), entity_id=f"e{i % 300}", ts=t0 + dt.timedelta(seconds=50 * i))
        assert router.drain(30)
        router.close()
        assert writer.flush(60)
    assert writer.counts["written"] == 3_000 and not writer.counts["spilled"], writer.stats()
    with owner.connect() as conn:
        assert count_rows(conn, "prediction_log", "m") == 3_000

    # The pipeline's daily run and the apply, under the pipeline role.
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", _as(cluster_url, "pipeline_app"))
    with dg.instance_for_test() as instance:
        run = run_day("m", DAY, instance=instance)
    assert run.success, run
    assert run.result["action"] == "promote", run.result["reasons"]
    with pipeline.begin() as conn:  # applied here, or already by the run's own decision service
        repo.apply_decision(conn, run.result["decision_id"], actor="test")
    with serving.connect() as conn:  # the serving side sees the new routing
        assert read_routing(conn, "m").candidate.traffic_percent == 1.0

    # What the serving role may not do.
    refused = [
        _refused(serving, "UPDATE routing_config SET traffic_percent = 100 WHERE variant = 'v2'"),
        _refused(serving, "DELETE FROM routing_config"),
        _refused(serving, "INSERT INTO routing_history (model_name, version, actor, reason, config, created_at) "
                          "VALUES ('m', 99, 'x', 'x', '[]', now())"),
        _refused(serving, "SELECT * FROM decisions"),
        _refused(serving, "SELECT * FROM rollouts"),
        _refused(serving, "SELECT prediction, label FROM prediction_log"),
        _refused(serving, "UPDATE prediction_log SET latency_ms = 1"),
        _refused(serving, "DELETE FROM prediction_log"),
        _refused(serving, "TRUNCATE feedback"),
        _refused(serving, "DROP TABLE decisions"),
        _refused(serving, "CREATE TABLE evil (x int)"),
    ]
    # What the pipeline role may not do.
    refused += [
        _refused(pipeline, "INSERT INTO prediction_log (ts, model_name, variant, served) VALUES (now(), 'm', 'v1', true)"),
        _refused(pipeline, "UPDATE prediction_log SET latency_ms = 1"),
        _refused(pipeline, "DELETE FROM feedback"),
        _refused(pipeline, "DROP TABLE decisions"),
        _refused(pipeline, "ALTER TABLE routing_config ADD COLUMN evil int"),
        _refused(pipeline, "CREATE TABLE evil (x int)"),
    ]
    assert all("permission denied" in m or "must be owner" in m for m in refused), refused
    with owner.connect() as conn:  # and nothing changed
        assert count_rows(conn, "prediction_log", "m") == 3_000
        assert read_routing(conn, "m").candidate.traffic_percent == 1.0


def test_the_serving_writer_does_not_stall_on_partition_ddl_it_may_not_do(roles, tmp_path):
    """A day without a partition: the serving role's write goes to the default partition (a warning),
    instead of failing and spilling forever; the owner's partition creation moves the rows later."""
    from rollout_pipeline.domain.records import PredictionRow
    from rollout_pipeline.store.logs import write_predictions
    from rollout_pipeline.store.partitions import ensure_day_partitions, partition_name

    owner, serving, _ = roles
    day = DAY + dt.timedelta(days=30)
    t0 = dt.datetime.combine(day, dt.time(), dt.UTC)
    rows = [PredictionRow(f"c{i}", t0 + dt.timedelta(seconds=i), "m", "v1", True, None, 1.0, "ok", 0.1, None)
            for i in range(100)]
    assert write_predictions(serving, rows) == 100
    with owner.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM prediction_log_default").scalar_one() == 100
    assert ensure_day_partitions(owner, [day]) == [partition_name("prediction_log", day), partition_name("feedback", day)]
    with owner.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM prediction_log_default").scalar_one() == 0
        assert count_rows(conn, "prediction_log", "m") == 100


def test_the_audit_is_append_only_for_the_pipeline_role(roles, cluster_url, monkeypatch):
    """As the pipeline role: decisions and routing_history take inserts, decisions only the two column
    updates the code makes (superseded_by, applied_at); rewriting a decision's reasons or deleting
    history is refused; and a day decided, re-run (superseding) and applied still works."""
    owner, serving, pipeline = roles
    with pipeline.begin() as conn:
        repo.start_rollout(conn, "audit", "v1", "v2", Policy(), actor="test")
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", _as(cluster_url, "pipeline_app"))
    decision_ids = []
    for _ in range(2):  # the second run of the day supersedes the first: UPDATE superseded_by
        with dg.instance_for_test() as instance:
            run = run_day("audit", DAY, instance=instance)  # a day without logs: held, and the hold recorded
        assert run.result["action"] == "hold", run
        decision_ids.append(run.result["decision_id"])
    with pipeline.begin() as conn:  # UPDATE applied_at, routing_history INSERT
        repo.apply_decision(conn, decision_ids[-1], actor="test")
    with owner.connect() as conn:
        superseded = conn.execute(sa.text("SELECT superseded_by FROM decisions WHERE id = :i"),
                                  {"i": decision_ids[0]}).scalar_one()
        applied = conn.execute(sa.text("SELECT applied_at FROM decisions WHERE id = :i"),
                               {"i": decision_ids[-1]}).scalar_one()
        history_before = conn.execute(sa.text("SELECT count(*) FROM routing_history")).scalar_one()
        reasons_before = conn.execute(sa.text("SELECT reasons FROM decisions ORDER BY id")).scalars().all()
    assert superseded == decision_ids[-1] and applied is not None and history_before >= 1

    refused = [
        _refused(pipeline, "UPDATE decisions SET reasons = '[\"all good\"]'"),
        _refused(pipeline, "UPDATE decisions SET action = 'promote', forced = true"),
        _refused(pipeline, "DELETE FROM decisions"),
        _refused(pipeline, "TRUNCATE decisions"),
        _refused(pipeline, "UPDATE routing_history SET reason = 'rewritten'"),
        _refused(pipeline, "DELETE FROM routing_history"),
    ]
    assert all("permission denied" in m for m in refused), refused
    with owner.connect() as conn:  # nothing changed
        assert conn.execute(sa.text("SELECT count(*) FROM routing_history")).scalar_one() == history_before
        assert conn.execute(sa.text("SELECT reasons FROM decisions ORDER BY id")).scalars().all() == reasons_before


def test_an_install_granted_the_old_way_loses_update_and_delete_on_the_audit(roles, cluster_url):
    owner, _serving, pipeline = roles
    with owner.begin() as conn:  # what docs/roles.sql granted before the audit became append-only
        conn.exec_driver_sql(f"GRANT SELECT, INSERT, UPDATE, DELETE ON decisions, routing_history TO {PIPELINE_ROLE}")
    grant_roles(owner)
    assert "permission denied" in _refused(pipeline, "DELETE FROM routing_history")
    assert "permission denied" in _refused(pipeline, "UPDATE decisions SET reasons = '[]'")
