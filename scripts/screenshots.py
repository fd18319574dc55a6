#!/usr/bin/env python
"""Screenshots of the morning review in the real Dagster UI, for the README (docs/img/review-*.png).

Run after `make demo`:  .venv/bin/python scripts/screenshots.py
It starts `rollout-pipeline ui` on the demo's state (as `make ui` does) unless --url names a running one,
and drives Debian's Chromium headless with Playwright.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rollout_pipeline_tests.browser_tests import ui  # noqa: E402


def _latest_days(state: Path) -> dict[str, str]:
    """The latest decided day of each demo model, and cancer's first (its rollback)."""
    from rollout_pipeline.store.engine import make_engine
    from rollout_pipeline.store.rollouts import decision_history

    engine = make_engine(f"sqlite:///{state / 'rollout.db'}")
    with engine.connect() as conn:
        days = {m: rows[-1].day.isoformat() for m in ("diabetes", "cancer") if (rows := decision_history(conn, m))}
        if "cancer" in days:
            days["cancer_first"] = decision_history(conn, "cancer")[0].day.isoformat()
    engine.dispose()
    return days


def _digest(state: Path, day: str) -> Path:
    """`rollout-pipeline digest` of ``day`` on the demo's state; the page's path."""
    import json
    import subprocess

    done = subprocess.run([str(ui.BIN / "rollout-pipeline"), "digest", "--date", day, "--json"], cwd=REPO,
                          env=ui.state_env(state), capture_output=True, text=True, timeout=120, check=True)
    return Path(json.loads(done.stdout)["digest"])


def take(base: str, state: Path, out: Path) -> list[Path]:
    from playwright.sync_api import expect, sync_playwright

    days = _latest_days(state)
    ui.skip_community_dialog(base)
    out.mkdir(parents=True, exist_ok=True)
    shots = []
    with sync_playwright() as p:
        browser = ui.launch(p)
        page = ui.new_page(browser, 1400, 900)

        def shot(name: str, **kwargs) -> None:
            path = out / f"review-{name}.png"
            page.screenshot(path=str(path), **kwargs)
            shots.append(path)

        page.goto(ui.decision_url(base, days["diabetes"], "diabetes"))
        expect(ui.metadata_row(page, "action")).to_be_visible(timeout=30_000)
        page.wait_for_timeout(500)
        shot("decision")
        ui.metadata_row(page, "metrics").scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        shot("tables")
        ui.metadata_row(page, "plots").locator("img").first.scroll_into_view_if_needed()  # inline, no modal
        page.wait_for_timeout(500)
        shot("plots")
        if "cancer" in days:
            first = days["cancer_first"]
            page.goto(ui.decision_url(base, first, "cancer"))
            expect(ui.metadata_row(page, "action")).to_contain_text("rollback", timeout=30_000)
            page.wait_for_timeout(500)
            shot("rollback")
            # The check of the rolled-back day agrees with the decision: the latency gate's words, failed.
            page.goto(f"{base}/assets/day_summary?view=checks")
            expect(page.get_by_text("latency_slo").first).to_be_visible(timeout=30_000)
            page.get_by_text("latency_slo").first.click()
            page.get_by_role("tab", name="Execution history").click()
            expect(page.get_by_text(f"{first}|cancer").first).to_be_visible(timeout=30_000)
            page.wait_for_timeout(800)
            shot("checks")
        page.goto(ui.launchpad_url(base, "force_decision"))
        expect(page.locator(".CodeMirror").first).to_be_visible(timeout=30_000)
        page.wait_for_timeout(800)
        shot("force")
        page.goto(f"{base}/runs")
        expect(page.get_by_text("rollout/action").first).to_be_visible(timeout=30_000)
        page.wait_for_timeout(800)
        shot("runs")
        digest = _digest(state, days["diabetes"])
        page.goto(f"{base}/reports/{digest.name}")  # served by the UI, as its links are
        expect(page.locator("tbody tr").first).to_be_visible()
        shot("digest")
        browser.close()
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, default=REPO / ".state" / "demo", help="the demo's state folder")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    parser.add_argument("--url", default=None, help="a running Dagster UI on that state (default: start one)")
    args = parser.parse_args()
    if not (args.state / "rollout.db").exists():
        sys.exit(f"no demo state in {args.state}: run `make demo` first")
    if args.url:
        shots = take(args.url.rstrip("/"), args.state, args.out)
    else:
        with ui.webserver(args.state) as base:
            shots = take(base, args.state, args.out)
    for path in shots:
        print(path)


if __name__ == "__main__":
    main()
