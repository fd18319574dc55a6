"""Notifications of decisions, against a local HTTP server on 127.0.0.1.

Covers: one generic JSON message per decision and one Slack-format message when that URL is set (action,
reasons, stage before -> after, links to the decision partition's Dagster page, the run and the report); a
webhook that cannot be reached or answers 500 is retried (zero pauses here), never fails the decision, is
logged and recorded in the decision's metadata; the secret path of a Slack URL is never printed.
"""

import datetime as dt
import getpass
import http.server
import json
import socket
import threading

import dagster as dg
import pytest

from rollout_pipeline.definitions import defs
from rollout_pipeline.defs.assets import decision
from rollout_pipeline.defs.partitions import register_partitions
from rollout_pipeline.defs.resources import Notifier, StoreResource, notifier_resource, resources_from_environment
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.notify import deliver, links, safe_target, slack_message
from rollout_pipeline.store import rollouts as repo
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.logs import write_predictions
from rollout_pipeline_tests.factories import log_day

D1 = dt.date(2026, 6, 1)
SECRET = "T000/B000/XsEcReTsLaCk"


class _Hook:
    """A local webhook: records every POST; answers 500 on paths starting with /fail, else 200."""

    def __init__(self):
        self.received: list[tuple[str, dict]] = []
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.received.append((self.path, body))
                self.send_response(500 if self.path.startswith("/fail") else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed when the block ends: nothing listens there


@pytest.fixture
def store(sqlite_url, monkeypatch):
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", sqlite_url)
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        repo.start_rollout(conn, "m", "v1", "v2", Policy(), actor="test")
    yield sqlite_url, engine
    engine.dispose()


def _run(url: str, instance, notifier: Notifier, *, force: str | None = None) -> dg.ExecuteInProcessResult:
    register_partitions(instance, [D1.isoformat()], ["m"])
    # Bound in Definitions, as the CLI's runner does: a run selecting the decision alone refuses overrides.
    resources = {**resources_from_environment(), "store": StoreResource(database_url=url), "notifier": notifier}
    job = dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=defs.jobs,
                         resources=resources).resolve_job_def("daily_analysis")
    config = {"force": force, "reason": "ops said so" if force else None}
    return job.execute_in_process(
        run_config={"ops": {"decision": {"config": config}}}, instance=instance, partition_key=f"{D1}|m",
        raise_on_error=False,
        asset_selection=[decision.key] if force else None, tags={"rollout/actor": "test"})


def _decision_metadata(result) -> dict:
    (materialization,) = result.asset_materializations_for_node("decision")
    return {k: v.value for k, v in materialization.metadata.items()}


def test_a_decision_posts_one_json_message_and_one_slack_message(store, caplog):
    url, engine = store
    write_predictions(engine, log_day("m", D1, "v1", "v2", requests=1200))
    with _Hook() as hook, dg.instance_for_test() as instance:
        notifier = Notifier(webhook_url=hook.url("/hook"), slack_webhook_url=hook.url(f"/services/{SECRET}"),
                            ui_base_url="http://dagster.example:3000/", backoff_seconds=0)
        result = _run(url, instance, notifier)
        assert result.success
        paths = [p for p, _ in hook.received]
    assert paths == ["/hook", f"/services/{SECRET}"]  # one each, nothing retried
    (_, message), (_, slack) = hook.received
    with engine.connect() as conn:
        (record,) = repo.decision_history(conn, "m")
    assert message["event"] == "decision" and message["action"] == record.action == "promote"
    assert message["model"] == "m" and message["date"] == D1.isoformat() and message["applied"] is True
    assert message["from"] == {"stage": "shadow", "canary_percent": 0}
    assert message["to"] == {"stage": "canary", "canary_percent": 1}
    assert message["reasons"] == record.reasons and message["decision_id"] == record.id
    # The partition's own view (a bare asset URL opens whichever partition was materialized last).
    partition_page = "http://dagster.example:3000/assets/decision?view=partitions&partition=2026-06-01%7Cm"
    assert message["links"]["dagster"] == partition_page
    assert message["links"]["run"] == f"http://dagster.example:3000/runs/{result.run_id}"
    assert message["links"]["report"] == "http://dagster.example:3000/reports/m-2026-06-01.html"  # served by the UI
    assert slack["text"] == "m 2026-06-01: PROMOTE shadow 0% → canary 1%"
    text = slack["blocks"][0]["text"]["text"]
    assert "• every gate this step needs passed (judge score 100)\n• evidence: 1 night at shadow" in text
    assert text.endswith("• promote to canary 1%")
    # Slack's mrkdwn escapes & in a link; Slack turns it back into the same URL.
    assert f"<{partition_page.replace('&', '&amp;')}|Dagster UI>" in slack["blocks"][1]["elements"][0]["text"]
    meta = _decision_metadata(result)
    assert meta["notifications"].startswith("webhook: sent after 1 attempt(s): HTTP 200")
    assert SECRET not in caplog.text and SECRET not in meta["notifications"]


def test_an_unreachable_or_failing_webhook_never_fails_the_decision_and_is_logged(store, caplog):
    url, engine = store
    caplog.set_level("INFO")
    with _Hook() as hook, dg.instance_for_test() as instance:
        notifier = Notifier(webhook_url=f"http://127.0.0.1:{_closed_port()}/hook",
                            slack_webhook_url=hook.url(f"/fail/{SECRET}"), attempts=3, backoff_seconds=0)
        result = _run(url, instance, notifier, force="hold")
        tries = [p for p, _ in hook.received]
        logs = repr(instance.all_logs(result.run_id))
    assert result.success  # the decision is stored and applied all the same
    with engine.connect() as conn:
        (record,) = repo.decision_history(conn, "m")
    assert record.action == "hold" and record.forced and record.applied_at is not None
    assert tries == [f"/fail/{SECRET}"] * 3  # retried, then given up
    meta = _decision_metadata(result)
    assert "webhook: FAILED after 3 attempt(s)" in meta["notifications"]
    assert "slack: FAILED after 3 attempt(s)" in meta["notifications"] and "HTTP 500" in meta["notifications"]
    assert "notification webhook: FAILED" in logs and "notification slack: FAILED" in logs
    assert SECRET not in logs + caplog.text + meta["notifications"]


def test_nothing_is_configured_by_default_and_the_urls_are_env_vars(monkeypatch):
    for name in ("ROLLOUT_NOTIFY_WEBHOOK", "ROLLOUT_NOTIFY_SLACK_WEBHOOK", "ROLLOUT_UI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert not notifier_resource().configured
    monkeypatch.setenv("ROLLOUT_NOTIFY_SLACK_WEBHOOK", "https://hooks.slack.example/services/x")
    wired = notifier_resource()
    assert isinstance(wired.slack_webhook_url, dg.EnvVar)  # the UI shows the variable's name, not the URL
    monkeypatch.setenv("ROLLOUT_NOTIFY_SLACK_WEBHOOK", "https://hooks.slack.example/services/y")
    with dg.build_resources({"n": wired}) as resources:
        assert resources.n.slack_webhook_url.endswith("/y") and resources.n.configured


@pytest.mark.parametrize("url, shown", [
    (f"https://hooks.slack.com/services/{SECRET}", "https://hooks.slack.com/…"),
    ("https://user:pw@example.org:8443/p?token=abc", "https://example.org:8443/…"),
    ("not a url", "?://?/…"),
])
def test_only_scheme_and_host_of_a_url_are_ever_shown(url, shown):
    assert safe_target(url) == shown


def test_a_bad_url_is_a_configuration_error_without_its_path_and_not_tried():
    bad = deliver("slack", f"ftp://example.org/services/{SECRET}", {}, sleep=lambda s: None)
    assert not bad.ok and bad.attempts == 0 and "configuration error" in bad.detail and SECRET not in bad.detail
    # credentials over plain http to another machine are refused before any connection; the path is not shown
    creds = deliver("webhook", f"http://u:p@example.org/services/{SECRET}", {}, sleep=lambda s: None)
    assert not creds.ok and creds.attempts == 0 and "https" in creds.detail and SECRET not in creds.detail


def test_the_slack_message_escapes_its_text_and_links_the_report_the_ui_serves():
    message = {"event": "decision", "model": "m", "date": "2026-06-01", "action": "rollback", "forced": False,
               "reasons": ["candidate p99 412 ms > limit 250 ms <b>&"], "applied": False,
               "from": {"stage": "canary", "canary_percent": 20}, "to": {"stage": "rolled_back", "canary_percent": 0},
               "links": links("m", "2026-06-01", run_id="r1", ui_base_url="", report_path="/s/reports/m.html")}
    slack = slack_message(message)
    assert slack["text"] == "m 2026-06-01: ROLLBACK canary 20% → rolled_back 0% (not applied yet)"
    assert "• candidate p99 412 ms &gt; limit 250 ms &lt;b&gt;&amp;" in slack["blocks"][0]["text"]["text"]
    context = slack["blocks"][1]["elements"][0]["text"]
    assert "<http://127.0.0.1:3000/runs/r1|run>" in context
    assert "<http://127.0.0.1:3000/reports/m-2026-06-01.html|report>" in context


def test_a_manual_rollback_from_the_cli_posts_one_message(store, monkeypatch):
    from click.testing import CliRunner

    from rollout_pipeline.cli import cli

    url, engine = store
    with _Hook() as hook:
        monkeypatch.setenv("ROLLOUT_NOTIFY_WEBHOOK", hook.url("/hook"))
        result = CliRunner().invoke(cli, ["rollback", "--model", "m", "--reason", "pager", "--json"])
        received = list(hook.received)
    assert result.exit_code == 0, result.output
    ((path, message),) = received
    assert path == "/hook" and message["action"] == "rollback" and message["forced"] is True
    assert message["to"] == {"stage": "rolled_back", "canary_percent": 0} and message["actor"] == f"{getpass.getuser()} (cli)"
    with engine.connect() as conn:
        (record,) = repo.decision_history(conn, "m")
    assert record.action == "rollback" and message["decision_id"] == record.id


def test_a_promotion_waiting_for_approval_says_so():
    """A pending promotion is not applied: the message says a person must approve or reject it."""
    from rollout_pipeline.notify import decision_message, slack_message

    decision = {"action": "promote", "forced": False, "reasons": ["judge score 100 >= pass 95"], "applied": False,
                "from": {"stage": "shadow", "canary_percent": 0}, "to": {"stage": "canary", "canary_percent": 1},
                "decision_id": 7, "approval": "pending"}
    message = decision_message(decision, model="m", day="2026-06-10", actor="schedule", run_id="r", links_={})
    assert message["approval"] == "pending" and message["applied"] is False
    assert "waiting for approval" in slack_message(message)["text"]
    done = decision_message({**decision, "approval": None, "applied": True}, model="m", day="2026-06-10",
                            actor="schedule", run_id="r", links_={})
    assert "waiting" not in slack_message(done)["text"]
