"""Retention teardown (job, action, CLI) and rollback within and after the retention window."""

import datetime as dt
import json
import sys

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from rollout_pipeline.cli import cli
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.logs import write_predictions
from rollout_pipeline.store.partitions import ensure_day_partitions, existing_partitions
from rollout_pipeline.store.rollouts import decision_history, latest_rollout, start_rollout
from rollout_pipeline.store.routing import read_routing
from rollout_pipeline.store.teardown import teardown_records
from rollout_pipeline_tests.factories import log_day
from rollout_pipeline_tests.factories import promoted as promote

PROMOTED = dt.date(2026, 7, 4)  # v2 reached production, v1 went inactive


def _run(*args):
    return CliRunner().invoke(cli, list(args))


def _routes(engine, model="churn"):
    with engine.connect() as conn:
        return {r.variant: (r.role, r.traffic_percent) for r in read_routing(conn, model).routes}


@pytest.fixture
def promoted(db_url, tmp_path, monkeypatch):
    """churn: v2 promoted to production on PROMOTED; v1 inactive since then (retention 3 days)."""
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", db_url)
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    for name in ("ROLLOUT_TEARDOWN_COMMAND", "ROLLOUT_TEARDOWN_WEBHOOK", "ROLLOUT_LOG_RETENTION_DAYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ROLLOUT_TEARDOWN_ATTEMPTS", "2")
    engine = make_engine(db_url)
    with engine.begin() as conn:
        rollout = start_rollout(conn, "churn", "v1", "v2", Policy(retention_days=3), actor="test")
        promote(conn, rollout, PROMOTED - dt.timedelta(days=1), ("shadow", 0), ("canary", 50))
        promote(conn, rollout, PROMOTED, ("canary", 50), ("production", 100))
    assert _routes(engine) == {"v2": ("stable", 100.0), "v1": ("inactive", 0.0)}
    yield engine
    engine.dispose()


def _teardown(day: dt.date):
    out = _run("teardown", "--date", day.isoformat(), "--json")
    return out.exit_code, json.loads(out.stdout)


def test_teardown_keeps_the_old_variant_for_the_window_then_retires_it(promoted):
    code, kept = _teardown(PROMOTED + dt.timedelta(days=3))
    assert code == 0 and kept["torn_down"] == [] and kept["kept"][0]["variant"] == "v1"
    assert kept["kept"][0]["days_left"] == 1
    code, done = _teardown(PROMOTED + dt.timedelta(days=4))
    assert code == 0, done
    (item,) = done["torn_down"]
    assert (item["model"], item["variant"], item["status"], item["inactive_since"]) == ("churn", "v1", "done",
                                                                                         PROMOTED.isoformat())
    assert item["action"] == "none (recorded only)"
    assert _routes(promoted) == {"v2": ("stable", 100.0), "v1": ("retired", 0.0)}
    code, again = _teardown(PROMOTED + dt.timedelta(days=5))  # nothing left to do: idempotent
    assert code == 0 and again["torn_down"] == [] and again["kept"] == []


def test_a_failing_action_is_retried_reported_and_the_variant_stays_inactive(promoted, tmp_path, monkeypatch):
    marker = tmp_path / "calls.txt"
    script = tmp_path / "scale.py"
    script.write_text(
        "import sys, pathlib\n"
        f"p = pathlib.Path({str(marker)!r}); p.write_text(p.read_text() + ' '.join(sys.argv[1:]) + '\\n' "
        "if p.exists() else ' '.join(sys.argv[1:]) + '\\n')\n"
        "sys.exit(0 if pathlib.Path(sys.argv[0]).with_name('ok').exists() else 3)\n")
    monkeypatch.setenv("ROLLOUT_TEARDOWN_COMMAND", f"{sys.executable} {script} --model {{model}} --variant {{variant}}")
    day = PROMOTED + dt.timedelta(days=4)
    code, failed = _teardown(day)
    assert code == 3  # the action's system failed (after its retries): infrastructure, not a refusal
    (item,) = failed["failed"]
    assert item["variant"] == "v1" and item["attempts"] == 2 and "status 3" in item["detail"]
    assert marker.read_text().splitlines() == ["--model churn --variant v1"] * 2
    assert _routes(promoted)["v1"] == ("inactive", 0.0)  # still deployable: rollback still possible

    (tmp_path / "ok").write_text("")
    code, done = _teardown(day)
    assert code == 0 and [t["variant"] for t in done["torn_down"]] == ["v1"]
    with promoted.connect() as conn:
        assert [(t.status, t.attempts) for t in teardown_records(conn, model="churn")] == [("failed", 2), ("done", 1)]


def test_a_misconfigured_action_fails_at_once_in_one_line_and_is_not_retried(promoted, tmp_path, monkeypatch):
    """A missing executable fails the same way every time: one attempt, one line, the variant stays inactive."""
    monkeypatch.setenv("ROLLOUT_TEARDOWN_COMMAND", f"{tmp_path / 'no-such-scaler'} --model {{model}}")
    monkeypatch.setenv("ROLLOUT_TEARDOWN_ATTEMPTS", "5")
    out = _run("teardown", "--date", (PROMOTED + dt.timedelta(days=4)).isoformat())
    assert out.exit_code == 1
    error = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "no-such-scaler" in error[0] and "not found" in error[0], out.stderr
    assert "Traceback" not in out.output
    with promoted.connect() as conn:
        assert [(t.status, t.attempts) for t in teardown_records(conn, model="churn")] == [("failed", 1)]
    assert _routes(promoted)["v1"] == ("inactive", 0.0)


@pytest.mark.parametrize("attempts", ["abc", "0"])
def test_a_bad_attempt_count_is_refused_in_one_line_before_any_run(sqlite_url, tmp_path, monkeypatch, attempts):
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.setenv("ROLLOUT_TEARDOWN_ATTEMPTS", attempts)
    out = _run("teardown", "--date", PROMOTED.isoformat())
    assert out.exit_code == 1 and out.stdout == ""
    assert [line for line in out.stderr.splitlines() if line.startswith("Error:")] == [
        f"Error: ROLLOUT_TEARDOWN_ATTEMPTS={attempts!r}: expected a whole number >= 1"]
    assert not (tmp_path / "dagster").exists() or not any((tmp_path / "dagster").rglob("*.db"))  # no run


def test_rollback_within_the_window_restores_the_old_variant_at_once(promoted):
    out = _run("rollback", "--model", "churn", "--reason", "conversion dropped after promotion", "--operator", "alice",
               "--json")
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert (result["action"], result["forced"]) == ("rollback", True)
    assert result["from"] == {"stage": "production", "canary_percent": 100}
    assert result["to"] == {"stage": "rolled_back", "canary_percent": 0}
    assert _routes(promoted) == {"v1": ("stable", 100.0), "v2": ("inactive", 0.0)}
    with promoted.connect() as conn:
        last = decision_history(conn, "churn")[-1]
        assert latest_rollout(conn, "churn").stage == "rolled_back"
    assert last.action == "rollback" and last.applied_at is not None
    assert last.reasons == ["forced rollback by alice (cli): conversion dropped after promotion"]
    again = _run("rollback", "--model", "churn", "--reason", "twice")
    assert again.exit_code == 1 and "already rolled back" in again.output


def test_rollback_after_teardown_is_refused_with_the_reason(promoted):
    assert _teardown(PROMOTED + dt.timedelta(days=4))[0] == 0
    out = _run("rollback", "--model", "churn", "--reason", "too late")
    assert out.exit_code == 1
    assert "torn down on 2026-07-08" in out.output and "inactive since 2026-07-04" in out.output
    assert "rollout start --model churn --stable v2 --candidate v1" in out.output
    assert _routes(promoted) == {"v2": ("stable", 100.0), "v1": ("retired", 0.0)}


def test_rollback_from_canary_sends_the_candidate_to_zero(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", db_url)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        rollout = start_rollout(conn, "churn", "v1", "v2", Policy(), actor="test")
        promote(conn, rollout, PROMOTED, ("shadow", 0), ("canary", 20))
    assert _run("rollback", "--model", "churn", "--reason", "").exit_code != 0
    out = _run("rollback", "--model", "churn", "--reason", "pager went off")
    assert out.exit_code == 0, out.output
    assert "ROLLBACK (forced) canary 20% -> rolled_back 0%" in out.output
    assert _routes(engine) == {"v1": ("stable", 100.0), "v2": ("inactive", 0.0)}
    engine.dispose()


def test_log_retention_drops_whole_day_partitions(pg_url, tmp_path, monkeypatch):
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", pg_url)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.setenv("ROLLOUT_LOG_RETENTION_DAYS", "2")
    engine = make_engine(pg_url)
    days = [PROMOTED - dt.timedelta(days=k) for k in range(4)]
    ensure_day_partitions(engine, days)
    for day in days:
        write_predictions(engine, log_day("churn", day, "v1", "v2", requests=10))
    code, out = _teardown(PROMOTED)
    assert code == 0
    with engine.connect() as conn:
        names = existing_partitions(conn, "prediction_log")
        by_day = dict(conn.execute(sa.text(
            "SELECT date(ts AT TIME ZONE 'UTC'), count(*) FROM prediction_log GROUP BY 1")).all())
    assert "prediction_log_p20260701" not in names and "prediction_log_p20260702" in names
    assert sorted(by_day) == [dt.date(2026, 7, 2), dt.date(2026, 7, 3), dt.date(2026, 7, 4)]
    engine.dispose()
