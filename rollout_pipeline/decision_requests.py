"""What the decision service is asked to decide: one small frozen request per way a decision is made.

Each request type carries the ``source`` the audit trail stores with its decision
(``decisions.metrics.source``; the stored values never change). The service
(``rollout_pipeline.decisions``) matches them exhaustively, one handler each; a
request of any other type is refused in one line (``unknown_request``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import ClassVar, Never, NoReturn

from rollout_pipeline.store.rollouts import RolloutError

SOURCES = ("analysis", "forced", "blocked", "manual_rollback", "guardrail", "approval", "expiry")  # stored, audited
VERDICTS = ("approve", "reject")
GUARDRAIL_ACTOR = "guardrail"


class DecisionRefused(RolloutError):
    """The decision cannot be made as asked; the message says why in one line."""


# --- what to decide: one frozen request per way a decision is asked for; ``source`` is what the audit stores ----

@dataclass(frozen=True)
class Nightly:
    """The day's analysis decides (the schedule, the UI, ``decide``): the policy's decision from the evidence."""

    model: str
    day: dt.date
    actor: str
    run_id: str | None = None
    dry_run: bool = False
    today: dt.date | None = None  # the UTC day of the request (default: today): an approval window counts in it
    source: ClassVar[str] = "analysis"


@dataclass(frozen=True)
class Force:
    """An operator's action (promote, hold or rollback) with a reason, on any past day, analysed or not."""

    model: str
    day: dt.date
    actor: str
    action: str
    reason: str | None
    run_id: str | None = None
    dry_run: bool = False
    source: ClassVar[str] = "forced"


@dataclass(frozen=True)
class BlockedDay:
    """The hold of a day whose run ``run_id`` was stopped by a blocking check (recorded once per run)."""

    model: str
    day: dt.date
    actor: str
    run_id: str
    dry_run: bool = False
    source: ClassVar[str] = "blocked"


@dataclass(frozen=True)
class ManualRollback:
    """``rollout-pipeline rollback``: a person rolls the rollout back now, with a reason."""

    model: str
    day: dt.date
    actor: str
    reason: str
    source: ClassVar[str] = "manual_rollback"


@dataclass(frozen=True)
class Guardrail:
    """The intraday guardrail's rollback: the sequential tests that crossed, on the day so far."""

    model: str
    day: dt.date
    alarms: tuple[str, ...]
    actor: str = GUARDRAIL_ACTOR
    run_id: str | None = None
    source: ClassVar[str] = "guardrail"


@dataclass(frozen=True)
class Approval:
    """A person's verdict (approve | reject) on the promotion of ``day`` waiting for approval."""

    model: str
    day: dt.date
    actor: str
    verdict: str
    reason: str | None
    rollback: bool = False  # verdict reject: roll back instead of holding
    run_id: str | None = None
    today: dt.date | None = None  # the UTC day of the request (default: today): the approval window counts in it
    source: ClassVar[str] = "approval"


DecisionRequest = Nightly | Force | BlockedDay | ManualRollback | Guardrail | Approval
REQUEST_TYPES: tuple[type, ...] = (Nightly, Force, BlockedDay, ManualRollback, Guardrail, Approval)


def unknown_request(request: Never) -> NoReturn:
    """``typing.assert_never`` for the decision service: a request type nobody handles is refused in one line."""
    names = ", ".join(t.__name__ for t in REQUEST_TYPES)
    raise DecisionRefused(f"unknown decision request {type(request).__name__}: the service decides {names}")


def day_request(model: str, day: dt.date, actor: str, *, run_id: str | None = None, force: str | None = None,
                reason: str | None = None, dry_run: bool = False,
                blocked: bool = False) -> Nightly | Force | BlockedDay:
    """The request of a run of the daily job (its run config's force and reason; ``blocked``: its check failed)."""
    if force:
        return Force(model, day, actor, force, reason, run_id=run_id, dry_run=dry_run)
    if reason:
        raise DecisionRefused("a reason is only taken with force (promote, hold or rollback)")
    if blocked:
        if run_id is None:
            raise DecisionRefused("the hold of a blocked day names the run that was blocked")
        return BlockedDay(model, day, actor, run_id, dry_run=dry_run)
    return Nightly(model, day, actor, run_id=run_id, dry_run=dry_run)
