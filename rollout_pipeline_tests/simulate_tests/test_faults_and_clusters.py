"""Simulated days that the calendar does not change, users that cluster, and the candidate's log faults of #12."""

from __future__ import annotations

import collections
import datetime as dt

import numpy as np
import pytest

from rollout_pipeline.domain.routing import VariantRoute
from rollout_pipeline.simulate.day import simulate_day, start_shadow_routing
from rollout_pipeline.simulate.models import load_pair
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.routing import read_routing, write_routing
from rollout_pipeline.store.serving_queries import read_rows
from rollout_pipeline.store.summary import collect_day

DAY = dt.date(2026, 3, 14)
UTC = dt.UTC


@pytest.fixture
def sqlite_engine(sqlite_url):
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


def route(engine, model: str, kind: str, percent: float, stable_shadows: bool = False) -> None:
    """Canary at ``percent``; with ``stable_shadows`` the stable answers the candidate's requests in the background."""
    pair = load_pair(kind)
    start_shadow_routing(engine, model, kind)
    with engine.begin() as conn:
        current = read_routing(conn, model)
        write_routing(conn, model, (VariantRoute(pair.stable_variant, "stable", 100 - percent, stable_shadows),
                                    VariantRoute(pair.candidate_variant, "candidate", percent)),
                      expected_version=current.version, actor="test", reason="canary")


def rows_of(engine, model, table="prediction_log"):
    with engine.connect() as conn:
        return read_rows(conn, table, model)


def in_day(ts: dt.datetime) -> dt.timedelta:
    ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return ts - dt.datetime.combine(ts.date(), dt.time(), UTC)


def shape_of(rows):
    """What a day of rows is, apart from its date and its random correlation ids."""
    return sorted((in_day(r.ts), r.variant, r.served, r.entity_id, r.status, round(r.latency_ms, 9), r.prediction,
                   r.label) for r in rows)


def test_the_same_seed_gives_the_same_day_on_any_date(sqlite_engine, tmp_path):
    start_shadow_routing(sqlite_engine, "diabetes")
    days = {DAY: 3, dt.date(2031, 12, 1): 3, DAY + dt.timedelta(days=1): 4}
    for day, index in days.items():
        simulate_day(sqlite_engine, "diabetes", day, 600, "complaints", seed=5, day_index=index,
                     spill_dir=tmp_path / str(day))
    by_day = collections.defaultdict(list)
    for r in rows_of(sqlite_engine, "diabetes"):
        by_day[r.ts.date()].append(r)
    feedback_at = collections.defaultdict(list)
    day_of = {r.correlation_id: r.ts.date() for rows in by_day.values() for r in rows}
    for f in rows_of(sqlite_engine, "diabetes", "feedback"):
        feedback_at[day_of[f.correlation_id]].append((f.kind, f.value, f.ts - dt.datetime.combine(
            day_of[f.correlation_id], dt.time(), f.ts.tzinfo)))
    first, far, other = (by_day[d] for d in days)
    assert len(first) == 1200 and shape_of(first) == shape_of(far)  # eleven years apart, the same day
    assert sorted(feedback_at[DAY]) == sorted(feedback_at[dt.date(2031, 12, 1)])
    assert shape_of(other) != shape_of(first)  # another day index: another day


def test_users_cluster_entities_send_many_requests_and_differ(sqlite_engine, tmp_path):
    start_shadow_routing(sqlite_engine, "diabetes")
    simulate_day(sqlite_engine, "diabetes", DAY, 6_000, seed=2, knobs={"complaint_rate": 0.05},
                 spill_dir=tmp_path)
    served = [r for r in rows_of(sqlite_engine, "diabetes") if r.served and r.entity_id]
    per_entity = collections.Counter(r.entity_id for r in served)
    assert max(per_entity.values()) >= 20 * np.median(list(per_entity.values()))  # heavy tail of visits
    complaints = collections.Counter()
    of = {r.correlation_id: r.entity_id for r in served}
    for f in rows_of(sqlite_engine, "diabetes", "feedback"):
        if f.kind == "complaint" and f.correlation_id in of:
            complaints[of[f.correlation_id]] += 1
    busy = [e for e, n in per_entity.items() if n >= 30]
    rates = np.array([complaints[e] / per_entity[e] for e in busy])
    binomial_var = np.mean(rates) * (1 - np.mean(rates)) * np.mean([1 / per_entity[e] for e in busy])
    assert len(busy) >= 20 and np.var(rates) > 3 * binomial_var  # over-dispersed: entities differ
    latency = collections.defaultdict(list)
    for r in served:
        latency[r.entity_id].append(r.latency_ms)
    medians = [np.median(latency[e]) for e in busy]
    assert max(medians) > 1.5 * min(medians)  # some users' requests are slower, for every variant alike


def test_stable_shadowing_in_canary_answers_the_candidates_own_requests(sqlite_engine, tmp_path):
    route(sqlite_engine, "first", "diabetes-first", 20, stable_shadows=True)
    summary = simulate_day(sqlite_engine, "first", DAY, 2_000, seed=1, kind="diabetes-first", spill_dir=tmp_path)
    candidate_requests = summary.served["v1"] + summary.served_errors.get("v1", 0)  # mirrored before it answers
    assert summary.stage == "canary-20%" and summary.shadow_calls == {"baseline": candidate_requests}
    rows = rows_of(sqlite_engine, "first")
    by_request = collections.defaultdict(dict)
    for r in rows:
        by_request[r.correlation_id][(r.variant, r.served)] = r
    for request in by_request.values():
        if ("v1", True) in request:  # the candidate served: the baseline answered it too, off the request path
            assert set(request) == {("v1", True), ("baseline", False)}
            assert request[("baseline", False)].entity_id == request[("v1", True)].entity_id
        else:
            assert set(request) == {("baseline", True)}
    assert {r.prediction for r in rows if r.variant == "baseline" and r.status == "ok"} == {load_pair("diabetes-first").outputs["stable"][0][0]}


@pytest.mark.parametrize("scenario", ["missing", "null", "orphan", "duplicates"])
def test_candidate_log_faults_are_in_the_log_and_in_the_day_summary(engine, tmp_path, scenario):
    start_shadow_routing(engine, "diabetes")
    sim = simulate_day(engine, "diabetes", DAY, 3_000, scenario, seed=4, spill_dir=tmp_path)
    rows = rows_of(engine, "diabetes")
    assert sim.prediction_rows == len(rows)
    served = {r.correlation_id for r in rows if r.variant == "v1" and r.served}
    cand = [r for r in rows if r.variant == "v2"]
    with engine.connect() as conn:
        day = collect_day(conn, "diabetes", DAY, "v1", "v2")
    shadow = day.get("v2", False)
    if scenario == "missing":
        assert 0.25 < len(cand) / len(served) < 0.35 and sim.missing_rows == 3_000 - len(cand)
        assert day.pairing.served_in_sample > 3 * day.pairing.shadow_in_sample
    elif scenario == "null":
        nulls = [r for r in cand if r.status == "ok" and r.prediction is None and r.label is None]
        assert 0.12 < len(nulls) / len(cand) < 0.18
        assert shadow.null_outputs == len(nulls) and day.get("v1", True).null_outputs == 0
    elif scenario == "orphan":
        orphans = [r for r in cand if r.served]
        assert len(orphans) == sim.orphan_rows == 60 and not {r.correlation_id for r in orphans} & served
        assert day.get("v2", True).requests == 60
    else:
        keys = collections.Counter((r.correlation_id, r.variant, r.served, r.latency_ms, r.prediction) for r in cand)
        doubled = sum(n - 1 for n in keys.values())
        assert doubled == sim.duplicate_rows and 30 < doubled < 90
        assert shadow.requests == 3_000 + doubled
        # Whole day sampled: a doubled shadow row is one more shadow answer than there are served ones.
        assert day.pairing.shadow_in_sample - day.pairing.served_in_sample == doubled


@pytest.mark.parametrize("kind", ["diabetes", "diabetes-first", "cancer", "wine"])
def test_an_inaccurate_candidate_is_several_times_as_wrong_as_the_stable(sqlite_engine, tmp_path, kind):
    start_shadow_routing(sqlite_engine, kind)
    simulate_day(sqlite_engine, kind, DAY, 3_000, "inaccurate", seed=3, spill_dir=tmp_path)
    pair = load_pair(kind)
    rows = rows_of(sqlite_engine, kind)
    answers = collections.defaultdict(dict)
    for r in rows:
        if r.status == "ok":
            answers[r.correlation_id][r.variant] = r
    errors = collections.defaultdict(list)
    for f in rows_of(sqlite_engine, kind, "feedback"):
        for variant, r in answers[f.correlation_id].items():
            if f.kind == "actual":
                errors[variant].append(abs(r.prediction - f.value) if pair.task == "regression" else r.label != f.label)
    stable, candidate = np.mean(errors[pair.stable_variant]), np.mean(errors[pair.candidate_variant])
    assert candidate > min(2.5 * stable, 0.9), (stable, candidate)  # label error rates stop at 95%
