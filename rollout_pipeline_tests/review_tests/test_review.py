"""The review: built once from a day's summary and evaluation, stored as JSON, rendered as markdown and HTML."""

import base64
import datetime as dt

from rollout_pipeline.domain.decide import Decision, RolloutState
from rollout_pipeline.domain.evaluate import Evaluation, MetricCheck
from rollout_pipeline.domain.summary import DaySummary, Extreme, SampleRow, VariantDay
from rollout_pipeline.review.content import Review, Validation, build_review, history_points, histogram
from rollout_pipeline.review.plots import review_plots
from rollout_pipeline.review.render import comparison_table, markdown_sections, render_html, num

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
        MetricCheck("latency", "latency", "critical", "pass", 30.5, 33.25, "candidate p99 33 ms within SLO 250 ms"),
        MetricCheck("prediction_shift", "predictions", "normal", "high", 0.5, 0.52, "predictions shifted up: a | b"),
    ), 87.5, 1000, 1000, "stable served vs candidate shadow")


def _review() -> Review:
    decision = Decision("hold", False, ("judge score 87.5 < pass 95",), RolloutState("shadow", 0), "shadow", 0)
    return build_review("m", DAY.isoformat(), decision, "test", evaluation=_evaluation(), summary=_summary(),
                        validations=(Validation("log_quality", True, "ERROR", ()),
                                     Validation("latency_slo", False, "WARN", ("p99 too high",))))


def test_the_review_holds_the_day_and_survives_its_json_round_trip():
    review = _review()
    assert review.side("stable").requests == 1000 and review.side("candidate").served is False
    assert round(review.prediction_shift_sd, 6) == 0.2  # (0.52 - 0.5) / 0.1
    assert [e.correlation_id for e in review.extremes] == ["c9", "c7", "c3"]  # highest highs, then lowest lows
    titles = [h.title for h in review.histograms]
    assert titles[0] == "Predictions (whole day)" and titles[1] == "Latency (sample)"
    assert titles[2].startswith("Paired difference") and "40 requests both answered" in titles[2]
    assert Review.from_json(review.to_json()) == review


def test_markdown_and_html_show_the_same_cells():
    review = _review()
    history = history_points([])
    plots = review_plots(review, history)
    assert len(plots) == 3 and all(base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n" for _, png in plots)
    md = markdown_sections(review, history, plots)
    page = render_html(review, history, plots)
    for row in comparison_table(review).rows:
        for cell in row:
            assert cell in md["stable_vs_candidate"] and cell in page
    assert num(33.25, " ms") == "33.25 ms" and "33.25 ms" in md["stable_vs_candidate"]
    assert "HOLD: shadow 0% -> shadow 0%" in md["reasons"] and "HOLD: shadow 0% -&gt; shadow 0%" in page
    assert "predictions shifted up: a / b" in md["why"]  # a pipe would break the markdown table
    assert "predictions shifted up" not in md["metrics"]  # the table stays narrow: reasons are listed apart
    assert "p99 too high" in md["validation"] and "p99 too high" in page
    assert md["plots"].count("data:image/png;base64,") == 3 and page.count("data:image/png;base64,") == 3


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
    assert comparison_table(review).rows[0] == ("variant", "v1 (shadow)", "v2", "")
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
