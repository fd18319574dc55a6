"""Process-wide logging setup for the CLI and the benchmarks."""

from __future__ import annotations

import logging
import os

ENV_LOG_LEVEL = "ROLLOUT_LOG_LEVEL"


def configure_logging(level: str | None = None) -> None:
    """Log to stderr as `time level logger: message`; level from ROLLOUT_LOG_LEVEL (default INFO)."""
    chosen = (level or os.environ.get(ENV_LOG_LEVEL) or "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, chosen, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    # Third-party chatter that says nothing to our users at INFO.
    for noisy in ("alembic", "great_expectations", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
