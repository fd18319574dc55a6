"""Dagster resources: the store, and the teardown action (command, webhook or record-only).

Resources never read the environment themselves: their fields are filled from
``dg.EnvVar`` in ``definitions.py`` (through :func:`resources_from_environment`),
so Dagster resolves them when a run starts and shows the variable's name, never
its value, in the UI. An ``EnvVar`` that is not set fails resolution, so a
variable that is unset when the definitions load is replaced by its documented
default instead: the embedded SQLite file for the store, the record-only action,
3 attempts.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from pydantic import Field, PrivateAttr

from rollout_pipeline import actions, notify
from rollout_pipeline.config import (
    DEFAULT_STATE_DIR,
    DEFAULT_SPARK_MASTER,
    ENV_DATABASE_URL,
    ENV_LOG_RETENTION_DAYS,
    ENV_LOGS_URL,
    ENV_SPARK_MASTER,
    ENV_STATE_DIR,
    ENV_TEARDOWN_ATTEMPTS,
    ENV_TEARDOWN_COMMAND,
    ENV_TEARDOWN_WEBHOOK,
    embedded_database_url,
)
from rollout_pipeline.sources import LogSource, log_source
from rollout_pipeline.store.engine import make_engine

DEFAULT_TEARDOWN_ATTEMPTS = 3


class StoreResource(dg.ConfigurableResource):
    """The log store and the pipeline's tables: one SQLAlchemy engine per run."""

    database_url: str = Field(description=f"SQLAlchemy URL of the store (from {ENV_DATABASE_URL}); "
                                          "empty: the embedded SQLite file in state_dir")
    state_dir: str = Field(default=DEFAULT_STATE_DIR,
                           description=f"local state folder (from {ENV_STATE_DIR}) holding the embedded SQLite file")
    log_retention_days: int | None = Field(
        default=None, description=f"PostgreSQL: day partitions of the logs older than this many days are dropped by "
                                  f"the retention job (from {ENV_LOG_RETENTION_DAYS}); unset keeps them")
    _engine: sa.Engine | None = PrivateAttr(default=None)

    def url(self) -> str:
        """The URL this resource connects to (the embedded SQLite file when ``database_url`` is empty)."""
        return self.database_url or embedded_database_url(Path(self.state_dir or DEFAULT_STATE_DIR).resolve())

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = make_engine(self.url())
        return self._engine

    def teardown_after_execution(self, context) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


class LogsResource(dg.ConfigurableResource):
    """Where the day's prediction logs are read: the store's database, or Parquet in a lake through Spark.

    Spark starts on first use only (a run on the database source never starts it) and
    once per process: the in-process executor's run (one night's models included), the
    CLI and a test session share one. This is dagster-pyspark's ``LazyPySparkResource``
    pattern (a lazy ``getOrCreate``); that package itself is not used because it imports
    pyspark when the code location loads, which would make the 456 MB ``spark`` extra and
    Java a requirement of every deployment, database-only ones included.
    """

    url: str = Field(default="", description=f"the lake's URL, parquet:///abs/path or s3a://... (from {ENV_LOGS_URL}); "
                                             "empty: the store's prediction_log and feedback tables")
    spark_master: str = Field(default=DEFAULT_SPARK_MASTER,
                              description=f"Spark master for the lake (from {ENV_SPARK_MASTER}): local[*], "
                                          "spark://host:port or sc://host:port")

    @property
    def source(self) -> LogSource:
        return log_source(self.url, self.spark_master)


class TeardownAction(dg.ConfigurableResource):
    """What tearing a variant down means outside our tables; ``run`` retries transient failures only."""

    attempts: int = Field(default=DEFAULT_TEARDOWN_ATTEMPTS,
                          description=f"tries of a transiently failing action (from {ENV_TEARDOWN_ATTEMPTS})")
    backoff_seconds: float = Field(default=2.0, description="pause before the second try, doubled after each")

    def describe(self) -> str:
        """A printable description of the action (never a secret)."""
        raise NotImplementedError

    def attempt(self, model: str, variant: str, day: dt.date) -> str:
        """Run the action once; raises ``ActionConfigError`` or ``TransientActionError``."""
        raise NotImplementedError

    def run(self, model: str, variant: str, day: dt.date) -> actions.ActionResult:
        """Run the action for ``model``/``variant`` with its bounded retries; never raises for a failed action."""
        if self.attempts < 1:
            return actions.ActionResult(False, 0, self.describe(), f"configuration error: {ENV_TEARDOWN_ATTEMPTS} "
                                        f"must be a whole number >= 1 (got {self.attempts})", config_error=True)
        return actions.with_retries(self.describe(), lambda: self.attempt(model, variant, day),
                                    label=f"{model}/{variant}", attempts=self.attempts,
                                    backoff_seconds=self.backoff_seconds)


class CommandTeardown(TeardownAction):
    """Run a command without a shell; ``{model}``, ``{variant}``, ``{day}`` in its words are replaced."""

    command: str = Field(description=f"the command (from {ENV_TEARDOWN_COMMAND})")

    def describe(self) -> str:
        try:
            return f"command: {actions.parse_command(self.command)[0]}"
        except actions.ActionConfigError:
            return "command (misconfigured)"

    def attempt(self, model: str, variant: str, day: dt.date) -> str:
        return actions.run_command(actions.parse_command(self.command), model, variant, day)


class WebhookTeardown(TeardownAction):
    """POST ``{"model", "variant", "day", "action": "teardown"}``; credentials in the URL go as Basic auth."""

    url: str = Field(description=f"the webhook URL (from {ENV_TEARDOWN_WEBHOOK}); never shown")

    def describe(self) -> str:
        try:
            return f"webhook: POST {actions.parse_webhook(self.url).safe_url}"
        except actions.ActionConfigError:
            return "webhook (misconfigured)"

    def attempt(self, model: str, variant: str, day: dt.date) -> str:
        return actions.call_webhook(actions.parse_webhook(self.url), model, variant, day)


class RecordOnlyTeardown(TeardownAction):
    """No action outside our tables: the teardown is recorded only."""

    def describe(self) -> str:
        return actions.RECORD_ONLY

    def run(self, model: str, variant: str, day: dt.date) -> actions.ActionResult:
        return actions.ActionResult(True, 0, self.describe(),
                                    "no teardown action configured: recorded in our tables only")


class Notifier(dg.ConfigurableResource):
    """Posts one message per decision or teardown to the configured webhooks; empty URLs: nothing is sent."""

    webhook_url: str = Field(default="", description=f"generic JSON webhook (from {notify.ENV_NOTIFY_WEBHOOK}); "
                                                     "never shown")
    slack_webhook_url: str = Field(default="", description="Slack incoming webhook (from "
                                                           f"{notify.ENV_NOTIFY_SLACK_WEBHOOK}); never shown")
    ui_base_url: str = Field(default=notify.DEFAULT_UI_BASE_URL,
                             description=f"the Dagster UI's address for links (from {notify.ENV_UI_BASE_URL})")
    report_base_url: str = Field(default="", description="where the HTML reports are served, for links (from "
                                                         f"{notify.ENV_REPORT_BASE_URL}); empty: the file's path")
    attempts: int = Field(default=notify.DEFAULT_ATTEMPTS, description="tries of a transiently failing post")
    backoff_seconds: float = Field(default=notify.DEFAULT_BACKOFF_SECONDS,
                                   description="pause before the second try, doubled after each")

    def channels(self) -> notify.Channels:
        """The resolved settings as the decision service's plain channels (no Dagster there)."""
        return notify.Channels(webhook_url=self.webhook_url, slack_webhook_url=self.slack_webhook_url,
                               ui_base_url=self.ui_base_url, report_base_url=self.report_base_url,
                               attempts=self.attempts, backoff_seconds=self.backoff_seconds)

    @property
    def configured(self) -> bool:
        return self.channels().configured

    def links(self, model: str, day: str, run_id: str | None, report_path: str | None = None) -> dict:
        return self.channels().links(model, day, run_id, report_path)

    def send(self, message: dict) -> tuple[notify.Delivery, ...]:
        """Post ``message`` to every configured channel; never raises (failures come back as deliveries)."""
        return self.channels().send(message)

    def announce(self, message: dict, log) -> str:
        """Post ``message``, logging each delivery on ``log`` (a failure as a warning); what happened, in one line."""
        return self.channels().announce(message, log)

    def announce_decision(self, decision: dict, *, model: str, day: str, actor: str, run_id: str | None, log,
                          report: str | None = None) -> str:
        """Post one decision (``decide --json``'s shape) with its links: the same message from every path."""
        return self.channels().announce_decision(decision, model=model, day=day, actor=actor, run_id=run_id,
                                                 log=log, report=report)


def _env_or(name: str, default):
    """``EnvVar(name)`` when the variable is set now, not empty (Dagster resolves it per run), else ``default``.

    Empty is unset: docker/compose.yaml passes every documented setting to the code location and the run
    containers, empty when .env leaves it out (DockerRunLauncher needs each of its env_vars set)."""
    return dg.EnvVar(name) if (dg.EnvVar(name).get_value() or "").strip() else default


def store_resource() -> StoreResource:
    """The store named by ROLLOUT_DATABASE_URL, or the embedded SQLite file under ROLLOUT_STATE_DIR (./.state);
    log partitions kept ROLLOUT_LOG_RETENTION_DAYS days (unset: all)."""
    retention = dg.EnvVar.int(ENV_LOG_RETENTION_DAYS) if dg.EnvVar(ENV_LOG_RETENTION_DAYS).get_value() else None
    return StoreResource(database_url=_env_or(ENV_DATABASE_URL, ""),
                         state_dir=_env_or(ENV_STATE_DIR, DEFAULT_STATE_DIR), log_retention_days=retention)


def logs_resource() -> LogsResource:
    """The logs at ROLLOUT_LOGS_URL read by Spark on ROLLOUT_SPARK_MASTER; unset: the store's own tables."""
    return LogsResource(url=_env_or(ENV_LOGS_URL, ""), spark_master=_env_or(ENV_SPARK_MASTER, DEFAULT_SPARK_MASTER))


def teardown_action_resource() -> TeardownAction:
    """The action chosen by ROLLOUT_TEARDOWN_COMMAND, else ROLLOUT_TEARDOWN_WEBHOOK, else record-only."""
    attempts = (dg.EnvVar.int(ENV_TEARDOWN_ATTEMPTS) if dg.EnvVar(ENV_TEARDOWN_ATTEMPTS).get_value()
                else DEFAULT_TEARDOWN_ATTEMPTS)
    if dg.EnvVar(ENV_TEARDOWN_COMMAND).get_value():
        return CommandTeardown(command=dg.EnvVar(ENV_TEARDOWN_COMMAND), attempts=attempts)
    if dg.EnvVar(ENV_TEARDOWN_WEBHOOK).get_value():
        return WebhookTeardown(url=dg.EnvVar(ENV_TEARDOWN_WEBHOOK), attempts=attempts)
    return RecordOnlyTeardown()


def notifier_resource() -> Notifier:
    """Notifications to ROLLOUT_NOTIFY_WEBHOOK and/or ROLLOUT_NOTIFY_SLACK_WEBHOOK (neither set: none), links to
    ROLLOUT_UI_BASE_URL (default http://127.0.0.1:3000) and ROLLOUT_REPORT_BASE_URL."""
    return Notifier(webhook_url=_env_or(notify.ENV_NOTIFY_WEBHOOK, ""),
                    slack_webhook_url=_env_or(notify.ENV_NOTIFY_SLACK_WEBHOOK, ""),
                    ui_base_url=_env_or(notify.ENV_UI_BASE_URL, notify.DEFAULT_UI_BASE_URL),
                    report_base_url=_env_or(notify.ENV_REPORT_BASE_URL, ""))


def store_engine() -> sa.Engine:
    """An engine on the store the code location would use now, for callers outside a run (they dispose it)."""
    with dg.build_resources({"store": store_resource()}) as resources:
        return make_engine(resources.store.url())


def resources_from_environment() -> dict[str, dg.ConfigurableResource]:
    """Every resource of the code location, chosen from the environment as it is now.

    ``definitions.py`` calls it when the code location loads; an in-process run
    (the CLI) calls it again so that it sees the environment of its own invocation.
    """
    return {"store": store_resource(), "logs": logs_resource(), "teardown_action": teardown_action_resource(),
            "notifier": notifier_resource()}
