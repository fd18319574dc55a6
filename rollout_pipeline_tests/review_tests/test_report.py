"""Two decided days through the CLI: the decision asset's metadata, its HTML report and `rollout-pipeline report`
show the numbers of the decision table."""

import datetime as dt
import html
import re

import dagster as dg
import pytest
from click.testing import CliRunner

from rollout_pipeline.cli import cli
from rollout_pipeline.review.content import review_from_record
from rollout_pipeline.review.render import (breakable, checks_table, metrics_table, num, reason_sentences,
                                            verdict_word)
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.logs import write_predictions
from rollout_pipeline.store.rollouts import decision_history
from rollout_pipeline_tests.factories import log_day

D1, D2 = dt.date(2026, 6, 1), dt.date(2026, 6, 2)


def _run(*args):
    out = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert out.exit_code == 0, out.output
    return out.output


@pytest.fixture(scope="module")
def decided(tmp_path_factory):
    """State with model m decided on D1 (shadow -> canary 1%) and D2 (a hold: too few canary requests)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        tmp_path = tmp_path_factory.mktemp("review")
        monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
        monkeypatch.delenv("ROLLOUT_DATABASE_URL", raising=False)
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
        yield from _decide_two_days(tmp_path)


def _decide_two_days(tmp_path):
    _run("init-db")
    _run("rollout", "start", "--model", "m", "--stable", "v1", "--candidate", "v2")
    engine = make_engine(f"sqlite:///{tmp_path / 'state' / 'rollout.db'}")
    write_predictions(engine, log_day("m", D1, "v1", "v2"))
    write_predictions(engine, log_day("m", D2, "v1", "v2", stage="canary", canary_percent=1, seed=1))
    _run("decide", "--model", "m", "--date", D1.isoformat())
    _run("decide", "--model", "m", "--date", D2.isoformat())
    with engine.connect() as conn:
        rows = decision_history(conn, "m")
    engine.dispose()
    yield tmp_path, rows


def _text(md_or_html: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", md_or_html))


def test_metadata_report_and_decision_table_agree(decided):
    tmp_path, rows = decided
    row = rows[-1]
    assert [r.day for r in rows] == [D1, D2]
    with dg.DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("decision"))
    meta = {k: v.value if hasattr(v, "value") else v for k, v in event.asset_materialization.metadata.items()}
    assert event.asset_materialization.partition == f"{D2}|m"
    assert meta["action"] == row.action and meta["decision_id"] == row.id
    assert meta["before"] == f"{row.stage_before} {row.percent_before}%"
    assert meta["after"] == f"{row.stage_after} {row.percent_after}%"
    report = tmp_path / "state" / "reports" / f"m-{D2}.html"
    assert f"[{report.name}](/reports/{report.name})" in meta["report"]  # served by `rollout-pipeline ui`
    page = report.read_text()
    text = _text(page)
    assert 'href="/assets/decision?view=partitions&amp;partition=2026-06-02%7Cm"' in page  # back to the partition
    for sentence in reason_sentences(tuple(row.reasons)):
        assert sentence in meta["reasons"] and sentence in text
    # Every gate of the stored row, with the same formatting, in the one metrics table and in the report.
    assert row.metrics["checks"]
    review = review_from_record(row)
    for check in row.metrics["checks"]:
        cells = [check["name"], verdict_word(check["classification"]), check["criticality"], num(check["stable"]),
                 num(check["candidate"])]
        line = next(x for x in meta["metrics"].splitlines() if x.startswith(f"| {breakable(check['name'])} |"))
        assert line.split(" | ")[2:4] == [num(check["stable"]), num(check["candidate"])], line
        assert meta[f"why: {check['name']}"] == (f"{verdict_word(check['classification'])} ({check['criticality']}): "
                                                 f"{check['reason']}")
        assert re.search(r"\s+".join(re.escape(c) for c in cells), text), cells
    assert "stable_vs_candidate" not in meta and "candidate_p99_ms" not in meta  # one table, no second set of numbers
    assert review.side("candidate").served is True and review.side("stable").requests > 0
    for cells, narrow in zip(metrics_table(review).rows, metrics_table(review, narrow=True).rows):
        assert "| " + " | ".join(narrow) + " |" in meta["metrics"]
        assert "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" in page
    for cells in checks_table(review).rows:
        assert "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" in page
    plots = re.findall(r"!\[[^]]*\]\((/reports/img/[^)]+\.png)\)", meta["plots"])
    assert len(plots) >= 3 and page.count("data:image/png;base64,") >= 3
    for url in plots:  # each image the metadata shows is a PNG in the reports folder
        assert (tmp_path / "state" / url.removeprefix("/")).read_bytes()[:4] == b"\x89PNG"
    assert "| 2026-06-01 | promote | canary 1% |" in meta["history"]


def test_report_command_rewrites_the_same_report_from_the_database(decided):
    tmp_path, rows = decided
    report = tmp_path / "state" / "reports" / f"m-{D2}.html"
    from_asset = report.read_text()
    report.unlink()
    assert _run("report", "--model", "m").strip() == str(report)  # default: the latest decided day
    strip_images = lambda s: re.sub(r"base64,[A-Za-z0-9+/=]+", "", s)  # noqa: E731
    assert strip_images(report.read_text()) == strip_images(from_asset)
    first = _run("report", "--model", "m", "--date", D1.isoformat()).strip()
    assert first.endswith(f"m-{D1}.html") and "PROMOTE: shadow 0% -&gt; canary 1%" in open(first).read()
    missing = CliRunner().invoke(cli, ["report", "--model", "m", "--date", "2026-05-01"])
    assert missing.exit_code == 1 and "no decision for m on 2026-05-01" in missing.output


def test_status_prints_a_table_and_history_the_reasons(decided):
    out = _run("status")
    header, rule, *rows = out.splitlines()
    assert header.split() == ["model", "stage", "share", "rollout", "routing", "variant", "role", "traffic", "shadow"]
    assert rows[0].split()[:4] == ["m", "canary", "1%", "active"]
    assert any(r.split()[-4:] == ["v2", "candidate", "1.0%", "shadow"] for r in rows)  # it shadows the stable's
    hist = _run("history", "--model", "m")
    assert "PROMOTE" in hist and "HOLD" in hist and "not enough data" in hist


def test_the_decision_page_reads_inline_at_1400_px(decided):
    """The report link comes first, then the decision; every markdown entry renders inline (Dagster shows markdown
    of 1,000 characters or more only behind "Show Markdown"), the plots included; and the run is tagged."""
    _, rows = decided
    with dg.DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("decision"))
        run = instance.get_run_by_id(event.run_id)
    metadata = event.asset_materialization.metadata
    keys = list(metadata)
    assert keys[:2] == ["report", "action"]
    assert isinstance(metadata["report"], dg.MarkdownMetadataValue)
    assert keys.index("action") < keys.index("reasons") < keys.index("metrics") < keys.index("plots")
    for key, value in metadata.items():
        if isinstance(value, dg.MarkdownMetadataValue):
            assert len(value.value) < 1000, key
    assert max(len(line) for line in metadata["metrics"].value.splitlines()) < 110
    assert run.tags["rollout/action"] == rows[-1].action
