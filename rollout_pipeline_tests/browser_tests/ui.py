"""Driving the real Dagster UI: a demo-like state, the webserver on it, and the decision page in Chromium.

Shared by the browser test and ``scripts/screenshots.py`` (the README's screenshots).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHROMIUM = "/usr/bin/chromium"


def state_env(folder: Path) -> dict[str, str]:
    """The environment of the demo's state in ``folder`` (as `make ui` sets it for .state/demo)."""
    return {**os.environ, "ROLLOUT_STATE_DIR": str(folder), "DAGSTER_HOME": str(folder / "dagster"),
            "ROLLOUT_DATABASE_URL": f"sqlite:///{folder / 'rollout.db'}"}


def prepare_demo_state(root: Path, days: int = 2, requests: int = 2000) -> Path:
    """Run the demo (both rollouts, SQLite) for ``days`` days under ``root``; returns its state folder."""
    env = {**os.environ, "ROLLOUT_STATE_DIR": str(root)}
    for name in ("ROLLOUT_DATABASE_URL", "DAGSTER_HOME"):
        env.pop(name, None)
    done = subprocess.run([str(BIN / "rollout-pipeline"), "demo", "--days", str(days), "--requests", str(requests)],
                          cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"`rollout-pipeline demo` failed with status {done.returncode}:\n{done.stdout[-4000:]}")
    return root / "demo"


def sparse_hold(state: Path, day: str, model: str = "sparse") -> None:
    """A day with too little traffic to judge a p99 (25 requests): held, its latency gate not judged."""
    env = state_env(state)
    for args in (["rollout", "start", "--model", model, "--stable", "v1", "--candidate", "v2"],
                 ["simulate", "--model", model, "--kind", "diabetes", "--date", day, "--requests", "25",
                  "--scenario", "sparse", "--seed", "3"],
                 ["decide", "--model", model, "--date", day]):
        done = subprocess.run([str(BIN / "rollout-pipeline"), *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"`rollout-pipeline {' '.join(args)}` failed ({done.returncode}):\n{done.stdout[-4000:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def webserver(folder: Path, port: int | None = None, timeout: float = 90.0, log: Path | None = None,
              env: dict[str, str] | None = None):
    """`rollout-pipeline ui` (Dagster's webserver, the reports at /reports, the daemon) on the state in
    ``folder``, bound to 127.0.0.1; yields its base URL.

    It runs in its own process group (its own session), which is stopped by that id at the end.
    """
    port = port or free_port()
    log = log or folder / "webserver.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "rollout-pipeline"), "ui", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO, env={**state_env(folder), **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"dagster-webserver exited with {proc.returncode}; see {log}")
            try:
                with urllib.request.urlopen(base + "/server_info", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"dagster-webserver not answering after {timeout:.0f} s; see {log}")
            time.sleep(0.5)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def decision_url(base: str, day: str, model: str) -> str:
    """The decision asset's Partitions tab with the partition ``day|model`` selected."""
    from rollout_pipeline.review.links import partition_url

    return partition_url(base, day, model)


def launchpad_url(base: str, job: str) -> str:
    """A job's launchpad in the code location of workspace.yaml."""
    return f"{base}/locations/__repository__@rollout_pipeline/jobs/{job}/playground"


def skip_community_dialog(base: str) -> None:
    """Mark Dagster's one-time "Join the Dagster community" dialog as seen (it would cover the page)."""
    import json

    request = urllib.request.Request(base + "/graphql", data=json.dumps({"query": "mutation { setNuxSeen }"}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as r:
        r.read()


def launch(playwright):
    """Headless Debian Chromium (Playwright's own browser download is not used)."""
    # As root (CI containers) Chromium needs --no-sandbox; a small /dev/shm would crash its renderer.
    return playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])


def new_page(browser, width: int = 1600, height: int = 1000):
    """A page that dismisses Dagster's one-time "Join the community" dialog if it shows up all the same."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.add_locator_handler(page.get_by_role("button", name="Skip"),
                             lambda: page.get_by_role("button", name="Skip").click())
    return page


def metadata_row(page, key: str):
    """The row of metadata entry ``key`` in the materialization's metadata table."""
    import re

    return page.locator("tr").filter(has=page.locator("td").filter(has_text=re.compile(rf"^\s*{re.escape(key)}\s*$")))
