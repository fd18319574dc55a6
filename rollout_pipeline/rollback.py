"""A manual rollback as one service call: decided and applied in one transaction, then announced.

``decisions.manual_rollback`` decides and applies it inside a transaction (``store.rollback``
says whether there is something to roll back to); this opens that
transaction and, once it has committed, posts the decision
(``decisions.announce``): a failed post is a warning, never a failed rollback.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from rollout_pipeline.decisions import DecisionOutcome, announce, manual_rollback
from rollout_pipeline.notify import Announcer


def roll_back(engine: sa.Engine, model: str, reason: str, *, actor: str, day: dt.date | None = None,
              notifier: Announcer | None = None, logger=None) -> DecisionOutcome:
    """Roll ``model`` back at once (on ``day``, default today UTC) and announce it; ``RolloutError`` says why not."""
    with engine.begin() as connection:
        outcome = manual_rollback(connection, model, reason, actor=actor, day=day or dt.datetime.now(dt.UTC).date())
    return announce(outcome, notifier, logger)
