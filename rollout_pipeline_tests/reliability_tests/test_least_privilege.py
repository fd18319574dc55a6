"""Least privilege: the serving side and the pipeline each run under a role of their own
(``rollout_pipeline.store.roles`` = docs/roles.sql) and everything else they might try is refused.

Roles are cluster-wide, so this runs in the throwaway cluster (trust auth: the login roles need no
password here), never on the shared server."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from rollout_pipeline.cli import cli

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
    _the_audit_cannot_be_hidden(owner, pipeline, cluster_url, "audit", decision_ids)


def _the_audit_cannot_be_hidden(owner, pipeline, url: str, model: str, decision_ids: list[int]) -> None:
    """Issue #22, probe 4: the pipeline role could set decisions.superseded_by (a column grant), after which
    `history` printed "no decisions". Only the moves the code makes are allowed now (migration 0006)."""
    live, old = decision_ids[-1], decision_ids[0]
    attempts = [
        f"UPDATE decisions SET superseded_by = id WHERE id = {live}",  # superseded by itself
        f"UPDATE decisions SET superseded_by = {old} WHERE id = {live}",  # by an older decision
        f"UPDATE decisions SET superseded_by = 2147483647 WHERE id = {live}",  # by one that does not exist
        f"UPDATE decisions SET superseded_by = -1 WHERE id = {live}",  # the insert's placeholder, left at COMMIT
        "UPDATE decisions SET superseded_by = NULL",  # bring a superseded decision back to life
        f"UPDATE decisions SET superseded_by = -1 WHERE id = {old}",  # re-point a superseded one
        f"UPDATE decisions SET applied_at = now() - interval '1 day' WHERE id = {live}",  # rewrite when applied
    ]
    refusals = [_refused(pipeline, sql) for sql in attempts]
    assert all(m.startswith("permission denied: decision ") for m in refusals), refusals
    # And as the code does it, it still works: the live decision is there, and history shows it.
    with owner.connect() as conn:
        assert conn.execute(sa.text("SELECT id FROM decisions WHERE model_name = :m AND superseded_by IS NULL"),
                            {"m": model}).scalars().all() == [live]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROLLOUT_DATABASE_URL", _as(url, "pipeline_app"))
        out = CliRunner().invoke(cli, ["history", "--model", model])
    assert out.exit_code == 0 and f"#{live} " in out.output and "no decisions" not in out.output, out.output


def test_an_install_granted_the_old_way_loses_update_and_delete_on_the_audit(roles, cluster_url):
    owner, _serving, pipeline = roles
    with owner.begin() as conn:  # what docs/roles.sql granted before the audit became append-only
        conn.exec_driver_sql(f"GRANT SELECT, INSERT, UPDATE, DELETE ON decisions, routing_history TO {PIPELINE_ROLE}")
    grant_roles(owner)
    assert "permission denied" in _refused(pipeline, "DELETE FROM routing_history")
    assert "permission denied" in _refused(pipeline, "UPDATE decisions SET reasons = '[]'")


def _compose_url(service: str, cluster_url: str, key: str = "ROLLOUT_DATABASE_URL") -> str:
    """The database URL compose gives ``service``, pointed at the throwaway cluster instead of `postgres:5432`."""
    from rollout_pipeline_tests.test_deployment import _service_env

    given = sa.engine.make_url(_service_env(service)[key])
    server = sa.engine.make_url(cluster_url)
    return given.set(host=server.host, port=server.port).render_as_string(hide_password=False)


def test_the_whole_compose_flow_runs_as_its_roles(cluster, cluster_url, tmp_path, monkeypatch):
    """Issue #22, probe 4: docker/compose.yaml ran every service as the image's superuser and never applied
    roles.sql. Here its flow's SQL runs in the throwaway cluster as the roles compose names: docker/initdb's
    script as the superuser, `init-db --grant-roles` as the owner (the migrate service), the routing and the logs
    as router_app (serve), the rollout, the night, a re-run and the apply as pipeline_app (the code location and
    the runs), Dagster's storage as dagster (docker/dagster.yaml) -- and nothing of it needs more."""
    import os
    import subprocess

    from rollout_pipeline.defs.runner import run_retention
    from rollout_pipeline_tests import postgres
    from rollout_pipeline_tests.test_deployment import ROOT, SECRETS, _service_env

    server = sa.engine.make_url(cluster.url)
    script = ROOT / "docker" / "initdb" / "10-roles-and-databases.sh"
    env = {**os.environ, **SECRETS, "POSTGRES_USER": "postgres", "PGHOST": server.host, "PGPORT": str(server.port),
           "PATH": f"{os.path.dirname(postgres._pg_bin('psql'))}:{os.environ['PATH']}"}
    admin = make_engine(cluster.url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        for _ in range(2):  # the postgres image runs it once; by hand it may run again
            done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
        urls = {name: _compose_url(name, cluster.url) for name in ("migrate", "code", "serve")}
        assert [sa.engine.make_url(u).username for u in urls.values()] == ["rollout", "pipeline_app", "router_app"]
        with admin.connect() as conn:
            supers = set(conn.execute(sa.text("SELECT rolname FROM pg_roles WHERE rolsuper")).scalars())
            owners = dict(conn.execute(sa.text(
                "SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname IN ('rollout', 'dagster')")).all())
        assert owners == {"rollout": "rollout", "dagster": "dagster"}
        assert not supers & {"rollout", "dagster", "pipeline_app", "router_app"}

        monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
        monkeypatch.setenv("ROLLOUT_DATABASE_URL", urls["migrate"])  # the migrate service
        for _ in range(2):
            out = CliRunner().invoke(cli, ["init-db", "--grant-roles", "--partition-days-ahead", "0"])
            assert out.exit_code == 0 and "granted rollout_pipeline and rollout_serving" in out.output, out.output

        monkeypatch.setenv("ROLLOUT_DATABASE_URL", urls["code"])  # the code location, the CLI in its container
        out = CliRunner().invoke(cli, ["rollout", "start", "--model", "m", "--stable", "v1", "--candidate", "v2"])
        assert out.exit_code == 0, out.output
        serving = make_engine(urls["serve"])  # serve: the Router reads the routing, the LogWriter writes the day
        rng = random.Random(2)
        t0 = dt.datetime.combine(DAY, dt.time(), dt.UTC)
        models = {v: (lambda x: Output(prediction=x, latency_ms=rng.lognormvariate(3.0, 0.3), value=x))
                  for v in ("v1", "v2")}
        with LogWriter(serving, tmp_path / "spill", flush_seconds=0.05) as writer:
            router = Router(serving, "m", models, writer=writer, refresh_seconds=None, seed=2)
            for i in range(1_500):
                router.predict(rng.random(), entity_id=f"e{i % 300}", ts=t0 + dt.timedelta(seconds=50 * i))
            assert router.drain(30)
            router.close()
            assert writer.flush(60)
        assert writer.counts["written"] == 3_000 and not writer.counts["spilled"], writer.stats()
        serving.dispose()

        for key in ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
            monkeypatch.setenv(key, _service_env("code")[key])
        monkeypatch.setenv("DAGSTER_PG_HOST", server.host)
        monkeypatch.setenv("DAGSTER_PG_PORT", str(server.port))
        home = tmp_path / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text((ROOT / "docker" / "dagster.yaml").read_text())
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        for attempt in ("night", "re-run"):  # the night's run, then a re-run superseding it (UPDATE superseded_by)
            out = CliRunner().invoke(cli, ["decide", "--model", "m", "--date", DAY.isoformat(), "--json"])
            assert out.exit_code == 0, (attempt, out.output)
        with dg.DagsterInstance.get() as instance:  # Dagster's storage, as `dagster`, recorded the runs
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert len(instance.get_runs()) == 2
            assert run_retention(DAY, instance=instance).success
        out = CliRunner().invoke(cli, ["history", "--model", "m", "--all", "--json"])
        decided = [e for e in json.loads(out.output) if e["kind"] == "decision"]  # one timeline: routing too
        assert len(decided) == 2 and decided[0]["superseded_by"] == decided[1]["id"], decided
        owner = make_engine(urls["migrate"])
        pipeline = make_engine(urls["code"])
        _the_audit_cannot_be_hidden(owner, pipeline, urls["code"], "m", [d["id"] for d in decided])
        assert "permission denied" in _refused(pipeline, "DELETE FROM decisions")
        assert "permission denied" in _refused(pipeline, "CREATE TABLE evil (x int)")
        owner.dispose()
        pipeline.dispose()
    finally:
        with admin.connect() as conn:
            for name in ("rollout", "dagster"):
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def test_a_role_granted_before_the_schema_check_is_told_to_re_run_roles_sql(roles, cluster_url, monkeypatch):
    """An install whose roles were granted by an older docs/roles.sql cannot read alembic_version: the commands
    refuse in one line saying what to re-run, instead of failing on "permission denied" (exit 4)."""
    owner, _serving, _pipeline = roles
    with owner.begin() as conn:
        conn.exec_driver_sql(f"REVOKE SELECT ON alembic_version FROM {PIPELINE_ROLE}")
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", _as(cluster_url, "pipeline_app"))
    try:
        out = CliRunner().invoke(cli, ["status"])
        assert out.exit_code == 1, out.output
        assert "read its schema revision (alembic_version): re-run docs/roles.sql" in out.output, out.output
    finally:
        grant_roles(owner)
    assert CliRunner().invoke(cli, ["status"]).exit_code == 0
