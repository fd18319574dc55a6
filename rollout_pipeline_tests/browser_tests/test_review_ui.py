"""The morning review in a real browser at 1,400 px: the demo for two days (a promotion, a hold whose gates were
not judged, a rollback, a first model), one `rollout-pipeline ui` (Dagster's webserver, the reports at /reports,
the daemon) shared by every test of the module, and headless Chromium.

Each day type's decision page shows one metrics table with what each number counts, the reasons as sentences and
the plots inline, nothing cut off at the right and nothing behind a modal; no check of a gate that was not judged
shows Passed; the report link and a notification's link open the right partition; a day never analysed is forced
from the launchpad, and a force without a reason is refused there before launch."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import re
import threading
import time

import pytest

from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.rollouts import decision_history
from rollout_pipeline_tests.browser_tests import ui
from rollout_pipeline_tests.browser_tests.conftest import require_browser

RIGHT_EDGE = 1400


class _Catcher(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def review(tmp_path_factory):
    """The demo's state (2 days, 2,000 requests a day), its decided days by type, and the UI on it."""
    require_browser()
    root = tmp_path_factory.mktemp("review-ui")
    started = time.perf_counter()
    state = ui.prepare_demo_state(root, days=2, requests=2000)
    engine = make_engine(f"sqlite:///{state / 'rollout.db'}")
    with engine.connect() as conn:
        first_day = decision_history(conn, "diabetes")[0].day
    ui.sparse_hold(state, first_day.isoformat())  # 25 requests: even its latency cannot be judged
    with engine.connect() as conn:
        history = {m: decision_history(conn, m) for m in ("diabetes", "cancer", "diabetes-first", "sparse")}
    engine.dispose()
    days = {
        "promote": (history["diabetes"][0], "diabetes"),
        "hold, not judged": (history["sparse"][0], "sparse"),
        "rollback": (history["cancer"][0], "cancer"),
        "first model": (history["diabetes-first"][0], "diabetes-first"),
    }
    assert days["promote"][0].action == "promote" and days["rollback"][0].action == "rollback"
    assert days["hold, not judged"][0].action == "hold"
    assert any("not judged" in r for r in days["hold, not judged"][0].reasons)
    catcher = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Catcher)
    threading.Thread(target=catcher.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{catcher.server_address[1]}/hook"
    prepared = time.perf_counter()
    try:
        with ui.webserver(state, env={"ROLLOUT_NOTIFY_WEBHOOK": hook}) as base:
            ui.skip_community_dialog(base)
            print(f"\ntimings: demo state {prepared - started:.1f} s, UI up {time.perf_counter() - prepared:.1f} s")
            yield base, state, days
    finally:
        catcher.shutdown()


def _right_edges_fit(page, keys):
    for key in keys:
        row = ui.metadata_row(page, key)
        row.scroll_into_view_if_needed()
        # Every cell, the cells of the tables inside the entry's markdown included: none past the right edge.
        for cell in row.locator("td, th, img").all():
            box = cell.bounding_box()
            assert box and box["x"] + box["width"] <= RIGHT_EDGE + 0.5, (key, cell.inner_text()[:40], box)


@pytest.mark.parametrize("kind", ["promote", "hold, not judged", "rollback", "first model"])
def test_each_day_type_reads_at_1400_px_with_one_metrics_table(review, chromium, artifacts, kind):
    from playwright.sync_api import expect

    base, _, days = review
    record, model = days[kind]
    browser = ui.launch(chromium)
    try:
        page = ui.new_page(browser, RIGHT_EDGE, 900)
        page.goto(ui.decision_url(base, record.day.isoformat(), model))
        expect(page.get_by_text(f"{record.day}|{model}").first).to_be_visible(timeout=30_000)
        expect(ui.metadata_row(page, "action")).to_contain_text(record.action, timeout=30_000)
        metrics = ui.metadata_row(page, "metrics").locator("table")
        expect(metrics).to_contain_text("counted over")  # inline: what each number counts
        expect(metrics).to_contain_text("requests logged")
        assert ui.metadata_row(page, "stable_vs_candidate").count() == 0  # one table of numbers, not two
        reasons = ui.metadata_row(page, "reasons")
        expect(reasons).to_contain_text(record.action.upper())
        for item in reasons.locator("li").all():  # full sentences, never a bare heading
            assert not item.inner_text().strip().endswith(":"), item.inner_text()
        plots = ui.metadata_row(page, "plots").locator("img")
        expect(plots.first).to_be_visible()
        assert plots.count() >= 2
        for img in plots.all():  # served by the UI beside the report, decoded, no modal needed
            img.scroll_into_view_if_needed()
            assert img.evaluate("i => i.complete && i.naturalWidth") > 100
        keys = ("report", "action", "reasons", "metrics", "validation", "plots")
        for key in keys:
            assert ui.metadata_row(page, key).get_by_text("Show Markdown").count() == 0, key
        _right_edges_fit(page, keys)
        ui.metadata_row(page, "metrics").scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts / f"decision-{kind.replace(', ', '-').replace(' ', '-')}.png"))
    finally:
        browser.close()


def test_no_check_shows_passed_for_a_gate_that_was_not_judged(review, chromium, artifacts):
    from playwright.sync_api import expect

    base, _, days = review
    record, model = days["hold, not judged"]
    partition = f"{record.day}|{model}"
    browser = ui.launch(chromium)
    try:
        page = ui.new_page(browser, RIGHT_EDGE, 900)
        page.goto(f"{base}/assets/day_summary?view=checks")
        page.get_by_text("latency_slo").first.click()
        page.get_by_role("tab", name="Execution history").click()
        row = page.locator("tr").filter(has=page.get_by_text(partition, exact=True))
        expect(row).to_have_count(1, timeout=30_000)
        expect(row).to_contain_text("Failed")  # Dagster's word for a failed WARN check: yellow, not green
        assert "Passed" not in row.inner_text() and "Succeeded" not in row.inner_text()
        page.screenshot(path=str(artifacts / "checks-not-judged.png"))
    finally:
        browser.close()


def test_the_report_link_opens_the_report_and_it_links_back_to_the_partition(review, chromium):
    from playwright.sync_api import expect

    base, _, days = review
    record, model = days["hold, not judged"]
    name = f"{model}-{record.day}.html"
    browser = ui.launch(chromium)
    try:
        page = ui.new_page(browser, RIGHT_EDGE, 900)
        page.goto(ui.decision_url(base, record.day.isoformat(), model))
        link = ui.metadata_row(page, "report").get_by_role("link", name=name)
        expect(link).to_be_visible(timeout=30_000)
        assert link.get_attribute("href") == f"/reports/{name}"
        page.goto(base + link.get_attribute("href"))  # where a click lands (the UI may open it in a new tab)
        expect(page.locator("h1")).to_contain_text(f"{model} · {record.day}")
        page.locator("#dagster-link").click()
        expect(page.get_by_text(f"{record.day}|{model}").first).to_be_visible(timeout=30_000)
        expect(ui.metadata_row(page, "action")).to_contain_text("hold", timeout=30_000)
        assert f"partition={record.day}%7C{model}" in page.url
    finally:
        browser.close()


def _set_config(page, text: str) -> None:
    page.locator(".CodeMirror").first.evaluate("(el, text) => el.CodeMirror.setValue(text)", text)


def test_a_day_never_analysed_is_forced_from_the_launchpad_and_a_force_without_reason_is_refused(
        review, chromium, artifacts):
    from playwright.sync_api import expect

    base, state, days = review
    first = days["rollback"][0].day
    day = (first - dt.timedelta(days=2)).isoformat()  # never analysed
    browser = ui.launch(chromium)
    try:
        page = ui.new_page(browser, RIGHT_EDGE, 900)
        page.goto(ui.launchpad_url(base, "force_decision"))
        expect(page.locator(".CodeMirror").first).to_be_visible(timeout=30_000)
        launch = page.get_by_role("button", name="Launch Run")
        config = f"ops:\n  force_day:\n    config:\n      model: cancer\n      date: '{day}'\n      action: hold\n"
        _set_config(page, config)
        expect(page.get_by_text('Missing required config entry "reason"').first).to_be_visible(timeout=30_000)
        expect(launch).to_be_disabled()
        page.screenshot(path=str(artifacts / "force-refused.png"))
        _set_config(page, config + "      reason: campaign week\n      operator: ana\n")
        expect(launch).to_be_enabled(timeout=30_000)
        launch.click()
        expect(page).to_have_url(re.compile(r"/runs/"), timeout=30_000)
        forced = _wait_for_decision(state, "cancer", dt.date.fromisoformat(day))
        assert forced.action == "hold" and forced.forced and forced.actor == "ana"
        assert forced.reasons[0] == "forced hold by ana: campaign week"
        page.goto(ui.decision_url(base, day, "cancer"))
        _shows_after_reloads(page, "action", "hold")
        expect(ui.metadata_row(page, "reasons")).to_contain_text("campaign week")
        page.screenshot(path=str(artifacts / "force-done.png"))
        # The notification of that decision links its partition, which shows it (not another materialization).
        message = next(m for m in _Catcher.received if m.get("decision_id") == forced.id)
        assert message["links"]["dagster"] == ui.decision_url(base, day, "cancer")
        other = ui.new_page(browser, RIGHT_EDGE, 900)
        other.goto(ui.decision_url(base, days["promote"][0].day.isoformat(), "diabetes"))  # another partition first
        expect(ui.metadata_row(other, "action")).to_be_visible(timeout=30_000)
        other.goto(message["links"]["dagster"])
        expect(other.get_by_text(f"{day}|cancer").first).to_be_visible(timeout=30_000)
        expect(ui.metadata_row(other, "decision_id")).to_contain_text(str(forced.id), timeout=30_000)
    finally:
        browser.close()


def _shows_after_reloads(page, key: str, text: str, tries: int = 4) -> None:
    """The partition's metadata row ``key`` contains ``text``, reloading the page between tries.

    The partition pane is fetched once when the page opens: a partition materialized a moment before can show
    "Latest materialization: None" (seen once in three runs under load) until the page is loaded again.
    """
    from playwright.sync_api import expect

    for attempt in range(tries):
        try:
            expect(ui.metadata_row(page, key)).to_contain_text(text, timeout=20_000)
            return
        except AssertionError:
            if attempt == tries - 1:
                raise
            page.reload()


def _wait_for_decision(state, model: str, day: dt.date, timeout: float = 180.0):
    """The live decision of ``model``'s ``day`` once the launched run (queued, then run by the daemon) stored it."""
    engine = make_engine(f"sqlite:///{state / 'rollout.db'}")
    deadline = time.monotonic() + timeout
    try:
        while True:
            with engine.connect() as conn:
                found = [d for d in decision_history(conn, model) if d.day == day]
            if found:
                return found[-1]
            if time.monotonic() > deadline:
                raise AssertionError(f"no decision of {model} {day} after {timeout:.0f} s (see {state}/webserver.log)")
            time.sleep(1)
    finally:
        engine.dispose()
