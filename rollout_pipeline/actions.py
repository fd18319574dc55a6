"""The teardown action: what "tear down a variant" means outside our tables.

Configured by the environment: ``ROLLOUT_TEARDOWN_COMMAND`` (a command run
without a shell; ``{model}``, ``{variant}`` and ``{day}`` in its words are
replaced, and the same values are in ``ROLLOUT_MODEL``, ``ROLLOUT_VARIANT`` and
``ROLLOUT_DAY``) or ``ROLLOUT_TEARDOWN_WEBHOOK`` (an HTTP POST of
``{"model", "variant", "day", "action": "teardown"}``), e.g. to scale the
variant's deployment to zero. With neither, the teardown is recorded in our
tables only. A failing action is retried with a growing pause and reported.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shlex
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_SECONDS = 300
WEBHOOK_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class ActionResult:
    """How the teardown action went: success, attempts made, and what it said (never a secret)."""

    ok: bool
    attempts: int
    action: str
    detail: str


def _safe_url(url: str) -> str:
    """The webhook address without credentials, query or fragment (they may hold tokens)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def describe(command: str | None, webhook: str | None) -> str:
    """A printable description of the configured action."""
    if command:
        return f"command: {shlex.split(command)[0]}"
    if webhook:
        return f"webhook: POST {_safe_url(webhook)}"
    return "none (recorded only)"


def _run_command(command: str, model: str, variant: str, day: dt.date) -> str:
    values = {"model": model, "variant": variant, "day": day.isoformat()}
    argv = [word.format(**values) if "{" in word else word for word in shlex.split(command)]
    env = {**os.environ, "ROLLOUT_MODEL": model, "ROLLOUT_VARIANT": variant, "ROLLOUT_DAY": day.isoformat()}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS, env=env, check=False)
    output = (done.stdout + done.stderr).strip()[-500:]
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited with status {done.returncode}: {output or 'no output'}")
    return output or f"{argv[0]} exited 0"


def _call_webhook(url: str, model: str, variant: str, day: dt.date) -> str:
    body = json.dumps({"model": model, "variant": variant, "day": day.isoformat(), "action": "teardown"}).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:  # noqa: S310 (operator's URL)
            return f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"POST {_safe_url(url)} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RuntimeError(f"POST {_safe_url(url)} failed: {reason}") from None


def run_teardown_action(model: str, variant: str, day: dt.date, *, command: str | None, webhook: str | None,
                        attempts: int = 3, backoff_seconds: float = 2.0) -> ActionResult:
    """Run the configured action for ``model``/``variant``, retrying up to ``attempts`` times."""
    action = describe(command, webhook)
    if not command and not webhook:
        return ActionResult(True, 0, action, "no teardown action configured: recorded in our tables only")
    error = ""
    for attempt in range(1, attempts + 1):
        started = time.perf_counter()
        try:
            if command:
                detail = _run_command(command, model, variant, day)
            else:
                detail = _call_webhook(webhook, model, variant, day)
        except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError, KeyError, IndexError) as exc:
            error = str(exc) or type(exc).__name__
            log.warning("teardown %s/%s: attempt %d of %d failed after %.1f s: %s", model, variant, attempt,
                        attempts, time.perf_counter() - started, error)
            if attempt < attempts:
                time.sleep(backoff_seconds * 2 ** (attempt - 1))
            continue
        log.info("teardown %s/%s: %s succeeded on attempt %d (%.1f s)", model, variant, action, attempt,
                 time.perf_counter() - started)
        return ActionResult(True, attempt, action, detail)
    return ActionResult(False, attempts, action, f"failed {attempts} time(s); last error: {error}")
