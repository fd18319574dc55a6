"""The morning digest: one page listing the night's decisions of every rollout, pending approvals first,
each linking to its report; the same list from `rollout-pipeline digest --json`."""

import datetime as dt
import json
from types import SimpleNamespace

from click.testing import CliRunner

from rollout_pipeline.cli import cli
from rollout_pipeline.review.digest import digest_rows, render_digest_html
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.logs import write_predictions
from rollout_pipeline_tests.factories import log_day

DAY = dt.date(2026, 6, 1)


def _record(i, model, action, approval=None, metrics=None):
    return SimpleNamespace(id=i, model_name=model, day=DAY, action=action, approval=approval, forced=False,
                           actor="schedule", stage_before="shadow", percent_before=0, stage_after="canary",
                           percent_after=1, reasons=[f"{model} <why>"], metrics=metrics or {})


def test_pending_approvals_come_first_then_rollbacks_holds_promotions():
    rows = digest_rows([_record(1, "a", "promote"), _record(2, "b", "hold"), _record(3, "c", "rollback"),
                        _record(4, "d", "promote", approval="pending"),
                        _record(5, "e", "promote", metrics={"approval": "pending"})])  # a store without the column
    assert [r.model for r in rows] == ["d", "e", "c", "b", "a"]
    page = render_digest_html(DAY.isoformat(), rows)
    assert page.index(">d<") < page.index(">c<") < page.index(">a<")
    assert f'href="a-{DAY}.html"' in page and "a &lt;why&gt;" in page and "2 waiting for approval" in page


def _run(*args):
    out = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert out.exit_code == 0, out.output
    return out.output


def test_the_digest_command_lists_the_night_and_writes_the_page(tmp_path, monkeypatch):
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("ROLLOUT_DATABASE_URL", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    _run("init-db")
    for model in ("m", "n", "quiet"):
        _run("rollout", "start", "--model", model, "--stable", "v1", "--candidate", "v2")
    engine = make_engine(f"sqlite:///{tmp_path / 'state' / 'rollout.db'}")
    write_predictions(engine, log_day("m", DAY, "v1", "v2"))
    engine.dispose()
    _run("decide", "--model", "m", "--date", DAY.isoformat())
    _run("decide", "--model", "n", "--date", DAY.isoformat(), "--force", "rollback", "--reason", "bad canary")
    out = json.loads(_run("digest", "--date", DAY.isoformat(), "--json"))
    assert [(d["model"], d["action"]) for d in out["decisions"]] == [("n", "rollback"), ("m", "promote")]
    assert out["undecided"] == ["quiet"]  # active, but nothing decided that night: said, not hidden
    reports = tmp_path / "state" / "reports"
    assert out["digest"] == str(reports / f"digest-{DAY}.html")
    page = (reports / f"digest-{DAY}.html").read_text()
    assert "No decision that night</strong> (did the nightly run fail?): quiet" in page
    for d in out["decisions"]:
        assert f'href="{d["report"]}"' in page and (reports / d["report"]).exists()
    text = _run("digest", "--date", DAY.isoformat()).splitlines()
    assert text[0].startswith("n: ROLLBACK (forced)") and text[-1] == out["digest"]
    assert _run("digest", "--date", "2026-05-01").splitlines()[:2] == [
        "no decisions on 2026-05-01", "no decision that night for active rollouts: m, quiet"]
