"""Browser tests need Debian's Chromium (scripts/ensure-browser) and the playwright package.

When either is missing the tests are skipped with the reason, except under CI=true,
where that is a failure (as for PostgreSQL in the top-level conftest).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rollout_pipeline_tests.browser_tests.ui import CHROMIUM
from rollout_pipeline_tests.conftest import IN_CI


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no {CHROMIUM}: run scripts/ensure-browser (installs Debian's chromium)"
    return None


def require_browser() -> None:
    """Skip (fail under CI=true) when the browser or Playwright is missing, saying which."""
    reason = _missing()
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true and no browser: {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.fixture
def chromium():
    """Playwright's sync API, once Chromium is known to be there (per test: its event loop ends with the test)."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    """Where screenshots are kept: $ROLLOUT_TEST_ARTIFACTS if set, else a pytest temp folder."""
    folder = os.environ.get("ROLLOUT_TEST_ARTIFACTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


