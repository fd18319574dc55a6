"""Process-wide logging setup for the CLI and the benchmarks."""

from __future__ import annotations

import logging

from rollout_pipeline.config import ENV_LOG_LEVEL, log_level

__all__ = ["ENV_LOG_LEVEL", "configure_logging"]


def configure_logging(level: str | None = None, *, default: str = "INFO") -> None:
    """Log to stderr as `time level logger: message`; level: ``level``, else ROLLOUT_LOG_LEVEL, else ``default``."""
    chosen = (level or log_level() or default).upper()
    logging.basicConfig(
        level=getattr(logging, chosen, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    # Third-party chatter that says nothing to our users at INFO.
    for noisy in ("alembic", "great_expectations", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
