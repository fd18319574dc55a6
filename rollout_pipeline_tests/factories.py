"""Synthetic log days with known properties, for tests that must not depend on the simulator."""

from __future__ import annotations

import datetime as dt
import random

from rollout_pipeline.domain.records import PredictionRow

UTC = dt.UTC


def log_day(model: str, day: dt.date, stable: str, candidate: str, *, requests: int = 1500, stage: str = "shadow",
            canary_percent: int = 0, candidate_latency: float = 3.0, candidate_shift: float = 0.0,
            candidate_error_rate: float = 0.0, seed: int = 0) -> list[PredictionRow]:
    """A day of logs: shadow pairs (stage shadow) or a canary split, with knobs for the candidate."""
    rng = random.Random(seed)
    start = dt.datetime.combine(day, dt.time(), UTC)
    rows = []
    for i in range(requests):
        cid = f"{model}-{day}-{i}"
        ts = start + dt.timedelta(seconds=i * 86_000 / requests)
        x = rng.random()
        entity = f"e{rng.randrange(requests // 3 + 1)}"
        stable_row = PredictionRow(cid, ts, model, stable, True, entity, rng.lognormvariate(3.0, 0.3), "ok", x, None)
        status = "error" if rng.random() < candidate_error_rate else "ok"
        cand_pred = x + rng.gauss(candidate_shift, 0.03) if status == "ok" else None
        if stage == "shadow":
            rows.append(stable_row)
            rows.append(PredictionRow(cid, ts, model, candidate, False, entity,
                                      rng.lognormvariate(candidate_latency, 0.3), status, cand_pred, None))
        elif rng.random() * 100 < canary_percent:
            rows.append(PredictionRow(cid, ts, model, candidate, True, entity,
                                      rng.lognormvariate(candidate_latency, 0.3), status, cand_pred, None))
        else:
            rows.append(stable_row)
    return rows


def promoted(conn, rollout, day: dt.date, before: tuple[str, int], after: tuple[str, int]):
    """Record and apply a promotion of ``rollout`` on ``day`` (``before`` and ``after``: stage, share)."""
    from rollout_pipeline.domain.decide import Decision, RolloutState
    from rollout_pipeline.store.rollouts import apply_decision, record_decision

    record = record_decision(conn, rollout, day, Decision("promote", False, ("ok",), RolloutState(*before), *after),
                             actor="test", metrics={}, run_id=None)
    apply_decision(conn, record.id, actor="test")
    return record
