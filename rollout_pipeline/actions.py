"""The teardown action: what "tear down a variant" means outside our tables (no Dagster here).

Three kinds, wired as Dagster resources in ``defs/resources.py``: a command run
without a shell (``{model}``, ``{variant}`` and ``{day}`` in its words are
replaced, and the same values are in ``ROLLOUT_MODEL``, ``ROLLOUT_VARIANT`` and
``ROLLOUT_DAY``), an HTTP POST of ``{"model", "variant", "day", "action":
"teardown"}`` to a webhook, or nothing (the teardown is recorded in our tables only).

Failures come in two kinds and only one is retried. A transient failure (the
command exits non-zero or times out, the webhook answers 5xx, 408 or 429, or
cannot be reached) is retried a bounded number of times with a growing pause. A
configuration error (a command that cannot be parsed, a missing executable, an
invalid webhook URL, a 4xx answer, a redirect) would fail the same way every
time: it is never retried and is reported in one line.

Credentials in a webhook URL (``https://user:pass@host/path``) are sent as HTTP
Basic auth and never printed: every message names the URL without its
credentials, query or fragment.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import ipaddress
import json
import logging
import os
import shlex
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from string import Formatter

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_SECONDS = 300
WEBHOOK_TIMEOUT_SECONDS = 30
PLACEHOLDERS = ("model", "variant", "day")
RECORD_ONLY = "none (recorded only)"
# Answers that say "later" rather than "never": retried like a 5xx.
RETRYABLE_HTTP = frozenset({408, 425, 429})


class ActionConfigError(ValueError):
    """The action cannot work as configured; retrying would fail the same way."""


class TransientActionError(RuntimeError):
    """The action failed in a way that may pass on a later attempt."""


@dataclass(frozen=True)
class ActionResult:
    """How the teardown action went: success, attempts made, and what it said (never a secret)."""

    ok: bool
    attempts: int
    action: str
    detail: str
    config_error: bool = False


# --- command ---------------------------------------------------------------------------------


def parse_command(command: str) -> tuple[str, ...]:
    """The command's words, checked: parseable, only known placeholders, an executable that exists."""
    try:
        words = tuple(shlex.split(command))
    except ValueError as exc:
        raise ActionConfigError(f"teardown command cannot be parsed: {exc}") from None
    if not words:
        raise ActionConfigError("teardown command is empty")
    for word in words:
        try:
            names = {name for _, name, _, _ in Formatter().parse(word) if name is not None}
        except ValueError as exc:
            raise ActionConfigError(f"teardown command word {word!r}: {exc}") from None
        unknown = names - set(PLACEHOLDERS)
        if unknown:
            raise ActionConfigError(f"teardown command word {word!r}: unknown placeholder "
                                    f"{{{sorted(unknown)[0]}}} (known: {', '.join('{%s}' % p for p in PLACEHOLDERS)})")
    if shutil.which(words[0]) is None:
        raise ActionConfigError(f"teardown command: executable {words[0]!r} not found or not executable")
    return words


def run_command(words: tuple[str, ...], model: str, variant: str, day: dt.date) -> str:
    """Run the command once for ``model``/``variant``; its output (last 500 characters) on success."""
    values = {"model": model, "variant": variant, "day": day.isoformat()}
    argv = [word.format(**values) if "{" in word else word for word in words]
    env = {**os.environ, "ROLLOUT_MODEL": model, "ROLLOUT_VARIANT": variant, "ROLLOUT_DAY": day.isoformat()}
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS, env=env,
                              check=False)
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        raise ActionConfigError(f"teardown command {argv[0]!r} cannot be run: {exc.strerror or exc}") from None
    except subprocess.TimeoutExpired:
        raise TransientActionError(f"{argv[0]} did not finish within {COMMAND_TIMEOUT_SECONDS} s") from None
    output = (done.stdout + done.stderr).strip()[-500:]
    if done.returncode != 0:
        raise TransientActionError(f"{argv[0]} exited with status {done.returncode}: {output or 'no output'}")
    return output or f"{argv[0]} exited 0"


# --- webhook ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Webhook:
    """A checked webhook URL: where to POST, how to name it, and the Basic-auth header (never shown)."""

    url: str
    safe_url: str
    authorization: str | None = field(default=None, repr=False)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_webhook(url: str) -> Webhook:
    """Check a webhook URL and move its credentials into a Basic-auth header; messages never show them."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ActionConfigError("teardown webhook URL is not a valid URL (bad host or port)") from None
    if parts.scheme not in ("http", "https"):
        raise ActionConfigError(f"teardown webhook URL must start with http:// or https:// (got {parts.scheme!r}:)")
    host = parts.hostname or ""
    if not host:
        raise ActionConfigError("teardown webhook URL has no host")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    safe = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    authorization = None
    if parts.username is not None or parts.password is not None:
        if parts.scheme == "http" and not _is_loopback(host):
            raise ActionConfigError(f"teardown webhook {safe}: credentials in the URL are sent only over https "
                                    "(or to this machine)")
        user = urllib.parse.unquote(parts.username or "")
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        authorization = f"Basic {token}"
    target = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    return Webhook(url=target, safe_url=safe, authorization=authorization)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as an error: never replay the POST (and its credentials) elsewhere."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: PLR0913 (urllib's signature)
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def post_json(hook: Webhook, body: dict, where: str, timeout: float = WEBHOOK_TIMEOUT_SECONDS) -> str:
    """POST ``body`` once to ``hook`` (named ``where`` in messages: never its secret parts).

    ``HTTP <status>`` on a 2xx answer; ``TransientActionError`` for what may pass (5xx, 408, 429, timeouts,
    resets, an unreachable host), ``ActionConfigError`` for what will not (other 4xx, a redirect, an untrusted
    certificate).
    """
    headers = {"Content-Type": "application/json"}
    if hook.authorization:
        headers["Authorization"] = hook.authorization
    request = urllib.request.Request(hook.url, data=json.dumps(body).encode(), method="POST", headers=headers)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        exc.close()
        message = f"POST {where} answered HTTP {exc.code}"
        if exc.code >= 500 or exc.code in RETRYABLE_HTTP:
            raise TransientActionError(message) from None
        if 300 <= exc.code < 400:
            raise ActionConfigError(f"{message} (a redirect: set the final URL)") from None
        raise ActionConfigError(message) from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLCertVerificationError):
            raise ActionConfigError(f"POST {where}: TLS certificate not trusted "
                                    f"({exc.reason.verify_message})") from None
        raise TransientActionError(f"POST {where} failed: {exc.reason}") from None
    except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, broken answers
        raise TransientActionError(f"POST {where} failed: {exc or type(exc).__name__}") from None


def call_webhook(hook: Webhook, model: str, variant: str, day: dt.date) -> str:
    """POST the teardown once; ``HTTP <status>`` on a 2xx answer."""
    return post_json(hook, {"model": model, "variant": variant, "day": day.isoformat(), "action": "teardown"},
                     hook.safe_url)


# --- the one retry layer of an action --------------------------------------------------------


def with_retries(action: str, once: Callable[[], str], *, label: str, attempts: int, backoff_seconds: float,
                 sleep: Callable[[float], None] = time.sleep) -> ActionResult:
    """Call ``once`` until it succeeds, at most ``attempts`` times, pausing ``backoff_seconds`` * 2^k between tries.

    Only a ``TransientActionError`` is retried; an ``ActionConfigError`` ends at once.
    """
    if attempts < 1:
        return ActionResult(False, 0, action, f"configuration error: attempts must be >= 1 (got {attempts})", True)
    error = ""
    for attempt in range(1, attempts + 1):
        started = time.perf_counter()
        try:
            detail = once()
        except ActionConfigError as exc:
            log.error("teardown %s: configuration error, not retried: %s", label, exc)
            return ActionResult(False, attempt, action, f"configuration error: {exc}", True)
        except TransientActionError as exc:
            error = str(exc)
            log.warning("teardown %s: attempt %d of %d failed after %.1f s: %s", label, attempt, attempts,
                        time.perf_counter() - started, error)
            if attempt < attempts:
                sleep(backoff_seconds * 2 ** (attempt - 1))
            continue
        log.info("teardown %s: %s succeeded on attempt %d (%.1f s)", label, action, attempt,
                 time.perf_counter() - started)
        return ActionResult(True, attempt, action, detail)
    return ActionResult(False, attempts, action, f"failed {attempts} time(s); last error: {error}")
