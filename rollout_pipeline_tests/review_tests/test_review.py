"""The review: built once from a day's summary and evaluation, stored as JSON, rendered as markdown and HTML."""

import base64
import datetime as dt
import html

import pytest

from rollout_pipeline.domain.decide import Decision, RolloutState
from rollout_pipeline.domain.evaluate import Evaluation, MetricCheck
from rollout_pipeline.domain.summary import DaySummary, Extreme, SampleRow, VariantDay
from rollout_pipeline.review.content import Review, Validation, build_review, history_points, histogram
from rollout_pipeline.review.plots import review_plots
from rollout_pipeline.review.render import (markdown_sections, metrics_table, reason_sentences, render_html,
                                            validation_notes)

DAY = dt.date(2026, 6, 1)


def _variant(variant, served, requests, p99, mean, hist):
    return VariantDay(variant, served, requests, requests - 2, 1, 1, 0, 0, 0, 10.0, 90.0, 9.0, 20.0, p99, requests,
                      mean, 0.1, 0.0, 1.0, 0, tuple(hist), (), complaints=3 if served else 0)


def _summary() -> DaySummary:
    sample = []
    for i in range(40):
        sample.append(SampleRow(f"c{i}", "v1", True, 10.0 + i, "ok", 0.5 + i / 100, None))
        sample.append(SampleRow(f"c{i}", "v2", False, 12.0 + i, "ok", 0.52 + i / 100, None))
    return DaySummary("m", DAY, "v1", "v2", (
        _variant("v1", True, 1000, 30.5, 0.5, [1, 5, 3, 1]),
        _variant("v2", False, 1000, 33.25, 0.52, [0, 4, 5, 1]),
    ), (0.0, 0.25, 0.5, 0.75, 1.0), None, (
        Extreme("c7", 0.98, 0.51, "high"), Extreme("c9", 0.99, 0.5, "high"), Extreme("c3", 0.01, 0.4, "low"),
    ), tuple(sample))


def _evaluation() -> Evaluation:
    return Evaluation((
        MetricCheck("latency", "latency", "critical", "pass", 30.5, 33.25, "candidate p99 33 ms within SLO 250 ms",
                    80, 0, "paired requests"),
        MetricCheck("prediction_shift", "predictions", "normal", "high", 0.5, 0.52, "predictions shifted up: a | b",
                    40, 0, "candidate-served entities"),
        MetricCheck("broken_answers", "integrity", "normal", "nodata", None, None, "not judged: 3 < 50", 3, 50),
    ), 87.5, 1000, 1000, "stable served vs candidate shadow", pooled="3 nights at 1%: 5,210 requests, 412 entities")


def _review() -> Review:
    decision = Decision("hold", False, ("judge score 87.5 < pass 95",), RolloutState("shadow", 0), "shadow", 0)
    return build_review("m", DAY.isoformat(), decision, "test", evaluation=_evaluation(), summary=_summary(),
                        validations=(Validation("log_quality", True, "ERROR", ()),
                                     Validation("latency_slo", False, "WARN", ("p99 too high",)),
                                     Validation("prediction_distribution", False, "WARN", (), ("mean: 3 < 50",))))


def test_the_review_holds_the_day_and_survives_its_json_round_trip():
    review = _review()
    assert review.side("stable").requests == 1000 and review.side("candidate").served is False
    assert round(review.prediction_shift_sd, 6) == 0.2  # (0.52 - 0.5) / 0.1
    assert [e.correlation_id for e in review.extremes] == ["c9", "c7", "c3"]  # highest highs, then lowest lows
    titles = [h.title for h in review.histograms]
    assert titles[0] == "Predictions (whole day)" and titles[1] == "Latency (sample)"
    assert titles[2].startswith("Paired difference") and "40 requests both answered" in titles[2]
    assert Review.from_json(review.to_json()) == review


def test_one_metrics_table_with_what_each_number_counts_in_markdown_and_html():
    review = _review()
    history = history_points([])
    plots = review_plots(review, history)
    assert len(plots) == 3 and all(base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n" for _, png in plots)
    links = [(title, f"/reports/img/m-{k}.png") for k, (title, _) in enumerate(plots)]
    md = markdown_sections(review, history, links)
    page = render_html(review, history, plots, ui_link="/assets/decision?view=partitions&partition=x")
    assert "stable_vs_candidate" not in md  # one table: a gate's numbers are never shown beside other numbers
    table = metrics_table(review)
    assert table.header == ("metric", "verdict", "stable", "candidate", "counted over")
    assert table.rows[0] == ("requests logged", "", "1,000 served (v1)", "1,000 shadow (v2)", "whole day")
    rows = {r[0]: r for r in table.rows}
    assert rows["latency"] == ("latency", "pass *", "30.5", "33.25", "80 paired requests")
    assert rows["prediction_shift"][4] == "40 candidate-served entities"
    assert rows["broken_answers"][1:] == ("not judged", "n/a", "n/a", "3 (of 50 needed)")  # whatever gates there are
    for row, narrow in zip(table.rows, metrics_table(review, narrow=True).rows):
        assert "| " + " | ".join(c.replace("|", "/") for c in narrow) + " |" in md["metrics"]
        for cell in row:
            assert html.escape(cell) in page
    assert "| prediction_\u200bshift |" in md["metrics"]  # a long name may wrap in the UI's narrow pane
    assert "Compared: stable served vs candidate shadow.\n\nPooled: 3 nights at 1%: 5,210 requests, 412 entities." \
        in md["metrics"]
    assert "3 nights at 1%" in page
    assert "HOLD: shadow 0% -> shadow 0%" in md["reasons"] and "HOLD: shadow 0% -&gt; shadow 0%" in page
    assert "- Judge score 87.5 < pass 95." in md["reasons"]
    assert "predictions shifted up" not in md["metrics"]  # the table stays narrow: reasons are entries of their own
    # Validation: passed / failed / not judged, and what failed listed under the narrow table.
    assert "| latency_slo | failed | warning |" in md["validation"] and "- p99 too high" in md["validation"]
    assert "| prediction_distribution | not judged | warning |" in md["validation"]
    assert "not judged: mean: 3 < 50" in md["validation"] and "not judged: mean: 3 &lt; 50" in page
    assert "| log_quality | passed | blocking |" in md["validation"]
    assert md["plots"] == "\n\n".join(f"![{t}]({u})" for t, u in links) and len(md["plots"]) < 1000
    assert page.count("data:image/png;base64,") == 3  # the report stays self-contained
    assert 'href="/assets/decision?view=partitions&amp;partition=x"' in page
    assert all(len(text) < 1000 for text in md.values())  # every entry renders inline in the Dagster UI


@pytest.mark.parametrize("reasons, sentences", [
    (("critical failure:", "candidate p99 184 ms > 32 ms"), ("Critical failure: candidate p99 184 ms > 32 ms.",)),
    (("not enough data to judge every metric:", "a not judged", "b not judged"),
     ("Not enough data to judge every metric: a not judged.", "Not enough data to judge every metric: b not judged.")),
    (("judge score 100 >= pass 95", "promote to canary 5%"), ("Judge score 100 >= pass 95.", "Promote to canary 5%.")),
    (("no metric could be judged:",), ("No metric could be judged: nothing more was recorded.",)),
    (("forced hold by ana (cli): campaign week",), ("Forced hold by ana (cli): campaign week.",)),
])
def test_reasons_read_as_full_sentences_never_a_bare_heading(reasons, sentences):
    assert reason_sentences(reasons) == sentences


def test_validation_notes_without_suites_are_the_data_quality_failures():
    review = Review("m", "d", "hold", False, "x", (), "shadow", 0, "shadow", 0, data_quality_failures=("bad rows",))
    assert validation_notes(review) == ("bad rows",)


def test_histogram_counts_every_value_inside_the_edges_once():
    assert histogram([0.0, 0.5, 1.0, 1.0, 2.0, -1.0], [0.0, 0.5, 1.0]) == (1, 3)


def test_after_promotion_the_old_model_shadowing_the_new_one_is_the_stable_side():
    base = _summary()
    summary = DaySummary("m", DAY, "v1", "v2", (
        _variant("v1", False, 1000, 30.5, 0.5, [1, 5, 3, 1]),
        _variant("v2", True, 1000, 33.25, 0.52, [0, 4, 5, 1]),
    ), base.prediction_edges, None, (), tuple(
        SampleRow(r.correlation_id, r.variant, not r.served, r.latency_ms, r.status, r.prediction, r.label)
        for r in base.sample))
    decision = Decision("hold", False, ("watching",), RolloutState("production", 100), "production", 100)
    review = build_review("m", DAY.isoformat(), decision, "test", summary=summary)
    assert (review.side("stable").variant, review.side("stable").served) == ("v1", False)
    assert (review.side("candidate").variant, review.side("candidate").served) == ("v2", True)
    assert metrics_table(review).rows[0][2:4] == ("1,000 shadow (v1)", "1,000 served (v2)")
    assert any(h.title.startswith("Paired difference") for h in review.histograms)


def test_canary_pairs_through_the_stable_shadow_are_plotted():
    """In canary the stable model answers the candidate's requests in shadow: the review plots those pairs too."""
    sample = []
    for i in range(30):
        sample.append(SampleRow(f"c{i}", "v2", True, 10.0, "ok", 0.6 + i / 100, None, f"u{i}"))
        sample.append(SampleRow(f"c{i}", "v1", False, 10.0, "ok", 0.5 + i / 100, None, f"u{i}"))
        sample.append(SampleRow(f"s{i}", "v1", True, 10.0, "ok", 0.5, None, f"w{i}"))
    summary = DaySummary("m", DAY, "v1", "v2", (
        _variant("v1", True, 1000, 30.5, 0.5, [1, 5, 3, 1]), _variant("v2", True, 30, 30.5, 0.6, [0, 4, 5, 1]),
        _variant("v1", False, 30, 30.5, 0.5, [0, 4, 5, 1]),
    ), (0.0, 0.25, 0.5, 0.75, 1.0), None, (), tuple(sample))
    decision = Decision("hold", False, ("x",), RolloutState("canary", 20), "canary", 20)
    review = build_review("m", DAY.isoformat(), decision, "test", evaluation=_evaluation(), summary=summary)
    paired = [h for h in review.histograms if h.title.startswith("Paired difference")]
    assert paired and "30 requests both answered" in paired[0].title
