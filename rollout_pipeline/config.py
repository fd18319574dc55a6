"""Settings read from the environment, in one place.

This module is the only one that reads the process's environment for a setting
(a test keeps it so): the rest of the package receives a :class:`Settings` (or a
:class:`ServeSettings` for the HTTP server) or the fields it needs. Every variable is
documented in the README's configuration table; a test keeps the two in step. The
Dagster resources do not read these settings: their fields come from ``dg.EnvVar``
of the same names (``defs/resources.py``), resolved by Dagster when a run starts.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_STATE_DIR = "ROLLOUT_STATE_DIR"
ENV_DATABASE_URL = "ROLLOUT_DATABASE_URL"
ENV_TEARDOWN_COMMAND = "ROLLOUT_TEARDOWN_COMMAND"
ENV_TEARDOWN_WEBHOOK = "ROLLOUT_TEARDOWN_WEBHOOK"
ENV_TEARDOWN_ATTEMPTS = "ROLLOUT_TEARDOWN_ATTEMPTS"
ENV_LOG_RETENTION_DAYS = "ROLLOUT_LOG_RETENTION_DAYS"
# The store names these two in its messages (store.lake, store.spark, a lower layer that does not import this
# module); test_config.py keeps the names equal.
ENV_LOGS_URL = "ROLLOUT_LOGS_URL"
ENV_SPARK_MASTER = "ROLLOUT_SPARK_MASTER"
ENV_LOG_LEVEL = "ROLLOUT_LOG_LEVEL"
ENV_DAGSTER_HOME = "DAGSTER_HOME"
ENV_MAX_BODY = "ROLLOUT_SERVE_MAX_BODY_BYTES"
ENV_TOKEN = "ROLLOUT_SERVE_TOKEN"
ENV_FEEDBACK_MAX_AGE = "ROLLOUT_FEEDBACK_MAX_AGE_SECONDS"
ENV_FEEDBACK_MAX_AHEAD = "ROLLOUT_FEEDBACK_MAX_AHEAD_SECONDS"
ENV_NOTIFY_WEBHOOK = "ROLLOUT_NOTIFY_WEBHOOK"
ENV_NOTIFY_SLACK_WEBHOOK = "ROLLOUT_NOTIFY_SLACK_WEBHOOK"
ENV_UI_BASE_URL = "ROLLOUT_UI_BASE_URL"
ENV_REPORT_BASE_URL = "ROLLOUT_REPORT_BASE_URL"

DEFAULT_STATE_DIR = ".state"
DEFAULT_SPARK_MASTER = "local[*]"
EMBEDDED_DB_FILENAME = "rollout.db"


class SettingsError(ValueError):
    """An environment variable with a value that cannot be used; the message names it."""


@dataclass(frozen=True)
class Settings:
    """Resolved settings: local state, the database, where the day's logs are read, teardown and logging."""

    state_dir: Path
    database_url: str
    teardown_attempts: int = 3
    log_retention_days: int | None = None
    logs_url: str = ""  # empty: the database's tables; else a lake read by Spark on spark_master
    spark_master: str = DEFAULT_SPARK_MASTER
    log_level: str | None = None
    dagster_home: str | None = None


def _get(name: str, environ: Mapping[str, str] | None = None) -> str:
    """The variable's value, stripped; empty when unset (empty is unset, as docker/compose.yaml passes it)."""
    return ((os.environ if environ is None else environ).get(name) or "").strip()


def state_dir() -> Path:
    """The local state folder (embedded database, Dagster storage, reports, spill files)."""
    return Path(_get(ENV_STATE_DIR) or DEFAULT_STATE_DIR).resolve()


def embedded_database_url(folder: Path | None = None) -> str:
    """SQLAlchemy URL of the embedded SQLite log store inside the state folder."""
    return f"sqlite:///{(folder or state_dir()) / EMBEDDED_DB_FILENAME}"


def log_level() -> str | None:
    """ROLLOUT_LOG_LEVEL, or None (read apart from :func:`load_settings`: logging is set up before any command)."""
    return _get(ENV_LOG_LEVEL) or None


def log_source_settings() -> tuple[str, str]:
    """The log source's (url, Spark master): ROLLOUT_LOGS_URL (empty: the database), ROLLOUT_SPARK_MASTER."""
    return _get(ENV_LOGS_URL), _get(ENV_SPARK_MASTER) or DEFAULT_SPARK_MASTER


def notification_settings() -> dict[str, str]:
    """The notification channels' variables by name (empty: unset), as the ``notifier`` resource reads them."""
    return {name: _get(name) for name in (ENV_NOTIFY_WEBHOOK, ENV_NOTIFY_SLACK_WEBHOOK, ENV_UI_BASE_URL,
                                          ENV_REPORT_BASE_URL)}


def load_settings() -> Settings:
    """Settings from the environment, with the embedded default when no database is named."""
    folder = state_dir()
    url, master = log_source_settings()
    return Settings(
        state_dir=folder,
        database_url=os.environ.get(ENV_DATABASE_URL) or embedded_database_url(folder),
        # Checked here so that the CLI refuses a bad value in one line before a run; the code
        # location's resources take the same variables as EnvVars (defs/resources.py).
        teardown_attempts=_int_env(ENV_TEARDOWN_ATTEMPTS, 3, minimum=1),
        log_retention_days=_int_env(ENV_LOG_RETENTION_DAYS, None, minimum=1),
        logs_url=url,
        spark_master=master,
        log_level=log_level(),
        dagster_home=_get(ENV_DAGSTER_HOME) or None,
    )


def _int_env(name: str, default: int | None, *, minimum: int) -> int | None:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a whole number >= {minimum}") from None
    if value < minimum:
        raise SettingsError(f"{name}={raw!r}: expected a whole number >= {minimum}")
    return value


# --- the HTTP server's settings (read by `serve` only) -------------------------------------------

@dataclass(frozen=True)
class ServeSettings:
    """The HTTP server's limits; ``token`` None means no authentication."""

    max_body_bytes: int = 1_048_576
    token: str | None = None
    feedback_max_age: dt.timedelta = dt.timedelta(days=3)
    feedback_max_ahead: dt.timedelta = dt.timedelta(minutes=5)
    recent_ids: int = 10_000

    def __repr__(self) -> str:  # the token never shows
        return (f"ServeSettings(max_body_bytes={self.max_body_bytes}, token={'***' if self.token else None}, "
                f"feedback_max_age={self.feedback_max_age}, feedback_max_ahead={self.feedback_max_ahead}, "
                f"recent_ids={self.recent_ids})")


_TEN_YEARS = 10 * 366 * 86_400


def _positive_number(environ: Mapping[str, str], name: str, default: float, *, integer: bool = False,
                     most: float = _TEN_YEARS) -> float:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise SettingsError(f"{name} must be a {'whole ' if integer else ''}number, got {text[:40]!r}") from None
    if not (0 < value <= most):
        raise SettingsError(f"{name} must be > 0 and <= {most:g}, got {text[:40]!r}")
    return value


def serve_settings_from_env(environ: Mapping[str, str]) -> ServeSettings:
    """ServeSettings from the ``ROLLOUT_SERVE_*`` / ``ROLLOUT_FEEDBACK_*`` variables in ``environ`` (unset: defaults)."""
    default = ServeSettings()
    token = environ.get(ENV_TOKEN) or None
    return ServeSettings(
        max_body_bytes=int(_positive_number(environ, ENV_MAX_BODY, default.max_body_bytes, integer=True,
                                            most=1 << 30)),
        token=token,
        feedback_max_age=dt.timedelta(seconds=_positive_number(
            environ, ENV_FEEDBACK_MAX_AGE, default.feedback_max_age.total_seconds())),
        feedback_max_ahead=dt.timedelta(seconds=_positive_number(
            environ, ENV_FEEDBACK_MAX_AHEAD, default.feedback_max_ahead.total_seconds())),
    )


def load_serve_settings() -> ServeSettings:
    """The HTTP server's settings from this process's environment (``SettingsError`` names a bad one)."""
    return serve_settings_from_env(os.environ)
