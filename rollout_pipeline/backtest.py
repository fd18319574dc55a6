"""Backtest a policy: re-decide a model's past days from their stored evidence, changing nothing.

Two halves. The pure one (:func:`redecide`, :func:`backtest`) takes stored days
(the summary, the validation failures, the state the day was decided in and the
decision taken then) and a policy, and returns one row per day: the decision
then, the decision the policy would take, and what differs. It runs the same
``evaluate()`` + ``evidence_from()`` + ``decide()`` as the nightly decision,
from the stored decision's ``stage_before``/``percent_before`` (each day from the
state it was really in, not from a simulated trajectory), on the same pooled nights
of its step as then. The reading half
(:func:`load_days`) fetches those days through the store on a read-only
connection, and re-collects a day's summary only where the logs are still there
and the evidence is not (validated with the suites then). No Dagster here: the
CLI and the ``backtest`` job (``defs/backtest.py``) call :func:`run_backtest`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from rollout_pipeline.decision_outcome import data_quality_failures, suite_results
from rollout_pipeline.domain.days import not_over
from rollout_pipeline.domain.decide import Decision, RolloutState, decide, evidence_from
from rollout_pipeline.domain.evaluate import evaluate
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.domain.summary import DaySummary
from rollout_pipeline.review.render import Table
from rollout_pipeline.store import rollouts as repo
from rollout_pipeline.store.evidence import load_evidence
from rollout_pipeline.store.readonly import read_only
from rollout_pipeline.store.summary import collect_day
from rollout_pipeline.store.evidence import outcomes_arrived
from rollout_pipeline.store.teardown import teardown_records
from rollout_pipeline.steps import earlier_nights
from rollout_pipeline.validation.suites import SuiteResult, validate_day

MAX_DAYS = 366


class BacktestError(ValueError):
    """A backtest that cannot run as asked (bad range, no rollout); the message says why in one line."""


@dataclass(frozen=True)
class Taken:
    """The decision taken then, as stored."""

    action: str
    forced: bool
    stage_after: str
    percent_after: int
    actor: str
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoredDay:
    """One past day as the backtest needs it; ``summary`` None: nothing to re-decide from (``why`` says why)."""

    day: dt.date
    state: RolloutState | None
    taken: Taken | None
    summary: DaySummary | None = None
    stage: str | None = None  # the stage the summary was collected in
    failures: tuple[str, ...] = ()  # the blocking validation's failures
    old_variant_deployable: bool = True
    source: str = "stored"  # stored | re-collected | none
    why: str = ""
    earlier: tuple[DaySummary, ...] = ()  # the step's earlier nights, pooled with this one (oldest first)
    outcomes_seen: bool | None = None  # whether any actual outcome ever arrived for the rollout


@dataclass(frozen=True)
class BacktestRow:
    """A day re-decided: then, now (under the policy), and what differs."""

    day: dt.date
    state: str
    then: str
    now: str
    differs: bool
    difference: str
    evidence: str
    reasons: tuple[str, ...]  # the new policy's reasons
    then_reasons: tuple[str, ...] = ()  # the reasons stored with the decision taken then

    def as_dict(self) -> dict:
        return {"date": self.day.isoformat(), "state": self.state, "then": self.then, "now": self.now,
                "differs": self.differs, "difference": self.difference, "evidence": self.evidence,
                "reasons": list(self.reasons), "then_reasons": list(self.then_reasons)}


def _share(stage: str, percent: int) -> str:
    return f"{stage} {percent}%"


def _said(action: str | None, stage: str, percent: int, forced: bool = False) -> str:
    return f"{action}{' (forced)' if forced else ''} -> {_share(stage, percent)}"


def redecide(day: StoredDay, policy: Policy) -> BacktestRow:
    """Re-decide one stored day under ``policy`` from the state it was decided in; what differs from then."""
    state = day.state
    then = (_said(day.taken.action, day.taken.stage_after, day.taken.percent_after, day.taken.forced)
            if day.taken else "not decided")
    where = _share(state.stage, state.canary_percent) if state else "-"
    then_reasons = day.taken.reasons if day.taken else ()
    if day.summary is None or state is None:
        return BacktestRow(day.day, where, then, "cannot re-decide", False, day.why, day.source, (), then_reasons)
    evaluation = evaluate((*day.earlier, day.summary), day.stage or state.stage, policy, percent=state.canary_percent,
                          outcomes_seen=day.outcomes_seen)
    evidence = evidence_from(evaluation, day.failures, old_variant_deployable=day.old_variant_deployable)
    new: Decision = decide(state, evidence, policy)
    now = _said(new.action, new.stage_after, new.percent_after)
    difference = _difference(day.taken, new)
    return BacktestRow(day.day, where, then, now, bool(difference), difference or "same", day.source, new.reasons,
                       then_reasons)


def _difference(taken: Taken | None, new: Decision) -> str:
    if taken is None:
        return f"not decided then; now {new.action}"
    if taken.action != new.action:
        forced = " (then forced by " + taken.actor + ")" if taken.forced else ""
        return f"{taken.action} -> {new.action}{forced}"
    if (taken.stage_after, taken.percent_after) != (new.stage_after, new.percent_after):
        return (f"{new.action} to {_share(new.stage_after, new.percent_after)} instead of "
                f"{_share(taken.stage_after, taken.percent_after)}")
    return ""


def backtest(days: Sequence[StoredDay], policy: Policy) -> list[BacktestRow]:
    """Every stored day re-decided under ``policy``, in day order."""
    return [redecide(d, policy) for d in sorted(days, key=lambda d: d.day)]


def table(rows: Sequence[BacktestRow]) -> Table:
    """The rows as a table: day, state, then, now, what differs, evidence."""
    return Table(("date", "state before", "decided then", "new policy", "differs", "evidence"),
                 tuple((r.day.isoformat(), r.state, r.then, r.now, r.difference if r.differs else "",
                        r.evidence) for r in rows))


def days_between(start: dt.date, end: dt.date, today: dt.date | None = None) -> list[dt.date]:
    """The days from ``start`` to ``end`` inclusive; refused when reversed, longer than MAX_DAYS or not over (UTC)."""
    problem = not_over(end, today)
    if problem:
        raise BacktestError(problem)
    if end < start:
        raise BacktestError(f"--from {start} is after --to {end}")
    count = (end - start).days + 1
    if count > MAX_DAYS:
        raise BacktestError(f"{count} days from {start} to {end}: at most {MAX_DAYS} days per backtest")
    return [start + dt.timedelta(days=i) for i in range(count)]


# --- reading the stored days (through the store, read-only) -------------------------------------------


Validator = Callable[[DaySummary, str, Policy], list[SuiteResult]]


def load_days(connection: sa.Connection, model: str, days: Sequence[dt.date], policy: Policy, *,
              recollect: bool = True, validate: Validator = validate_day,
              progress: Callable[[int], None] | None = None) -> list[StoredDay]:
    """Each day's stored evidence, state and decision; a day's logs re-collected (and validated) only when it has
    no stored evidence and its logs are still there."""
    if repo.latest_rollout(connection, model) is None:
        raise BacktestError(f"{model} has no rollout: nothing to backtest")
    torn = [t for t in teardown_records(connection, model=model) if t.status == "done"]
    out: list[StoredDay] = []
    for day in days:
        if progress is not None and out:
            progress(1)
        try:
            rollout = repo.rollout_for_day(connection, model, day)
        except repo.RolloutError as exc:
            out.append(StoredDay(day, None, None, source="none", why=str(exc)))
            continue
        state = repo.state_before(connection, rollout, day)
        live = repo.live_decision(connection, model, day)
        taken = (Taken(live.action, live.forced, live.stage_after, live.percent_after, live.actor, tuple(live.reasons))
                 if live is not None and live.rollout_id == rollout.id else None)
        deployable = not any(t.variant == rollout.stable_variant and t.day < day for t in torn)
        evidence = load_evidence(connection, model, day)
        earlier, _ = earlier_nights(connection, rollout, day, state.stage)
        seen = outcomes_arrived(connection, rollout.id)
        if evidence is not None and evidence.rollout_id == rollout.id:
            failures = tuple(data_quality_failures(suite_results(evidence)))
            out.append(StoredDay(day, state, taken, evidence.summary, evidence.stage, failures, deployable,
                                 earlier=tuple(earlier), outcomes_seen=seen))
            continue
        if not recollect:
            out.append(StoredDay(day, state, taken, source="none", why="no stored evidence"))
            continue
        summary = collect_day(connection, model, day, rollout.stable_variant, rollout.candidate_variant,
                              accuracy_day=policy.accuracy_day(day))
        if summary.total_rows == 0:
            out.append(StoredDay(day, state, taken, source="none", why="no stored evidence and no logs left"))
            continue
        suites = {s.name: s for s in validate(summary, state.stage, policy)}
        out.append(StoredDay(day, state, taken, summary, state.stage, tuple(data_quality_failures(suites)),
                             deployable, source="re-collected", earlier=tuple(earlier), outcomes_seen=seen))
    return out


def run_backtest(engine: sa.Engine, model: str, start: dt.date, end: dt.date, policy: Policy, *,
                 recollect: bool = True, validate: Validator = validate_day,
                 progress: Callable[[int], None] | None = None) -> list[BacktestRow]:
    """Re-decide ``model``'s days ``start``..``end`` under ``policy`` on a read-only connection (``progress(n)``:
    n more days read)."""
    days = days_between(start, end)
    with read_only(engine) as connection:
        stored = load_days(connection, model, days, policy, recollect=recollect, validate=validate,
                           progress=progress)
    if progress is not None and stored:
        progress(1)
    return backtest(stored, policy)
