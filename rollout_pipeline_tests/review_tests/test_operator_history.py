"""The CLI records who decided ("NAME (cli)", default the OS user) and `history --all` shows which decision
superseded which; the decision run carries its action as a tag for the Runs list."""

import datetime as dt
import getpass
import json

import dagster as dg
import pytest
from click.testing import CliRunner

from rollout_pipeline.cli import cli
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.logs import write_predictions
from rollout_pipeline_tests.factories import log_day

DAY = dt.date(2026, 6, 1)


def _run(*args):
    out = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert out.exit_code == 0, out.output
    return out.output


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("ROLLOUT_DATABASE_URL", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    _run("init-db")
    _run("rollout", "start", "--model", "m", "--stable", "v1", "--candidate", "v2")
    engine = make_engine(f"sqlite:///{tmp_path / 'state' / 'rollout.db'}")
    write_predictions(engine, log_day("m", DAY, "v1", "v2"))
    engine.dispose()
    return tmp_path


def test_operator_is_audited_and_history_all_marks_the_superseded(state):
    first = json.loads(_run("decide", "--model", "m", "--date", DAY.isoformat(), "--json"))
    second = json.loads(_run("decide", "--model", "m", "--date", DAY.isoformat(), "--force", "hold",
                             "--reason", "wait for the holiday", "--operator", "alice", "--json"))
    events = json.loads(_run("history", "--model", "m", "--all", "--json"))
    rows = [e for e in events if e["kind"] == "decision"]
    assert [r["actor"] for r in rows] == [f"{getpass.getuser()} (cli)", "alice (cli)"]
    assert rows[1]["reasons"] == ["forced hold by alice (cli): wait for the holiday"]
    assert rows[0]["superseded_by"] == rows[1]["id"] and rows[1]["superseded_by"] is None
    text = _run("history", "--model", "m", "--all").splitlines()
    (line,) = [x for x in text if f"decision #{rows[0]['id']} " in x]
    assert f"[{DAY}]" in line and f"[superseded by #{rows[1]['id']}]" in line
    assert "superseded" not in _run("history", "--model", "m")  # the live decisions only
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(dg.RunsFilter(tags={"rollout/action": "hold"}))
    assert len(runs) == 1 and runs[0].tags["rollout/actor"] == "alice (cli)"
    assert first["action"] == "promote" and second["action"] == "hold"  # only the second run is tagged hold


def test_history_shows_decisions_routing_changes_and_teardowns_on_one_timeline(state):
    """A rollback after promotion-less days, then the retention job's teardown: all three kinds, in order."""
    decided = json.loads(_run("decide", "--model", "m", "--date", DAY.isoformat(), "--force", "rollback",
                              "--reason", "p99 alerts", "--json"))
    _run("teardown", "--date", (DAY + dt.timedelta(days=30)).isoformat())
    events = json.loads(_run("history", "--model", "m", "--json"))
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "routing" and "started" in events[0]["details"][0]  # the rollout's first routing
    d = kinds.index("decision")
    assert events[d]["id"] == decided["decision_id"] and events[d]["reasons"] == decided["reasons"]
    assert kinds[d + 1] == "routing" and events[d + 1]["decision_id"] == decided["decision_id"]
    assert "v2 inactive 0%" in events[d + 1]["summary"]
    assert kinds[-1] == "teardown" and events[-1]["variant"] == "v2" and events[-1]["status"] == "done"
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    text = _run("history", "--model", "m")
    assert "decision #" in text and "routing v" in text and "teardown of v2 done" in text
    assert "    - forced rollback by" in text
