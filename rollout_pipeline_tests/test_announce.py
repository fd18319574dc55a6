"""Notifications of decisions made outside a Dagster run are sent by the decision service, never by the CLI.

Covers: a person's verdict (``make_approval``), a manual rollback (``rollback.roll_back``) and a blocked day's
hold (``decisions.hold_blocked_day``), each called directly, without the CLI or Dagster, post one message after
their commit; a hold found recorded already (the CLI's runner, then the run-failure sensor) and a dry run post
nothing; a notifier that raises is a warning and the decision stands; the environment's channels are the
default; no module of ``rollout_pipeline/cli`` speaks to a notifier.
"""

import ast
import dataclasses
import datetime as dt
import logging
from pathlib import Path

import pytest

import rollout_pipeline.cli
from rollout_pipeline.decision_requests import Approval, Nightly
from rollout_pipeline.decisions import announce, hold_blocked_day, make_approval, make_decision
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.notify import Channels, channels_from_environment
from rollout_pipeline.rollback import roll_back
from rollout_pipeline.store import evidence as evidence_store
from rollout_pipeline.store import rollouts as repo
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.logs import write_predictions
from rollout_pipeline.store.summary import collect_day
from rollout_pipeline.validation.suites import LOG_QUALITY, ExpectationOutcome, SuiteResult
from rollout_pipeline_tests.factories import log_day

D = dt.date(2026, 6, 1)
GATED = Policy(min_shadow_days=1, require_approval_for=(1,), approval_expiry_days=3)
PASSED = SuiteResult(LOG_QUALITY, True, (ExpectationOutcome("rows", "rows present", True, False, "ok"),))
FAILED = SuiteResult(LOG_QUALITY, True, (ExpectationOutcome("ids", "correlation ids present", False, False, "3 null"),))


class Recorder:
    """A notifier that keeps what it was asked to post (``announce_decision``, the service's one call)."""

    def __init__(self, fail: bool = False):
        self.calls: list[dict] = []
        self.fail = fail

    def announce_decision(self, decision, *, model, day, actor, run_id, log, report=None) -> str:
        self.calls.append({"decision": decision, "model": model, "day": day, "actor": actor, "run_id": run_id})
        if self.fail:
            raise RuntimeError("the notifier broke")
        return "webhook: sent after 1 attempt(s): HTTP 200"


@pytest.fixture
def store(sqlite_url, monkeypatch):
    for name in ("ROLLOUT_NOTIFY_WEBHOOK", "ROLLOUT_NOTIFY_SLACK_WEBHOOK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", sqlite_url)
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


def _analysed(engine, policy: Policy, suite: SuiteResult, run_id: str = "run-1"):
    """A rollout in shadow and its day D analysed by run ``run_id``: the summary and the log-quality result stored."""
    write_predictions(engine, log_day("m", D, "v1", "v2", requests=600))
    with engine.begin() as conn:
        rollout = repo.start_rollout(conn, "m", "v1", "v2", policy, actor="test")
        summary = collect_day(conn, "m", D, "v1", "v2")
        evidence_id = evidence_store.save_summary(conn, summary, rollout_id=rollout.id, stage="shadow", run_id=run_id)
        evidence_store.save_validation(conn, evidence_id, LOG_QUALITY, suite)


def _history(engine):
    with engine.connect() as conn:
        return repo.decision_history(conn, "m", include_superseded=True)


def test_a_verdict_is_announced_by_the_service_once_after_its_commit(store):
    _analysed(store, GATED, PASSED)
    pending = make_decision(store, Nightly("m", D, "schedule", run_id="run-1", today=D))
    assert pending.record.approval == "pending" and pending.notifications is None  # the asset posts a night's own
    recorder = Recorder()
    outcome = make_approval(store, Approval("m", D, "ana (cli)", "approve", "reviewed", today=D), notifier=recorder)
    (call,) = recorder.calls
    assert call["decision"] == outcome.output() and call["decision"]["approval"] == "approved"
    assert (call["model"], call["day"], call["actor"], call["run_id"]) == ("m", D.isoformat(), "ana (cli)", None)
    assert call["decision"]["applied"] is True and outcome.notifications.startswith("webhook: sent")
    assert _history(store)[-1].id == call["decision"]["decision_id"]  # posted what was committed


def test_a_rollback_is_announced_and_a_broken_notifier_is_a_warning_never_a_failed_rollback(store, caplog):
    with store.begin() as conn:
        repo.start_rollout(conn, "m", "v1", "v2", Policy(), actor="test")
    recorder = Recorder(fail=True)
    with caplog.at_level(logging.WARNING):
        outcome = roll_back(store, "m", "pager", actor="bob (cli)", day=D, notifier=recorder)
    (call,) = recorder.calls
    assert call["decision"]["action"] == "rollback" and call["actor"] == "bob (cli)"
    assert outcome.applied and outcome.notifications == "not sent: the notifier broke"
    assert "not sent: the notifier broke" in caplog.text
    (record,) = _history(store)
    assert record.action == "rollback" and record.applied_at is not None  # stored and applied all the same


def test_a_blocked_day_s_hold_is_announced_once_and_a_dry_run_never(store):
    _analysed(store, Policy(), FAILED, run_id="run-9")
    recorder = Recorder()
    dry = hold_blocked_day(store, "m", D, "run-9", actor="cli", dry_run=True, notifier=recorder)
    assert dry.record.action == "hold" and recorder.calls == [] and _history(store) == []
    held = hold_blocked_day(store, "m", D, "run-9", actor="cli", notifier=recorder)
    (call,) = recorder.calls
    assert call["decision"]["action"] == "hold" and call["run_id"] == "run-9"  # the run's link in the message
    # The run-failure sensor finds the hold the CLI's runner recorded: nothing recorded, nothing posted again.
    again = hold_blocked_day(store, "m", D, "run-9", actor="schedule", notifier=recorder)
    assert again.record.id == held.record.id and len(recorder.calls) == 1 and again.notifications is None
    assert [r.id for r in _history(store)] == [held.record.id]


def test_the_default_notifier_is_the_environment_s_channels(store, monkeypatch):
    assert not channels_from_environment().configured  # nothing set: nothing posted, "none configured"
    with store.begin() as conn:
        repo.start_rollout(conn, "m", "v1", "v2", Policy(), actor="test")
    assert roll_back(store, "m", "pager", actor="bob (cli)", day=D).notifications == "none configured"
    monkeypatch.setenv("ROLLOUT_NOTIFY_WEBHOOK", " https://hooks.example/x ")
    monkeypatch.setenv("ROLLOUT_UI_BASE_URL", "")  # empty is unset, as for the Dagster resource
    assert channels_from_environment() == Channels(webhook_url="https://hooks.example/x")


def test_announce_posts_the_record_s_own_actor_day_and_run(store):
    _analysed(store, Policy(), PASSED)
    outcome = make_decision(store, Nightly("m", D, "schedule", run_id="run-1"))
    recorder = Recorder()
    announced = announce(outcome, recorder)
    assert announced == dataclasses.replace(outcome, notifications="webhook: sent after 1 attempt(s): HTTP 200")
    assert recorder.calls[0]["actor"] == "schedule" and recorder.calls[0]["run_id"] == "run-1"


_NOTIFYING = {"notify", "announce", "announce_decision", "Notifier", "notifier_resource", "Channels",
              "channels_from_environment"}


def _names(node: ast.AST) -> list[str]:
    """The names a node uses: a variable, an attribute, or what an import brings (and from which module)."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        modules = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        return [n.split(".")[-1] for n in [*modules, *(a.name for a in node.names)]]
    return []


def test_no_cli_module_posts_a_notification():
    """The CLI parses, calls one service function and prints: no module of it names a notifier or posts."""
    folder = Path(rollout_pipeline.cli.__file__).parent
    modules = sorted(folder.glob("*.py"))
    found = [f"{path.name}:{node.lineno} {name}" for path in modules
             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             for name in _names(node) if name in _NOTIFYING]
    assert len(modules) >= 7 and found == []
    assert _names(ast.parse("from rollout_pipeline.notify import Channels").body[0]) == ["notify", "Channels"]
