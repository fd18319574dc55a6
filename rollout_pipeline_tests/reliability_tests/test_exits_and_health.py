"""Issue #22, probes 7 and 8 (serving side): health and exit statuses as the README documents them.

Each test names what the probe saw before. The HTTP tests run a real uvicorn server on 127.0.0.1; the CLI
tests run the console commands in-process (click's runner), on SQLite and, where it matters, PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import json
import threading
import urllib.error
import urllib.request

import dagster as dg
import pytest
import uvicorn
from click.testing import CliRunner

from rollout_pipeline.cli import cli
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.domain.records import FeedbackRow
from rollout_pipeline.serving.app import ServeSettings, create_app
from rollout_pipeline.serving.commands import is_loopback, serve
from rollout_pipeline.serving.router import Router
from rollout_pipeline.serving.writer import LogWriter
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.logs import write_predictions
from rollout_pipeline.store.rollouts import start_rollout
from rollout_pipeline_tests import postgres
from rollout_pipeline_tests.factories import log_day
from rollout_pipeline_tests.factories import promoted as promote
from rollout_pipeline_tests.serving_tests.conftest import closed_port, count, run_server, set_routing

DAY = dt.date(2026, 11, 28)
NOW = dt.datetime(2026, 3, 15, 12, 0, tzinfo=dt.UTC)


def _run(*args):
    return CliRunner().invoke(cli, list(args))


def _error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.delenv("ROLLOUT_DATABASE_URL", raising=False)
    return tmp_path


# --- the HTTP server -----------------------------------------------------------------------------


def _call(method, url, data=None, headers=None):
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def http_server(sqlite_url, tmp_path):
    engine = make_engine(sqlite_url)
    set_routing(engine, "m", 100)  # the candidate serves: its failure is the answer

    def fails_quoting_its_input(features):
        raise ValueError(f"X has 3 features, expecting 4: {features!r}")

    router = Router(engine, "m", {"v1": lambda f: 0.0, "v2": fails_quoting_its_input}, spill_dir=tmp_path / "m",
                    refresh_seconds=None)
    feedback = LogWriter(engine, tmp_path / "fb", kind="feedback", flush_seconds=0.02)
    url, stop = run_server(create_app({"m": router}, feedback_writer=feedback,
                                   settings=ServeSettings(max_body_bytes=4_096), clock=lambda: NOW))
    yield url, engine, feedback
    stop()
    engine.dispose()


def test_health_answers_503_while_degraded(http_server):
    """Was: 200 with "degraded" in the body, so compose's healthcheck (urlopen) never flagged it."""
    url, _engine, feedback = http_server
    status, health = _call("GET", f"{url}/health")
    assert (status, health["status"]) == (200, "ok")
    feedback.submit(FeedbackRow("c", NOW, "m", "complaint", 1.0, "nul\x00"))  # the store refuses it: set aside
    assert feedback.flush(10)
    status, health = _call("GET", f"{url}/health")
    assert (status, health["status"]) == (503, "degraded")
    with pytest.raises(urllib.error.HTTPError):  # what docker/compose.yaml's healthcheck runs
        urllib.request.urlopen(f"{url}/health", timeout=5)


@pytest.mark.parametrize("path", ["/predict/m", "/feedback/m", "/predict/nope"])
def test_an_oversized_body_sent_with_connection_close_gets_its_answer_not_a_reset(http_server, path):
    """Python's urllib sends the whole body, then reads: the server must read (and drop) it before answering.
    Was: "Connection reset by peer" instead of the 413 (and the same for a 404 with a large body)."""
    url, engine, _feedback = http_server
    for size in (10_000, 20_000_000):
        status, answer = _call("POST", url + path, data=b"x" * size, headers={"Connection": "close"})
        expected = 404 if path.endswith("nope") else 413
        assert status == expected, (size, answer)
        assert list(answer)[0] == "error" and "xxxx" not in json.dumps(answer)
    assert count(engine, "m") == 0


def test_a_failing_model_answers_500_without_echoing_its_input(http_server):
    """Was: a model failure (wrong feature shape) answered 500 echoing ~200 characters of the input."""
    url, _engine, _feedback = http_server
    status, answer = _call("POST", f"{url}/predict/m",
                           data=json.dumps({"features": ["SECRET-FEATURE-VALUE"] * 3}).encode())
    assert status == 500 and answer["error"] == "the model failed (ValueError)", answer
    assert "SECRET" not in json.dumps(answer) and answer["correlation_id"] and answer["variant"] == "v2"


def test_serve_on_a_non_loopback_host_without_a_token_refuses_to_start(sqlite_url, tmp_path, monkeypatch):
    """Was: started on 0.0.0.0 printing only "authentication: none". Now refused unless --insecure (the server
    itself is not started here: nothing may listen beyond 127.0.0.1 on this machine; uvicorn.run is replaced)."""
    engine = make_engine(sqlite_url)
    set_routing(engine, "m", 0, shadow=True)
    engine.dispose()
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("ROLLOUT_SERVE_TOKEN", raising=False)
    started = []

    def run(app, **kwargs):  # instead of listening: start and stop the app (its shutdown closes the routers)
        started.append(kwargs)

        async def cycle():
            async with app.router.lifespan_context(app):
                pass

        asyncio.run(cycle())

    monkeypatch.setattr(uvicorn, "run", run)
    registry = ["--registry", "rollout_pipeline_tests.reliability_tests.test_exits_and_health:REGISTRY"]

    def serve_(*args):
        monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / f"state-{len(started)}-{args}"))  # own spill folder
        return CliRunner().invoke(serve, [*args, *registry])

    refused = serve_("--host", "0.0.0.0")
    assert refused.exit_code == 1 and not started
    assert "refusing to serve on 0.0.0.0 without authentication: set ROLLOUT_SERVE_TOKEN" in refused.output
    insecure = serve_("--host", "0.0.0.0", "--insecure")
    assert insecure.exit_code == 0 and started[-1]["host"] == "0.0.0.0", insecure.output
    assert "--insecure: anyone reaching 0.0.0.0:8000 may call it" in insecure.output
    monkeypatch.setenv("ROLLOUT_SERVE_TOKEN", "t0ken")
    tokened = serve_("--host", "0.0.0.0")
    assert tokened.exit_code == 0, tokened.output
    assert "bearer token required" in tokened.output and "t0ken" not in tokened.output
    monkeypatch.delenv("ROLLOUT_SERVE_TOKEN")
    assert serve_("--host", "127.0.0.1").exit_code == 0 and len(started) == 3
    assert [is_loopback(h) for h in ("localhost", "127.0.0.2", "::1", "[::1]", "0.0.0.0", "10.0.0.1", "db")] == [
        True, True, True, True, False, False, False]


REGISTRY = {"m": {"v1": lambda f: 1.0, "v2": lambda f: 1.0}}


# --- the CLI's exit statuses ---------------------------------------------------------------------

@pytest.mark.parametrize("command", [["status"], ["decide", "--model", "m", "--date", "2026-11-28"],
                                     ["history", "--model", "m"]])
def test_verbose_with_an_unreachable_database_is_exit_3_with_the_traceback_and_the_line(cli_env, monkeypatch,
                                                                                        command):
    """Was: `--verbose` re-raised: exit 1 and a bare traceback, where the README's table says 3."""
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", f"postgresql://postgres:pw@127.0.0.1:{closed_port()}/x")
    quiet = _run(*command)
    verbose = _run("--verbose", *command)
    assert quiet.exit_code == verbose.exit_code == 3, (quiet.output, verbose.output)
    assert "Traceback" not in quiet.stderr and "Traceback" in verbose.stderr
    assert _error_lines(verbose) == _error_lines(quiet) and "cannot connect to the database" in _error_lines(quiet)[0]
    assert "pw" not in verbose.stderr.replace("pwd", "")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("command", [
    ["rollout", "start", "--model", "m", "--stable", "v1", "--candidate", "v2"],
    ["decide", "--model", "m", "--date", "2026-11-28"], ["status"], ["history", "--model", "m"],
    ["approve", "--model", "m", "--date", "2026-11-28", "--reason", "ok"],
    ["rollback", "--model", "m", "--reason", "r"],
])
def test_a_never_migrated_database_is_refused_saying_to_run_init_db(cli_env, monkeypatch, request, backend, command):
    """Was: exit 4 "internal error" (PostgreSQL) or exit 3 "cannot connect to the database: no such table"
    (SQLite)."""
    if backend == "postgresql":
        server = request.getfixturevalue("pg_server")
        url = postgres.create_database(server)
        request.addfinalizer(lambda: postgres.drop_database(server, url))
        monkeypatch.setenv("ROLLOUT_DATABASE_URL", url)
    result = _run(*command)
    assert result.exit_code == 1, result.output
    (line,) = _error_lines(result)
    assert "was never migrated: run `rollout-pipeline init-db`" in line, line
    assert _run("init-db").exit_code == 0
    assert _run("status").exit_code == 0


def test_an_unusable_state_folder_is_a_refusal_naming_it(cli_env, monkeypatch):
    """Was: exit 4 "internal error: NotADirectoryError"."""
    blocker = cli_env / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(blocker / "state"))
    monkeypatch.delenv("DAGSTER_HOME")
    for command in (["status"], ["init-db"], ["decide", "--model", "m", "--date", "2026-11-28"]):
        result = _run(*command)
        assert result.exit_code == 1, result.output
        (line,) = _error_lines(result)
        assert f"cannot use {blocker / 'state'}" in line and "ROLLOUT_STATE_DIR" in line, line


def test_simulate_refuses_a_request_count_past_its_bound(cli_env):
    """Was: `simulate --requests 1000000000000` ran out of memory (exit 4 MemoryError)."""
    result = _run("simulate", "--model", "m", "--date", "2026-11-28", "--requests", "1000000000000")
    assert result.exit_code == 2 and "1000000000000 is not in the range 0<=x<=1000000" in result.output


def test_a_refused_older_day_adds_no_partition(cli_env):
    """Was: deciding a day older than the latest decided one was refused inside the run, after the day had been
    added as a Dagster partition (a phantom day in the UI)."""
    assert _run("init-db").exit_code == 0
    assert _run("rollout", "start", "--model", "m", "--stable", "v1", "--candidate", "v2").exit_code == 0
    engine = make_engine(f"sqlite:///{cli_env / 'state' / 'rollout.db'}")
    write_predictions(engine, log_day("m", DAY, "v1", "v2", requests=200))
    engine.dispose()
    assert _run("decide", "--model", "m", "--date", DAY.isoformat()).exit_code == 0
    older = (DAY - dt.timedelta(days=3)).isoformat()
    refused = _run("decide", "--model", "m", "--date", older)
    assert refused.exit_code == 1 and "already decided" in _error_lines(refused)[0]
    with dg.DagsterInstance.get() as instance:
        days = instance.get_dynamic_partitions("days")
    assert days == [DAY.isoformat()], days
    forced = _run("decide", "--model", "m", "--date", older, "--force", "hold", "--reason", "audit an old day")
    assert forced.exit_code == 0, forced.output


class _Answers500(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_teardown_webhook_answering_500_exits_3(db_url, cli_env, monkeypatch):
    """Was: exit 1 (a refusal), where the README's table says 3 (the action's system failed). A misconfigured
    action stays exit 1 (defs_tests/test_retention_and_rollback.py::test_a_misconfigured_action_fails_at_once_...)."""
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", db_url)
    monkeypatch.setenv("ROLLOUT_TEARDOWN_ATTEMPTS", "1")
    promoted = dt.date(2026, 7, 4)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        rollout = start_rollout(conn, "churn", "v1", "v2", Policy(retention_days=1), actor="test")
        promote(conn, rollout, promoted, ("canary", 50), ("production", 100))
    engine.dispose()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answers500)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("ROLLOUT_TEARDOWN_WEBHOOK", f"http://127.0.0.1:{server.server_address[1]}/teardown")
        result = _run("teardown", "--date", (promoted + dt.timedelta(days=2)).isoformat())
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 3, result.output
    (line,) = _error_lines(result)
    assert "churn/v1" in line and "500" in line, line
