"""Notifications: one message per decision or teardown, to a JSON webhook and/or a Slack incoming webhook.

No Dagster here: the message is built by pure functions from what the decision
service returned, and posted with the standard library's ``urllib`` (as the
teardown webhook is; one POST of a small JSON body needs no client library). The
``Notifier`` resource in ``defs/resources.py`` holds the URLs (from ``EnvVar``s)
and hands them to :class:`Channels`, which the decision service calls once the
decision's transaction has committed (outside a Dagster run the service takes the
same variables from the environment: :func:`channels_from_environment`).

A notification never fails or blocks what it reports: every failure (bad URL,
unreachable host, an HTTP error after the retries) comes back as a ``Delivery``
with ``ok=False`` that the caller logs and records, never as an exception. URLs
are never printed: a webhook's path and query often *are* its secret (Slack's
``/services/T…/B…/…``), so messages name only the scheme and host.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from rollout_pipeline.actions import ActionConfigError, TransientActionError, parse_webhook, post_json
from rollout_pipeline.config import (ENV_NOTIFY_SLACK_WEBHOOK, ENV_NOTIFY_WEBHOOK, ENV_REPORT_BASE_URL,
                                     ENV_UI_BASE_URL, notification_settings)
from rollout_pipeline.review.links import partition_url, report_href

log = logging.getLogger(__name__)


DEFAULT_UI_BASE_URL = "http://127.0.0.1:3000"  # `dagster dev`'s default address
NOTIFY_TIMEOUT_SECONDS = 10
DEFAULT_ATTEMPTS = 3
DEFAULT_BACKOFF_SECONDS = 1.0  # pauses 1 s, then 2 s: a notification is never worth holding a run for long


@dataclass(frozen=True)
class Delivery:
    """How one notification went: the channel, success, attempts made, what happened (never the URL's secret)."""

    channel: str
    ok: bool
    attempts: int
    detail: str

    def line(self) -> str:
        return f"{self.channel}: {'sent' if self.ok else 'FAILED'} after {self.attempts} attempt(s): {self.detail}"


# --- the messages (pure) ----------------------------------------------------------------------


def links(model: str, day: str, *, run_id: str | None, ui_base_url: str, report_path: str | None = None,
          report_base_url: str = "") -> dict:
    """Links to the decision partition's page (its Partitions view with the day selected: a bare asset URL
    opens whichever partition was materialized last) and the run in the Dagster UI, and to the HTML report
    (served under ``report_base_url``, else by the UI itself at /reports)."""
    base = (ui_base_url or DEFAULT_UI_BASE_URL).rstrip("/")
    out = {"dagster": partition_url(base, day, model)}
    if run_id:
        out["run"] = f"{base}/runs/{urllib.parse.quote(run_id, safe='')}"
    name = f"{model}-{day}.html"
    if report_base_url:
        out["report"] = report_href(name, report_base_url)
    elif report_path:
        out["report"] = base + report_href(name)
    return out


def decision_message(decision: dict, *, model: str, day: str, actor: str, run_id: str | None,
                     links_: dict) -> dict:
    """The generic JSON message of a decision (``decision`` as ``DecisionOutcome.output()`` gives it)."""
    return {
        "event": "decision", "model": model, "date": day, "action": decision["action"],
        "forced": bool(decision.get("forced")), "reasons": list(decision.get("reasons", ())),
        "from": decision["from"], "to": decision["to"], "applied": bool(decision.get("applied")),
        "decision_id": decision.get("decision_id"), "actor": actor, "run_id": run_id, "links": links_,
        "approval": decision.get("approval"),  # "pending": the promotion waits for a person (not applied)
    }


def teardown_message(record: dict, *, run_id: str | None, links_: dict | None = None) -> dict:
    """The generic JSON message of a teardown (``TeardownRecord.as_dict()``)."""
    return {"event": "teardown", "model": record["model"], "variant": record["variant"],
            "date": str(record.get("day") or ""), "status": record.get("status"), "detail": record.get("detail"),
            "run_id": run_id, "links": links_ or {}}


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn treats these three as control characters (its docs, "Escaping text").
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _stage(side: dict) -> str:
    return f"{side['stage']} {side['canary_percent']}%"


def _unapplied(message: dict) -> str:
    if message.get("approval") == "pending":
        return " (waiting for approval: rollout-pipeline approve or reject)"
    return "" if message["applied"] else " (not applied yet)"


def slack_message(message: dict) -> dict:
    """The Slack incoming-webhook form of a message: a ``text`` fallback and mrkdwn blocks with the links."""
    if message["event"] == "decision":
        head = (f"{message['model']} {message['date']}: {message['action'].upper()}"
                f"{' (forced)' if message['forced'] else ''} {_stage(message['from'])} → {_stage(message['to'])}"
                f"{_unapplied(message)}")
        body = "\n".join(f"• {_slack_escape(r)}" for r in message["reasons"]) or "(no reasons)"
    else:
        head = f"{message['model']}/{message['variant']} {message['date']}: teardown {message['status']}"
        body = _slack_escape(message.get("detail") or "")
    link_names = {"dagster": "Dagster UI", "run": "run", "report": "report"}
    link_line = " | ".join(f"<{_slack_escape(url)}|{link_names.get(name, name)}>"
                           for name, url in message.get("links", {}).items() if str(url).startswith("http"))
    link_line += "".join(f" | report: {_slack_escape(url)}" for name, url in message.get("links", {}).items()
                         if name == "report" and not str(url).startswith("http"))
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{_slack_escape(head)}*\n{body}"}}]
    if link_line:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": link_line.strip(' |')}]})
    return {"text": head, "blocks": blocks}


# --- posting -------------------------------------------------------------------------------------


def safe_target(url: str) -> str:
    """What may be printed of a webhook URL: its scheme and host (the path and query may be the secret)."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an invalid URL)"
    return f"{parts.scheme or '?'}://{host}{port}/…"


def _without_path(message: str, url: str, channel: str) -> str:
    """A ``parse_webhook`` message about our URL: it speaks of the teardown webhook and may name the URL's path."""
    try:
        path = urllib.parse.urlsplit(url.strip()).path
    except ValueError:
        path = ""
    if len(path) > 1:
        message = message.replace(path, "/…")
    return message.replace("teardown webhook", f"{channel} notification")


def deliver(channel: str, url: str, body: dict, *, attempts: int = DEFAULT_ATTEMPTS,
            backoff_seconds: float = DEFAULT_BACKOFF_SECONDS,
            sleep: Callable[[float], None] = time.sleep) -> Delivery:
    """POST ``body`` to ``url`` with up to ``attempts`` tries (pauses ``backoff_seconds`` * 2^k); never raises.

    Only a transient failure (unreachable, timeout, 5xx, 408/425/429) is retried.
    """
    where = safe_target(url)
    try:
        hook = parse_webhook(url)
    except ActionConfigError as exc:
        return Delivery(channel, False, 0, f"configuration error: {_without_path(str(exc), url, channel)}")
    attempts = max(1, attempts)
    error = ""
    for attempt in range(1, attempts + 1):
        try:
            detail = post_json(hook, body, where, NOTIFY_TIMEOUT_SECONDS)
        except ActionConfigError as exc:
            log.warning("notification %s: not retried: %s", channel, exc)
            return Delivery(channel, False, attempt, f"configuration error: {exc}")
        except TransientActionError as exc:
            error = str(exc)
            log.warning("notification %s: attempt %d of %d failed: %s", channel, attempt, attempts, error)
            if attempt < attempts:
                sleep(backoff_seconds * 2 ** (attempt - 1))
            continue
        return Delivery(channel, True, attempt, f"{detail} from {where}")
    return Delivery(channel, False, attempts, f"failed {attempts} time(s); last error: {error}")


def notify(message: dict, *, webhook_url: str = "", slack_webhook_url: str = "", attempts: int = DEFAULT_ATTEMPTS,
           backoff_seconds: float = DEFAULT_BACKOFF_SECONDS,
           sleep: Callable[[float], None] = time.sleep) -> tuple[Delivery, ...]:
    """Post ``message`` to every configured channel (JSON as is; Slack in its own format); never raises."""
    out = []
    if webhook_url:
        out.append(deliver("webhook", webhook_url, message, attempts=attempts, backoff_seconds=backoff_seconds,
                           sleep=sleep))
    if slack_webhook_url:
        out.append(deliver("slack", slack_webhook_url, slack_message(message), attempts=attempts,
                           backoff_seconds=backoff_seconds, sleep=sleep))
    return tuple(out)


# --- the channels ------------------------------------------------------------------------------


class Announcer(Protocol):
    """What the decision service posts a decision through: :class:`Channels`, or the ``Notifier`` resource."""

    def announce_decision(self, decision: dict, *, model: str, day: str, actor: str, run_id: str | None, log,
                          report: str | None = None) -> str: ...


@dataclass(frozen=True)
class Channels:
    """Where notifications go (empty URLs: nowhere) and the base URLs of their links."""

    webhook_url: str = ""
    slack_webhook_url: str = ""
    ui_base_url: str = DEFAULT_UI_BASE_URL
    report_base_url: str = ""
    attempts: int = DEFAULT_ATTEMPTS
    backoff_seconds: float = DEFAULT_BACKOFF_SECONDS

    @property
    def configured(self) -> bool:
        return bool(self.webhook_url or self.slack_webhook_url)

    def links(self, model: str, day: str, run_id: str | None, report_path: str | None = None) -> dict:
        return links(model, day, run_id=run_id, ui_base_url=self.ui_base_url, report_path=report_path,
                     report_base_url=self.report_base_url)

    def send(self, message: dict) -> tuple[Delivery, ...]:
        """Post ``message`` to every configured channel; never raises (failures come back as deliveries)."""
        return notify(message, webhook_url=self.webhook_url, slack_webhook_url=self.slack_webhook_url,
                      attempts=self.attempts, backoff_seconds=self.backoff_seconds)

    def announce(self, message: dict, log) -> str:
        """Post ``message``, logging each delivery on ``log`` (a failure as a warning); what happened, in one line."""
        if not self.configured:
            return "none configured"
        lines = []
        for delivery in self.send(message):
            (log.info if delivery.ok else log.warning)("notification %s", delivery.line())
            lines.append(delivery.line())
        return "; ".join(lines)

    def announce_decision(self, decision: dict, *, model: str, day: str, actor: str, run_id: str | None, log,
                          report: str | None = None) -> str:
        """Post one decision (``decide --json``'s shape) with its links: the same message from every path."""
        if not self.configured:
            return "none configured"
        message = decision_message(decision, model=model, day=day, actor=actor, run_id=run_id,
                                   links_=self.links(model, day, run_id, report))
        return self.announce(message, log)


def channels_from_environment() -> Channels:
    """The channels the code location's ``notifier`` resource would use now: ROLLOUT_NOTIFY_WEBHOOK,
    ROLLOUT_NOTIFY_SLACK_WEBHOOK, ROLLOUT_UI_BASE_URL, ROLLOUT_REPORT_BASE_URL (empty is unset, as there)."""

    values = notification_settings()

    def env(name: str, default: str) -> str:
        return values[name] or default

    return Channels(webhook_url=env(ENV_NOTIFY_WEBHOOK, ""), slack_webhook_url=env(ENV_NOTIFY_SLACK_WEBHOOK, ""),
                    ui_base_url=env(ENV_UI_BASE_URL, DEFAULT_UI_BASE_URL),
                    report_base_url=env(ENV_REPORT_BASE_URL, ""))
