"""No password or connection secret in CLI output, log records, Dagster's event log or state files.

A login role with a password in the throwaway cluster (trust auth: any password is accepted, so
the password in the URL is just a secret to look for), the CLI run in-process at DEBUG level."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from click.testing import CliRunner
from dagster._serdes import serialize_value

from rollout_pipeline.cli import cli
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.logs import write_predictions
from rollout_pipeline.store.roles import PIPELINE_ROLE, grant_roles
from rollout_pipeline_tests.factories import log_day

DAY = dt.date(2026, 11, 28)
CLI = str(Path(sys.executable).with_name("rollout-pipeline"))


def _with_password(url: str, user: str, password: str, **changes) -> str:
    return sa.engine.make_url(url).set(username=user, password=password, **changes).render_as_string(hide_password=False)


def test_a_password_in_the_database_url_never_shows(cluster, cluster_url, tmp_path, monkeypatch, caplog):
    secret = f"pw-{uuid.uuid4().hex}"
    owner = make_engine(cluster_url)
    grant_roles(owner)
    with owner.begin() as conn:
        conn.exec_driver_sql("DROP ROLE IF EXISTS secret_app")
        conn.exec_driver_sql(f"CREATE ROLE secret_app LOGIN PASSWORD '{secret}' IN ROLE {PIPELINE_ROLE}")
    owner_url = _with_password(cluster_url, "postgres", secret)  # trust: accepted, and still a secret to keep
    app_url = _with_password(cluster_url, "secret_app", secret)
    down_url = _with_password(cluster_url, "secret_app", secret, port=1)  # nothing listens: connection refused
    home, state = tmp_path / "dagster", tmp_path / "state"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(state))
    caplog.set_level(logging.DEBUG)
    runner = CliRunner()
    outputs = []

    def run(url: str, *args: str, ok: bool = True):
        result = runner.invoke(cli, ["--log-level", "DEBUG", *args], env={"ROLLOUT_DATABASE_URL": url},
                               catch_exceptions=False)
        outputs.append(result.output + (result.stderr if result.stderr_bytes is not None else ""))
        assert (result.exit_code == 0) == ok, (args, result.output)
        return result

    run(owner_url, "init-db")
    run(app_url, "rollout", "start", "--model", "m", "--stable", "v1", "--candidate", "v2")
    write_predictions(owner, log_day("m", DAY, "v1", "v2"))
    decided = json.loads(run(app_url, "decide", "--model", "m", "--date", DAY.isoformat(), "--json").stdout)
    assert decided["action"] == "promote" and decided["applied"] is True
    run(app_url, "decide", "--model", "m", "--date", DAY.isoformat(), "--force", "hold", "--reason", "audit me")
    run(app_url, "status", "--json")
    run(app_url, "history", "--model", "m")
    # Failures print the URL redacted, never the password.
    failed = run(down_url, "init-db", ok=False)
    assert "***" in failed.output and "127.0.0.1" in failed.output
    for url, args in ((down_url, ["status"]), (down_url, ["history", "--model", "m"]),
                      ("postgresql://secret_app:" + secret + "@[not-a-host/x", ["status"])):  # unparseable URL
        proc = subprocess.run([CLI, *args], env={**os.environ, "ROLLOUT_DATABASE_URL": url}, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr  # 3: the database failed
        outputs.append(proc.stdout + proc.stderr)
    owner.dispose()

    text = "\n".join(outputs)
    assert secret not in text
    records = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
    assert len(caplog.records) > 20 and secret not in records
    assert secret not in caplog.text

    # Dagster's event log of every run (metadata, step logs, failures), run config and tags.
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert len(runs) >= 2
        for r in runs:
            assert secret not in json.dumps(r.run_config, default=str) + json.dumps(r.tags, default=str)
            for event in instance.all_logs(r.run_id):
                assert secret not in serialize_value(event)

    # And no file the CLI or Dagster left behind (SQLite storage, compute logs, spill, reports).
    for folder in (home, state):
        for path in folder.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
