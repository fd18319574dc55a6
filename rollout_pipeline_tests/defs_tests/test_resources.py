"""Dagster resources from the environment, and the retention job with a real webhook on 127.0.0.1.

Covers: ``EnvVar`` fields resolved per run by Dagster's own resource machinery
(``build_resources``), the documented defaults when a variable is unset, the
teardown action chosen by ROLLOUT_TEARDOWN_COMMAND / _WEBHOOK, and a teardown
through a local HTTP server: the URL's credentials arrive as Basic auth and the
password is found nowhere in logs, the event log, metadata or the teardowns table;
a 401 is not retried, a 503 is.
"""

import base64
import datetime as dt
import http.server
import json
import sys
import threading
from pathlib import Path

import dagster as dg
import pytest

from rollout_pipeline.defs.resources import (
    CommandTeardown,
    Notifier,
    RecordOnlyTeardown,
    StoreResource,
    WebhookTeardown,
    resources_from_environment,
    store_resource,
    teardown_action_resource,
)
from rollout_pipeline.defs.retention import retention
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.rollouts import start_rollout
from rollout_pipeline.store.routing import read_routing
from rollout_pipeline.store.teardown import teardown_records
from rollout_pipeline_tests.factories import promoted as promote

PROMOTED = dt.date(2026, 7, 4)
DUE = PROMOTED + dt.timedelta(days=4)  # retention 3 days: v1 is due for teardown
PASSWORD = "pa55-w0rd-7Qz"
TEARDOWN_ENV = ("ROLLOUT_TEARDOWN_COMMAND", "ROLLOUT_TEARDOWN_WEBHOOK", "ROLLOUT_TEARDOWN_ATTEMPTS")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in (*TEARDOWN_ENV, "ROLLOUT_DATABASE_URL", "ROLLOUT_LOG_RETENTION_DAYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
    return monkeypatch


def _resolved(resource):
    with dg.build_resources({"r": resource}) as resources:
        return resources.r


def test_the_store_is_the_embedded_file_when_the_url_is_unset_or_empty(clean_env, tmp_path):
    embedded = f"sqlite:///{tmp_path / 'state' / 'rollout.db'}"
    assert _resolved(store_resource()).url() == embedded
    clean_env.setenv("ROLLOUT_DATABASE_URL", "")
    assert _resolved(store_resource()).url() == embedded


def test_the_store_url_is_an_env_var_resolved_when_the_run_starts(clean_env, tmp_path):
    clean_env.setenv("ROLLOUT_DATABASE_URL", "sqlite:///first.db")
    wired = store_resource()  # as definitions.py does when the code location loads
    assert isinstance(wired.database_url, dg.EnvVar)
    clean_env.setenv("ROLLOUT_DATABASE_URL", f"sqlite:///{tmp_path / 'second.db'}")
    assert _resolved(wired).url() == f"sqlite:///{tmp_path / 'second.db'}"


def test_log_retention_days_come_from_their_env_var(clean_env):
    assert _resolved(store_resource()).log_retention_days is None  # unset: keep every log partition
    clean_env.setenv("ROLLOUT_LOG_RETENTION_DAYS", "30")
    wired = store_resource()
    clean_env.setenv("ROLLOUT_LOG_RETENTION_DAYS", "7")  # resolved when the run starts
    assert _resolved(wired).log_retention_days == 7


def test_the_store_never_reads_the_environment_itself(clean_env):
    clean_env.setenv("ROLLOUT_DATABASE_URL", "sqlite:///from-env.db")
    assert _resolved(StoreResource(database_url="sqlite:///given.db")).url() == "sqlite:///given.db"
    fallback = StoreResource(database_url="", state_dir="/srv/rollout")
    assert _resolved(fallback).url() == "sqlite:////srv/rollout/rollout.db"


def test_an_env_var_shows_its_name_never_its_value_in_the_resource_config(clean_env):
    clean_env.setenv("ROLLOUT_TEARDOWN_WEBHOOK", f"https://ops:{PASSWORD}@hooks.example.com/scale")
    clean_env.setenv("ROLLOUT_DATABASE_URL", f"postgresql://app:{PASSWORD}@db.example.com/rollout")
    shown = {key: r.get_resource_definition().config_schema.as_field().default_value
             for key, r in resources_from_environment().items()}
    assert shown["teardown_action"]["url"] == {"env": "ROLLOUT_TEARDOWN_WEBHOOK"}
    assert shown["store"]["database_url"] == {"env": "ROLLOUT_DATABASE_URL"}
    assert PASSWORD not in repr(shown)


@pytest.mark.parametrize(("env", "kind", "describes"), [
    ({}, RecordOnlyTeardown, "none (recorded only)"),
    ({"ROLLOUT_TEARDOWN_COMMAND": ""}, RecordOnlyTeardown, "none (recorded only)"),
    ({"ROLLOUT_TEARDOWN_WEBHOOK": f"https://ops:{PASSWORD}@hooks.example.com/scale?token=t"}, WebhookTeardown,
     "webhook: POST https://hooks.example.com/scale"),
    ({"ROLLOUT_TEARDOWN_COMMAND": f"{sys.executable} scale.py {{model}}"}, CommandTeardown,
     f"command: {sys.executable}"),
    ({"ROLLOUT_TEARDOWN_COMMAND": f"{sys.executable} scale.py", "ROLLOUT_TEARDOWN_WEBHOOK": "https://h/x"},
     CommandTeardown, f"command: {sys.executable}"),  # the command wins, as documented
])
def test_the_teardown_action_is_chosen_from_the_environment(clean_env, env, kind, describes):
    for name, value in env.items():
        clean_env.setenv(name, value)
    action = _resolved(teardown_action_resource())
    assert type(action) is kind and action.describe() == describes
    assert action.attempts == 3


def test_teardown_attempts_come_from_their_env_var(clean_env):
    clean_env.setenv("ROLLOUT_TEARDOWN_COMMAND", f"{sys.executable} scale.py")
    clean_env.setenv("ROLLOUT_TEARDOWN_ATTEMPTS", "5")
    assert _resolved(teardown_action_resource()).attempts == 5


# --- the retention job against a webhook on 127.0.0.1 ------------------------------------------


class _Hook:
    """A local HTTP server that answers each POST with the next status, recording what it got."""

    def __init__(self, *statuses: int):
        self.statuses = list(statuses)
        self.requests: list[dict] = []
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.requests.append({"path": self.path, "authorization": self.headers.get("Authorization"),
                                      "body": body})
                self.send_response(hook.statuses.pop(0))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, userinfo: str = f"ops:{PASSWORD}") -> str:
        return f"http://{userinfo}@127.0.0.1:{self.server.server_port}/scale?team=ml"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def promoted_store(sqlite_url):
    """churn: v2 promoted on PROMOTED, v1 inactive since then with a 3-day retention window."""
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        rollout = start_rollout(conn, "churn", "v1", "v2", Policy(retention_days=3), actor="test")
        promote(conn, rollout, PROMOTED - dt.timedelta(days=1), ("shadow", 0), ("canary", 50))
        promote(conn, rollout, PROMOTED, ("canary", 50), ("production", 100))
    yield sqlite_url, engine
    engine.dispose()


def _retention(url: str, instance, attempts: int = 3) -> dg.ExecuteInProcessResult:
    action = WebhookTeardown(url=dg.EnvVar("ROLLOUT_TEARDOWN_WEBHOOK"), attempts=attempts, backoff_seconds=0)
    resources = {"store": StoreResource(database_url=url), "teardown_action": action, "notifier": Notifier()}
    return retention.execute_in_process(
        run_config={"ops": {"retire_inactive_variants": {"config": {"date": DUE.isoformat()}}}},
        resources=resources, instance=instance, raise_on_error=False)


def _everything_recorded(instance, result, engine, caplog, capfd) -> str:
    """Every place a secret could leak: our logs, Dagster's event log and metadata, the run, the table."""
    with engine.connect() as conn:
        records = teardown_records(conn, model="churn")
    run = instance.get_run_by_id(result.run_id)
    out, err = capfd.readouterr()
    return "\n".join([caplog.text, out, err, repr(instance.all_logs(result.run_id)), repr(run.run_config),
                      repr(run.tags), repr(records)])


def _routes(engine) -> dict:
    with engine.connect() as conn:
        return {r.variant: r.role for r in read_routing(conn, "churn").routes}


def test_webhook_credentials_go_as_basic_auth_and_the_password_is_never_recorded(promoted_store, clean_env, caplog,
                                                                                  capfd):
    url, engine = promoted_store
    caplog.set_level("DEBUG")
    with _Hook(204) as hook, dg.instance_for_test() as instance:
        clean_env.setenv("ROLLOUT_TEARDOWN_WEBHOOK", hook.url(userinfo=f"ops%40corp:{PASSWORD}"))
        result = _retention(url, instance)
        seen = _everything_recorded(instance, result, engine, caplog, capfd)
    assert result.success
    (request,) = hook.requests
    assert request["authorization"] == "Basic " + base64.b64encode(f"ops@corp:{PASSWORD}".encode()).decode()
    assert request["path"] == "/scale?team=ml"
    assert request["body"] == {"model": "churn", "variant": "v1", "day": DUE.isoformat(), "action": "teardown"}
    assert _routes(engine)["v1"] == "retired"
    assert "webhook: POST http://127.0.0.1:" in seen  # the action is named...
    assert PASSWORD not in seen and "ops%40corp" not in seen and "team=ml" not in seen  # ...never its secrets


def test_a_teardown_posts_one_notification_and_a_dead_webhook_does_not_fail_it(promoted_store, clean_env):
    """Every teardown is notified (generic JSON webhook); an unreachable notification webhook only logs."""
    url, engine = promoted_store
    config = {"ops": {"retire_inactive_variants": {"config": {"date": DUE.isoformat()}}}}
    with _Hook(204) as hook, dg.instance_for_test() as instance:
        result = retention.execute_in_process(
            run_config=config, instance=instance, raise_on_error=False,
            resources={"store": StoreResource(database_url=url), "teardown_action": RecordOnlyTeardown(),
                       "notifier": Notifier(webhook_url=hook.url(userinfo="n:x"), backoff_seconds=0)})
    assert result.success
    (request,) = hook.requests
    assert request["body"]["event"] == "teardown" and request["body"]["model"] == "churn"
    assert request["body"]["variant"] == "v1" and request["body"]["status"] == "done"
    assert _routes(engine)["v1"] == "retired"


def test_an_unreachable_notification_webhook_never_fails_the_teardown(promoted_store, clean_env):
    url, engine = promoted_store
    config = {"ops": {"retire_inactive_variants": {"config": {"date": DUE.isoformat()}}}}
    with dg.instance_for_test() as instance:
        result = retention.execute_in_process(
            run_config=config, instance=instance, raise_on_error=False,
            resources={"store": StoreResource(database_url=url), "teardown_action": RecordOnlyTeardown(),
                       "notifier": Notifier(webhook_url="http://127.0.0.1:9/hook", attempts=1, backoff_seconds=0)})
        warnings = [e.message for e in instance.all_logs(result.run_id) if "notification" in (e.message or "")]
    assert result.success and _routes(engine)["v1"] == "retired"
    assert warnings and "127.0.0.1:9" in " ".join(warnings) and "/hook" not in " ".join(warnings)


def test_a_401_is_a_configuration_error_not_retried_and_said_in_one_line(promoted_store, clean_env, caplog, capfd):
    url, engine = promoted_store
    with _Hook(401, 401, 401, 401) as hook, dg.instance_for_test() as instance:
        clean_env.setenv("ROLLOUT_TEARDOWN_WEBHOOK", hook.url(userinfo=f"ops:{PASSWORD}"))
        result = _retention(url, instance, attempts=4)
        seen = _everything_recorded(instance, result, engine, caplog, capfd)
    assert not result.success and len(hook.requests) == 1
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.error.message.strip()
    assert "\n" not in message and "answered HTTP 401" in message and "configuration error" in message
    assert failure.step_failure_data.user_failure_data is not None  # a dg.Failure: Dagster does not retry it
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    with engine.connect() as conn:
        assert [(t.status, t.attempts) for t in teardown_records(conn, model="churn")] == [("failed", 1)]
    assert _routes(engine)["v1"] == "inactive"
    assert PASSWORD not in seen


def test_a_503_is_retried_by_the_action_then_succeeds(promoted_store, clean_env, caplog, capfd):
    url, engine = promoted_store
    with _Hook(503, 204) as hook, dg.instance_for_test() as instance:
        clean_env.setenv("ROLLOUT_TEARDOWN_WEBHOOK", hook.url())
        result = _retention(url, instance)
        seen = _everything_recorded(instance, result, engine, caplog, capfd)
    assert result.success and len(hook.requests) == 2
    assert all(r["authorization"] for r in hook.requests)
    with engine.connect() as conn:
        assert [(t.status, t.attempts, t.detail) for t in teardown_records(conn, model="churn")] == [
            ("done", 2, "HTTP 204")]
    assert "answered HTTP 503" in seen and PASSWORD not in seen


def test_the_embedded_default_needs_no_variable_at_all(clean_env, tmp_path):
    """Nothing set: the store is <state>/rollout.db and the action is record-only (the README's defaults)."""
    resources = resources_from_environment()
    assert Path(_resolved(resources["store"]).url().removeprefix("sqlite:///")) == tmp_path / "state" / "rollout.db"
    assert isinstance(_resolved(resources["teardown_action"]), RecordOnlyTeardown)


def test_a_failed_retention_run_is_not_retried_by_dagsters_run_retries(promoted_store, clean_env):
    """The action had its own retries: the daemon's run retries (dagster.yaml) must not run it again."""
    from dagster._daemon.auto_run_reexecution.auto_run_reexecution import should_retry

    url, engine = promoted_store
    with _Hook(503) as hook, dg.instance_for_test(overrides={"run_retries": {"enabled": True,
                                                                              "max_retries": 2}}) as instance:
        clean_env.setenv("ROLLOUT_TEARDOWN_WEBHOOK", hook.url())
        result = _retention(url, instance, attempts=1)
        run = instance.get_run_by_id(result.run_id)
        assert not result.success and len(hook.requests) == 1
        assert not should_retry(run, instance)


def test_a_store_url_that_cannot_work_fails_the_retention_step_once_in_one_line(clean_env):
    """A configuration error of the store is not a transient database error: no RetryPolicy retry, no password."""
    resources = {"store": StoreResource(database_url="mysql://bob:hunter2@db.example.com/rollout"),
                 "teardown_action": RecordOnlyTeardown(), "notifier": Notifier()}
    with dg.instance_for_test() as instance:
        result = retention.execute_in_process(
            run_config={"ops": {"retire_inactive_variants": {"config": {"date": DUE.isoformat()}}}},
            resources=resources, instance=instance, raise_on_error=False)
        logs = repr(instance.all_logs(result.run_id))
    assert not result.success
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.error.message.strip()
    assert "\n" not in message and "unsupported database 'mysql'" in message
    assert "hunter2" not in logs


def test_zero_attempts_is_a_configuration_error_naming_the_variable(clean_env):
    clean_env.setenv("ROLLOUT_TEARDOWN_COMMAND", f"{sys.executable} -c pass")
    clean_env.setenv("ROLLOUT_TEARDOWN_ATTEMPTS", "0")
    result = _resolved(teardown_action_resource()).run("churn", "v1", DUE)
    assert (result.ok, result.attempts, result.config_error) == (False, 0, True)
    assert "ROLLOUT_TEARDOWN_ATTEMPTS must be a whole number >= 1 (got 0)" in result.detail
