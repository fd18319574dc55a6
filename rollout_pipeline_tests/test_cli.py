"""The CLI end to end in-process (click's runner): help, init-db, rollout start, decide --json, status."""

import datetime as dt
import json

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from rollout_pipeline.cli import cli
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.logs import write_predictions
from rollout_pipeline_tests.factories import log_day


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("ROLLOUT_DATABASE_URL", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    return tmp_path


def _run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_help_lists_the_commands():
    out = _run("--help")
    assert out.exit_code == 0
    for command in ("init-db", "rollout", "decide", "status", "history", "demo", "policy", "rollback", "teardown"):
        assert command in out.output


def test_init_db_twice_is_a_noop_the_second_time(env):
    first = _run("init-db")
    assert first.exit_code == 0 and "migrated" in first.output
    second = _run("init-db")
    assert second.exit_code == 0 and "already at the newest schema" in second.output


def test_init_db_refuses_an_unknown_revision_and_changes_nothing(env):
    _run("init-db")
    engine = make_engine(f"sqlite:///{env / 'state' / 'rollout.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'f00d'"))
    out = CliRunner().invoke(cli, ["init-db"])
    assert out.exit_code == 1 and "f00d" in out.output and "Nothing was changed" in out.output
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == "f00d"
    engine.dispose()


def test_bad_database_url_is_a_clear_error_without_the_password(env, monkeypatch):
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", "mysql://bob:hunter2@db/x")
    out = CliRunner().invoke(cli, ["init-db"])
    assert out.exit_code == 1 and "unsupported database" in out.output and "hunter2" not in out.output


def test_invalid_names_and_policies_are_refused(env, tmp_path):
    _run("init-db")
    out = CliRunner().invoke(cli, ["rollout", "start", "--model", "x'; DROP TABLE rollouts;--", "--stable", "a",
                                   "--candidate", "b"])
    assert out.exit_code == 1 and "invalid model name" in out.output
    bad = tmp_path / "p.yaml"
    bad.write_text("canary_steps: [1, 50, 20]\nlatency_slo_p99_ms: -3\n")
    out = CliRunner().invoke(cli, ["rollout", "start", "--model", "m", "--stable", "a", "--candidate", "b",
                                   "--policy", str(bad)])
    assert out.exit_code == 1 and "canary_steps" in out.output and "latency_slo_p99_ms" in out.output


def test_decide_json_and_status_json(env):
    _run("init-db")
    assert _run("rollout", "start", "--model", "m", "--stable", "v1", "--candidate", "v2").exit_code == 0
    engine = make_engine(f"sqlite:///{env / 'state' / 'rollout.db'}")
    day = dt.date(2026, 6, 1)
    write_predictions(engine, log_day("m", day, "v1", "v2"))
    engine.dispose()
    out = _run("decide", "--model", "m", "--date", day.isoformat(), "--json")
    assert out.exit_code == 0, out.output
    decision = json.loads(out.output[out.output.index("{"):])
    assert decision["action"] == "promote" and decision["forced"] is False and decision["applied"] is True
    assert decision["from"] == {"stage": "shadow", "canary_percent": 0}
    assert decision["to"] == {"stage": "canary", "canary_percent": 1}
    assert isinstance(decision["reasons"], list) and decision["reasons"]
    status = json.loads(_run("status", "--model", "m", "--json").output)
    assert status["stage"] == "canary" and status["canary_percent"] == 1
    assert sorted((r["variant"], r["role"], r["traffic_percent"], r["shadow"]) for r in status["routing"]) == [
        ("v1", "stable", 99.0, False), ("v2", "candidate", 1.0, False)]
    forced = CliRunner().invoke(cli, ["decide", "--model", "m", "--date", day.isoformat(), "--force", "hold"])
    assert forced.exit_code == 1 and "--force needs --reason" in forced.output
    hist = _run("history", "--model", "m")
    assert "PROMOTE" in hist.output and "canary 1%" in hist.output
