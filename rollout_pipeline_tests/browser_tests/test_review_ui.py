"""The morning review in a real browser: the demo for two days, `dagster-webserver` on its state, and headless
Chromium on the decision asset's page: the decision, its reasons and the plots are visible."""

from __future__ import annotations

import datetime as dt
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
        finally:
            browser.close()
    print(f"\nscreenshots: {artifacts / 'decision-metadata.png'} {shot}")
    print(f"timings: demo state {prepared - started:.1f} s, webserver up {served - prepared:.1f} s, "
          f"browser {time.perf_counter() - served:.1f} s")
