"""The intraday guardrail's reading of the day so far: which candidates it watches, and their test.

A candidate is watched while it serves traffic (canary, and production while the old variant is kept and
shadows it), with its policy's guardrail on. Its day so far is the store's counts from midnight
(``store.intraday``), tested by ``domain.guardrail`` (anytime-valid sequential tests). The rollback itself goes
through the one decision service (``decisions``, a ``Guardrail`` request); the ``intraday_guardrail`` op
(``defs/guardrail.py``) wires the two. No Dagster here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from rollout_pipeline.domain.decide import RolloutState
from rollout_pipeline.domain.guardrail import GuardrailResult, SideCounts, check
from rollout_pipeline.store import rollouts as repo
from rollout_pipeline.store.intraday import counts_so_far

NO_COUNTS = SideCounts(0, 0, 0, 0)


@dataclass(frozen=True)
class WatchedDay:
    """A watched candidate's rollout, where it stands today, and the counts of its day so far by (variant,
    served)."""

    rollout: repo.Rollout
    state: RolloutState
    counts: dict[tuple[str, bool], SideCounts]

    def test(self) -> GuardrailResult:
        """The guardrail's test of the candidate against the stable side (in production, the new model serves
        and the old one shadows it)."""
        production = self.state.stage == "production"
        candidate = self.counts.get((self.rollout.candidate_variant, True), NO_COUNTS)
        stable = self.counts.get((self.rollout.stable_variant, not production), NO_COUNTS)
        return check(stable, candidate, self.rollout.policy)


def watched_days(connection: sa.Connection, at: dt.datetime) -> list[WatchedDay]:
    """Every candidate the guardrail watches at ``at`` (by model name), with its day so far until ``at``."""
    today = at.date()
    watched = []
    for model in sorted(set(repo.active_models(connection)) | set(repo.watched_models(connection))):
        rollout = repo.latest_rollout(connection, model)
        state = repo.state_before(connection, rollout, today)
        if rollout.policy.guardrail and state.stage in ("canary", "production"):
            watched.append((rollout, state))
    return [WatchedDay(rollout, state, counts_so_far(connection, rollout.model_name, at,
                                                     slo_ms=rollout.policy.latency_slo_p99_ms,
                                                     bounds=rollout.policy.prediction_bounds))
            for rollout, state in watched]
