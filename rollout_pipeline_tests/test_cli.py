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
        ("v1", "stable", 99.0, True), ("v2", "candidate", 1.0, True)]  # each model shadows the other's requests
    forced = CliRunner().invoke(cli, ["decide", "--model", "m", "--date", day.isoformat(), "--force", "hold"])
    assert forced.exit_code == 1 and "--force needs --reason" in forced.output
    hist = _run("history", "--model", "m")
    assert "PROMOTE" in hist.output and "canary 1%" in hist.output


def test_plan_reads_the_last_days_of_traffic_and_says_when_a_step_cannot_decide(env):
    _run("init-db")
    policy = env / "policy.yaml"  # a serving system that does not mirror during canary
    policy.write_text("shadow_candidate_during_canary: false\n")
    start = _run("rollout", "start", "--model", "m", "--stable", "v1", "--candidate", "v2", "--policy", str(policy))
    assert start.exit_code == 0 and "plan: no traffic logged for this model" in start.output
    engine = make_engine(f"sqlite:///{env / 'state' / 'rollout.db'}")
    day = dt.date(2026, 6, 1)
    for k in range(3):  # three days of a small shadow service: 300 requests a day
        write_predictions(engine, log_day("m", day + dt.timedelta(days=k), "v1", "v2", requests=300, seed=k))
    engine.dispose()
    out = _run("plan", "--model", "m", "--until", "2026-06-03", "--json")
    assert out.exit_code == 0, out.output
    plan = json.loads(out.output)
    assert plan["traffic"]["requests_per_night"] == 300 and plan["traffic"]["days"] == 3
    assert [s["step"] for s in plan["steps"]] == ["shadow", "canary 1%", "canary 20%", "canary 50%"]
    first = plan["steps"][1]
    assert first["warning"] and "cannot decide within a week" in first["warning"]
    text = _run("plan", "--model", "m", "--until", "2026-06-03")
    assert "plan from the last 3 day(s): ~300 requests" in text.output and "warning: canary 1%" in text.output
    nothing = _run("plan", "--model", "m", "--until", "2026-01-01")
    assert "no traffic logged" in nothing.output
    unknown = CliRunner().invoke(cli, ["plan", "--model", "other"])
    assert unknown.exit_code == 1 and "other has no rollout" in unknown.output


# --- one line per error, documented exit codes, nothing reaches Dagster before the input is checked -------------

def _one_line(result, code: int) -> str:
    """The result failed with ``code`` and said so in exactly one line on stderr, without a traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == code, (result.exit_code, result.output)
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def _partitions(env) -> dict[str, list[str]]:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(env / "dagster")) as instance:
        return {name: instance.get_dynamic_partitions(name) for name in ("models", "days")}


@pytest.fixture
def started(env):
    _run("init-db")
    assert _run("rollout", "start", "--model", "m", "--stable", "v1", "--candidate", "v2").exit_code == 0
    return env


@pytest.mark.parametrize("name", ["typo", "x'; DROP TABLE rollouts;--", "../../etc/passwd", "a" * 5000])
def test_decide_with_a_bad_or_unknown_model_adds_no_partition_and_says_one_line(started, name):
    out = CliRunner().invoke(cli, ["decide", "--model", name, "--date", "2026-06-01"])
    line = _one_line(out, 1)
    assert ("has no rollout" in line) if name == "typo" else ("invalid model name" in line)
    assert _partitions(started) == {"models": ["m"], "days": []}


@pytest.mark.parametrize("offset, word", [(0, "today"), (1, "in the future"), (400, "in the future")])
def test_decide_refuses_today_and_future_days_in_one_line(started, offset, word):
    day = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=offset)
    line = _one_line(CliRunner().invoke(cli, ["decide", "--model", "m", "--date", day.isoformat()]), 1)
    assert f"{day} is {word}" in line
    assert _partitions(started)["days"] == []


def test_a_bad_date_is_a_usage_error(started):
    out = CliRunner().invoke(cli, ["decide", "--model", "m", "--date", "2026-13-01"])
    assert out.exit_code == 2 and "is not a date" in out.stderr and "Traceback" not in out.output


def test_a_forced_decision_on_a_day_never_analysed_succeeds_from_the_cli(started):
    out = CliRunner().invoke(cli, ["decide", "--model", "m", "--date", "2026-06-01", "--force", "promote",
                                   "--reason", "reviewed by hand", "--json"])
    assert out.exit_code == 0, out.output
    decision = json.loads(out.stdout)
    assert decision["action"] == "promote" and decision["forced"] and decision["applied"] is True
    assert _partitions(started) == {"models": ["m"], "days": ["2026-06-01"]}
    status = json.loads(_run("status", "--model", "m", "--json").output)
    assert (status["stage"], status["canary_percent"]) == ("canary", 1)
    # Stored and applied in one transaction by the run (one timestamp), not applied afterwards by the CLI.
    engine = make_engine(f"sqlite:///{started / 'state' / 'rollout.db'}")
    with engine.connect() as conn:
        (row,) = conn.execute(sa.text("SELECT created_at, applied_at FROM decisions")).all()
        (change,) = conn.execute(sa.text("SELECT created_at FROM routing_history WHERE decision_id IS NOT NULL")).all()
    engine.dispose()
    assert row.created_at == row.applied_at == change.created_at


def test_refusals_print_one_line_and_no_dagster_traceback(started):
    engine = make_engine(f"sqlite:///{started / 'state' / 'rollout.db'}")
    d1, d2 = dt.date(2026, 6, 1), dt.date(2026, 6, 2)
    write_predictions(engine, log_day("m", d1, "v1", "v2") + log_day("m", d2, "v1", "v2"))
    engine.dispose()
    assert CliRunner().invoke(cli, ["decide", "--model", "m", "--date", d2.isoformat()]).exit_code == 0
    line = _one_line(CliRunner().invoke(cli, ["decide", "--model", "m", "--date", d1.isoformat()]), 1)
    assert "already decided" in line and "Dagster run" not in line  # refused before any run (no partition added)
    # --verbose shows the traceback on stderr, then the same line and exit status
    verbose = CliRunner().invoke(cli, ["--verbose", "decide", "--model", "m", "--date", d1.isoformat()])
    assert verbose.exit_code == 1 and len(verbose.stderr.splitlines()) > 5


def test_a_database_that_refuses_us_is_one_line_exit_3_without_the_password(env, monkeypatch, pg_server):
    url = sa.engine.make_url(pg_server).set(username="no_such_role_x", password="hunter2-secret")
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", url.render_as_string(hide_password=False))
    for args in (["status"], ["decide", "--model", "m", "--date", "2026-06-01"], ["init-db"]):
        line = _one_line(CliRunner().invoke(cli, args), 3)
        assert line.startswith("Error: cannot connect to the database: ") and "no_such_role_x" in line, line
        assert "hunter2-secret" not in line
    assert not (env / "dagster").exists()  # the database was checked before anything reached Dagster


def test_the_real_command_shows_no_dagster_warnings(started):
    """In a fresh process (Dagster's Preview/Beta warnings fire when the definitions are first imported)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    cli_path = str(Path(sys.executable).with_name("rollout-pipeline"))
    env = {**os.environ, "ROLLOUT_STATE_DIR": str(started / "state"), "DAGSTER_HOME": str(started / "dagster")}
    env.pop("ROLLOUT_DATABASE_URL", None)
    proc = subprocess.run([cli_path, "decide", "--model", "m", "--date", "2026-06-01", "--force", "hold",
                           "--reason", "quiet please"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr and "HOLD (forced)" in proc.stdout, proc.stderr
