"""Settings read from the environment, in one place.

Every variable is documented in the README's configuration table; a test keeps
the two in step. The Dagster resources do not read these settings: their fields
come from ``dg.EnvVar`` of the same names (``defs/resources.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_STATE_DIR = "ROLLOUT_STATE_DIR"
ENV_DATABASE_URL = "ROLLOUT_DATABASE_URL"
ENV_TEARDOWN_COMMAND = "ROLLOUT_TEARDOWN_COMMAND"
ENV_TEARDOWN_WEBHOOK = "ROLLOUT_TEARDOWN_WEBHOOK"
ENV_TEARDOWN_ATTEMPTS = "ROLLOUT_TEARDOWN_ATTEMPTS"
ENV_LOG_RETENTION_DAYS = "ROLLOUT_LOG_RETENTION_DAYS"

DEFAULT_STATE_DIR = ".state"
EMBEDDED_DB_FILENAME = "rollout.db"


@dataclass(frozen=True)
class Settings:
    """Resolved settings: where local state lives and which database holds the logs."""

    state_dir: Path
    database_url: str
    teardown_attempts: int = 3
    log_retention_days: int | None = None


def state_dir() -> Path:
    """The local state folder (embedded database, Dagster storage, reports, spill files)."""
    return Path(os.environ.get(ENV_STATE_DIR) or DEFAULT_STATE_DIR).resolve()


def embedded_database_url(folder: Path | None = None) -> str:
    """SQLAlchemy URL of the embedded SQLite log store inside the state folder."""
    return f"sqlite:///{(folder or state_dir()) / EMBEDDED_DB_FILENAME}"


def load_settings() -> Settings:
    """Settings from the environment, with the embedded default when no database is named."""
    folder = state_dir()
    return Settings(
        state_dir=folder,
        database_url=os.environ.get(ENV_DATABASE_URL) or embedded_database_url(folder),
        # Checked here so that the CLI refuses a bad value in one line before a run; the code
        # location's resources take the same variables as EnvVars (defs/resources.py).
        teardown_attempts=_int_env(ENV_TEARDOWN_ATTEMPTS, 3, minimum=1),
        log_retention_days=_int_env(ENV_LOG_RETENTION_DAYS, None, minimum=1),
    )


class SettingsError(ValueError):
    """An environment variable with a value that cannot be used."""


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
