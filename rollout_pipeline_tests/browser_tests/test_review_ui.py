"""The morning review in a real browser: the demo for two days, `dagster-webserver` on its state, and headless
Chromium on the decision asset's page: the decision, its reasons and the plots are visible; at 1,400 px the
report link, the key numbers, the metrics table and each metric's "why" show inline, nothing cut off at the
right; the morning digest page lists both rollouts and links to their reports."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time

from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.rollouts import decision_history
from rollout_pipeline_tests.browser_tests import ui


def _first_decision(state):
    """The first decision of the demo's good rollout (a shadow day that promotes), as the decisions table has it."""
    engine = make_engine(f"sqlite:///{state / 'rollout.db'}")
    with engine.connect() as conn:
        first = decision_history(conn, "diabetes")[0]
    engine.dispose()
    return first.day.isoformat(), first.action, first.reasons, f"{first.stage_after} {first.percent_after}%"


def test_the_decision_its_reasons_and_its_plots_are_visible(chromium, artifacts, tmp_path):
    from playwright.sync_api import expect

    started = time.perf_counter()
    state = ui.prepare_demo_state(tmp_path, days=2, requests=2000)
    day, action, reasons, after = _first_decision(state)
    assert dt.date.fromisoformat(day) and action == "promote" and reasons
    prepared = time.perf_counter()
    with ui.webserver(state) as base:
        served = time.perf_counter()
        ui.skip_community_dialog(base)
        browser = ui.launch(chromium)
        try:
            page = ui.new_page(browser)
            page.goto(ui.decision_url(base, day, "diabetes"))
            expect(page.get_by_text(f"{day}|diabetes").first).to_be_visible(timeout=30_000)
            expect(ui.metadata_row(page, "action")).to_contain_text(action, timeout=30_000)
            expect(ui.metadata_row(page, "after")).to_contain_text(after)
            for reason in reasons:
                expect(ui.metadata_row(page, "reasons").get_by_text(reason)).to_be_visible()
            expect(ui.metadata_row(page, "stable_vs_candidate")).to_contain_text("latency p99")
            page.screenshot(path=str(artifacts / "decision-metadata.png"))
            # Plots are long markdown: the UI shows them behind "Show Markdown", in a dialog.
            ui.metadata_row(page, "plots").get_by_text("Show Markdown").click()
            dialog = page.get_by_role("dialog")
            plots = dialog.locator("img[src^='data:image/png']")
            expect(plots.first).to_be_visible()
            assert plots.count() >= 3
            assert plots.first.evaluate("img => img.complete && img.naturalWidth") > 100  # decoded, not a broken image
            shot = artifacts / "decision-plots.png"
            page.screenshot(path=str(shot))
            page.keyboard.press("Escape")
            _readable_at_1400_px(browser, base, day, artifacts)
            _digest_page(browser, state, day, artifacts)
        finally:
            browser.close()
    print(f"\nscreenshots: {artifacts / 'decision-metadata.png'} {shot}")
    print(f"timings: demo state {prepared - started:.1f} s, webserver up {served - prepared:.1f} s, "
          f"browser {time.perf_counter() - served:.1f} s")


def _readable_at_1400_px(browser, base, day, artifacts):
    """At 1400x900 the report link, key numbers, the metrics table and each "why" are inline, none cut off."""
    from playwright.sync_api import expect

    page = ui.new_page(browser, 1400, 900)
    page.goto(ui.decision_url(base, day, "diabetes"))
    expect(ui.metadata_row(page, "report").get_by_role("link", name=f"diabetes-{day}.html")).to_be_visible(
        timeout=30_000)
    expect(ui.metadata_row(page, "candidate_p99_ms")).to_be_visible()
    metrics = ui.metadata_row(page, "metrics").locator("table")
    expect(metrics).to_contain_text("latency")  # inline, not behind "Show Markdown"
    metrics.scroll_into_view_if_needed()
    box = metrics.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= 1400, box
    why = ui.metadata_row(page, "why: latency")
    why.scroll_into_view_if_needed()
    expect(why).to_contain_text("p99")
    page.screenshot(path=str(artifacts / "decision-1400.png"))
    value = why.locator("td").filter(has_text="p99").last.bounding_box()
    assert value and value["x"] + value["width"] <= 1400, value
    page.close()


def _digest_page(browser, state, day, artifacts):
    """`rollout-pipeline digest` on the demo's state: the page lists every rollout and a report link opens."""
    from playwright.sync_api import expect

    done = subprocess.run([str(ui.BIN / "rollout-pipeline"), "digest", "--date", day, "--json"], cwd=ui.REPO,
                          env=ui.state_env(state), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert {"diabetes", "cancer"} <= {d["model"] for d in out["decisions"]}
    page = ui.new_page(browser, 1400, 900)
    page.goto(f"file://{out['digest']}")
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(len(out["decisions"]))
    expect(rows.first).to_contain_text(out["decisions"][0]["model"])
    page.screenshot(path=str(artifacts / "digest.png"))
    page.get_by_role("link", name="diabetes", exact=True).click()
    expect(page.locator("h1")).to_contain_text(f"diabetes · {day}")
    page.close()
