"""Simulated days through the real Router: each scenario leaves the effect it claims in the stored data."""

from __future__ import annotations

import collections
import datetime as dt
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from rollout_pipeline.domain.routing import VariantRoute
from rollout_pipeline.serving.router import NoRouting
from rollout_pipeline.simulate.commands import simulate
from rollout_pipeline.simulate.day import simulate_day, start_shadow_routing
from rollout_pipeline.simulate.models import load_pair
from rollout_pipeline.simulate.scenarios import SCENARIO_NAMES, UnknownScenario
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.routing import read_routing, routing_history_rows, write_routing
from rollout_pipeline.store.serving_queries import read_rows

DAY = dt.date(2026, 3, 14)
UTC = dt.UTC


@pytest.fixture
def sqlite_engine(sqlite_url):
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


def set_stage(engine, model: str, kind: str, percent: float) -> None:
    """Move ``model`` to canary at ``percent`` (after start_shadow_routing)."""
    pair = load_pair(kind)
    with engine.begin() as conn:
        current = read_routing(conn, model)
        write_routing(conn, model, (VariantRoute(pair.stable_variant, "stable", 100 - percent),
                                    VariantRoute(pair.candidate_variant, "candidate", percent)),
                      expected_version=current.version, actor="test", reason="canary")


def run(engine, tmp_path, scenario="healthy", requests=3_000, kind="diabetes", percent=None, day=DAY, **kwargs):
    start_shadow_routing(engine, kind)
    if percent is not None:
        set_stage(engine, kind, kind, percent)
    summary = simulate_day(engine, kind, day, requests, scenario, seed=7, spill_dir=tmp_path / "spill", **kwargs)
    return summary, predictions(engine, kind), feedback(engine, kind)


def predictions(engine, model):
    with engine.connect() as conn:
        return read_rows(conn, "prediction_log", model)


def feedback(engine, model):
    with engine.connect() as conn:
        return read_rows(conn, "feedback", model)


def utc(ts: dt.datetime) -> dt.datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def by_variant(rows, **where):
    out = collections.defaultdict(list)
    for r in rows:
        if all(getattr(r, k) == v for k, v in where.items()):
            out[r.variant].append(r)
    return out


def p99(rows) -> float:
    return float(np.percentile([r.latency_ms for r in rows], 99))


def test_a_model_without_routing_cannot_be_simulated(engine, tmp_path):
    with pytest.raises(NoRouting, match="diabetes has no routing config: start its rollout first"):
        simulate_day(engine, "diabetes", DAY, 10, spill_dir=tmp_path)
    with pytest.raises(UnknownScenario, match="unknown scenario 'nope': one of healthy, slow"):
        start_shadow_routing(engine, "diabetes")
        simulate_day(engine, "diabetes", DAY, 10, "nope", spill_dir=tmp_path)


def test_start_shadow_routing_is_recorded_as_the_simulator_and_is_idempotent(engine):
    config = start_shadow_routing(engine, "churn", kind="cancer")
    assert (config.stable.variant, config.candidate.variant, config.candidate.shadow) == ("v1", "v2", True)
    assert config.candidate.traffic_percent == 0
    assert start_shadow_routing(engine, "churn", kind="cancer").version == config.version
    with engine.connect() as conn:
        (history,) = routing_history_rows(conn, "churn")
    assert history.actor == "simulator"


def test_a_healthy_shadow_day_pairs_every_answer_and_writes_later_feedback(engine, tmp_path):
    summary, rows, fb = run(engine, tmp_path, requests=2_000)
    assert summary.stage == "shadow" and summary.requests == 2_000
    assert summary.prediction_rows == len(rows) == 4_000
    day_start = dt.datetime.combine(DAY, dt.time(), UTC)
    assert all(day_start <= utc(r.ts) < day_start + dt.timedelta(days=1) for r in rows)
    pairs = collections.defaultdict(dict)
    for r in rows:
        pairs[r.correlation_id][r.served] = r
    assert len(pairs) == 2_000
    assert all(p[True].variant == "v1" and p[False].variant == "v2" for p in pairs.values())
    assert all(p[True].entity_id == p[False].entity_id for p in pairs.values())
    anonymous = sum(p[True].entity_id is None for p in pairs.values())
    assert 100 < anonymous < 300  # ~10% without an entity id
    entity_visits = collections.Counter(p[True].entity_id for p in pairs.values() if p[True].entity_id)
    assert entity_visits.most_common(1)[0][1] >= 5  # repeat visitors
    hours = collections.Counter(utc(r.ts).hour for r in rows if r.served)
    assert hours[15] > 2 * hours[3]  # daily curve: afternoon peak, night trough

    kinds = collections.Counter(f.kind for f in fb)
    assert kinds["complaint"] == summary.complaints > 0 and kinds["actual"] == summary.actuals > 1_000
    served_at = {cid: utc(p[True].ts) for cid, p in pairs.items()}
    truth = load_pair("diabetes").targets
    for f in fb:
        assert f.correlation_id in served_at
        assert served_at[f.correlation_id] < utc(f.ts) < day_start + dt.timedelta(days=2)
        if f.kind == "complaint":
            assert f.value == 1.0
        else:
            assert f.value in set(truth.tolist()) and f.label is None
    assert any(utc(f.ts) >= day_start + dt.timedelta(days=1) for f in fb if f.kind == "actual")
    # healthy: the candidate is a little slower, no burst of errors
    variants = by_variant(rows)
    assert p99(variants["v2"]) < 2 * p99(variants["v1"])
    assert sum(r.status != "ok" for r in variants["v2"]) < 0.01 * 2_000
    # and better: closer to the truth on the actuals
    actual = {f.correlation_id: f.value for f in fb if f.kind == "actual"}
    err = {v: np.mean([abs(pairs[c][v == "v1"].prediction - y) for c, y in actual.items()
                       if pairs[c][v == "v1"].prediction is not None]) for v in ("v1", "v2")}
    assert err["v2"] < err["v1"]


def test_canary_share_is_the_configured_one_and_sticky_across_days(sqlite_engine, tmp_path):
    knobs = {"population": 4_000}
    _, rows, _ = run(sqlite_engine, tmp_path, requests=6_000, percent=20, knobs=knobs)
    simulate_day(sqlite_engine, "diabetes", DAY + dt.timedelta(days=1), 6_000, seed=8, knobs=knobs,
                 spill_dir=tmp_path / "spill")
    rows = predictions(sqlite_engine, "diabetes")
    served = [r for r in rows if r.served]
    assert not [r for r in rows if not r.served]  # canary: no mirroring
    variant_of = collections.defaultdict(set)
    for r in served:
        if r.entity_id:
            variant_of[r.entity_id].add(r.variant)
    assert all(len(v) == 1 for v in variant_of.values()), "an entity changed variant"
    entity_share = sum(v == {"v2"} for v in variant_of.values()) / len(variant_of)
    request_share = sum(r.variant == "v2" for r in served) / len(served)
    assert abs(entity_share - 0.20) < 0.03, entity_share
    # Requests follow entities, and a few frequent visitors weigh a lot: looser.
    assert abs(request_share - 0.20) < 0.10, request_share


def test_slow_candidate_latency_p99_is_far_above_the_stable(sqlite_engine, tmp_path):
    _, rows, _ = run(sqlite_engine, tmp_path, "slow")
    variants = by_variant(rows)
    assert p99(variants["v2"]) > 2.5 * p99(variants["v1"])
    assert any(r.status == "timeout" for r in variants["v2"])  # the tail crosses the shadow timeout
    assert all(r.status != "timeout" for r in variants["v1"])


def test_shifted_candidate_predictions_move_away_from_the_stable(sqlite_engine, tmp_path):
    _, rows, _ = run(sqlite_engine, tmp_path, "shifted")
    pairs = collections.defaultdict(dict)
    for r in rows:
        pairs[r.correlation_id][r.served] = r.prediction
    diffs = [p[False] - p[True] for p in pairs.values() if p.get(False) is not None and p.get(True) is not None]
    assert np.mean(diffs) > 0.7 * np.std(load_pair("diabetes").targets)


def test_extreme_candidate_outputs_are_absurd_in_the_configured_fraction(sqlite_engine, tmp_path):
    _, rows, _ = run(sqlite_engine, tmp_path, "extreme", requests=5_000)
    variants = by_variant(rows, status="ok")
    absurd = [r for r in variants["v2"] if abs(r.prediction) >= 1e5]
    assert 0.01 < len(absurd) / len(variants["v2"]) < 0.035
    assert {math.copysign(1, r.prediction) for r in absurd} == {-1.0, 1.0}
    assert not [r for r in variants["v1"] if abs(r.prediction) >= 1e5]


def test_errors_burst_on_the_candidate_only(sqlite_engine, tmp_path):
    _, rows, _ = run(sqlite_engine, tmp_path, "errors", requests=5_000)
    variants = by_variant(rows)

    def error_rate(rs):
        return sum(r.status == "error" for r in rs) / max(len(rs), 1)

    in_burst = [r for r in variants["v2"] if 10 <= utc(r.ts).hour < 13]
    outside = [r for r in variants["v2"] if not 10 <= utc(r.ts).hour < 13]
    assert error_rate(in_burst) > 0.35
    assert error_rate(outside) < 0.02
    assert error_rate(variants["v1"]) < 0.02


def test_complaints_rise_on_answers_the_candidate_served(sqlite_engine, tmp_path):
    summary, rows, fb = run(sqlite_engine, tmp_path, "complaints", requests=8_000, percent=50)
    served_by = {r.correlation_id: r.variant for r in rows if r.served and r.status == "ok"}
    complaints = collections.Counter(served_by.get(f.correlation_id) for f in fb if f.kind == "complaint")
    totals = collections.Counter(served_by.values())
    rate = {v: complaints[v] / totals[v] for v in ("v1", "v2")}
    assert rate["v2"] > 3 * rate["v1"], rate
    shadow_summary = simulate_day(sqlite_engine, "diabetes", DAY, 10, "complaints", spill_dir=tmp_path / "s2",
                                  kind="diabetes")
    assert shadow_summary.stage == "canary-50%"


def test_complaints_in_shadow_are_flagged_as_invisible(sqlite_engine, tmp_path):
    summary, _, _ = run(sqlite_engine, tmp_path, "complaints", requests=50)
    assert any("cannot show" in note for note in summary.notes)


def test_sparse_days_have_very_little_traffic(sqlite_engine, tmp_path):
    summary, rows, _ = run(sqlite_engine, tmp_path, "sparse", requests=20_000)
    assert summary.requests <= 25
    assert len([r for r in rows if r.served]) <= 25


def test_corrupt_days_contain_every_kind_of_contract_breach(engine, tmp_path):
    summary, rows, _ = run(engine, tmp_path, "corrupt", requests=2_000)
    assert summary.corrupt_rows == 100
    assert any(r.correlation_id is None for r in rows)
    assert any(r.status == "exploded" for r in rows)
    assert any(r.latency_ms is not None and r.latency_ms < 0 for r in rows)
    # NaN latency: PostgreSQL keeps NaN, SQLite stores NULL
    assert any(r.latency_ms is None or math.isnan(r.latency_ms) for r in rows)
    served_ids = {r.correlation_id for r in rows if r.served}
    orphans = [r for r in rows if not r.served and r.correlation_id not in served_ids]
    assert len(orphans) == 20


@pytest.mark.parametrize("kind", ["cancer", "wine", "recs", "diabetes-first"])
def test_every_simulated_model_logs_its_kind_of_output(sqlite_engine, tmp_path, kind):
    summary, rows, fb = run(sqlite_engine, tmp_path, requests=500, kind=kind)
    pair = load_pair(kind)
    assert set(summary.served) == {pair.stable_variant}
    assert set(summary.shadow_calls) == {pair.candidate_variant}
    ok = [r for r in rows if r.status == "ok"]
    actual = [f for f in fb if f.kind == "actual"]
    if kind == "cancer":
        assert all(0 <= r.prediction <= 1 and r.label in pair.class_names for r in ok)
        assert {f.label for f in actual} <= set(pair.class_names)
    elif kind == "wine":
        assert all(r.label in pair.class_names for r in ok)
    elif kind == "recs":
        lists = [json.loads(r.label) for r in ok]
        assert all(len(items) == 10 for items in lists)
        assert len({r.label for r in ok if r.variant == "baseline"}) == 1  # top-N popular: one list for all
        assert len({r.label for r in ok if r.variant == "v1"}) > 10  # personalised
        assert all(isinstance(json.loads(f.label), list) for f in actual)
    else:
        assert len({r.prediction for r in ok if r.variant == "baseline"}) == 1  # the constant baseline


def test_twenty_thousand_requests_simulate_in_a_few_seconds(engine, tmp_path):
    summary, rows, _ = run(engine, tmp_path, requests=20_000)
    assert len(rows) == 40_000
    assert summary.elapsed_s < 10, summary.elapsed_s


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_every_scenario_runs_through_the_cli(sqlite_url, tmp_path, monkeypatch, scenario):
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
    args = ["--model", "shop", "--kind", "wine", "--date", "2026-03-14", "--requests", "300", "--scenario", scenario]
    refused = CliRunner().invoke(simulate, args)
    assert refused.exit_code == 1 and "start its rollout first" in refused.output
    result = CliRunner().invoke(simulate, [*args, "--start-shadow", "--knob", "complaint_rate=0.02"])
    assert result.exit_code == 0, result.output
    assert f"scenario={scenario} stage=shadow" in result.output
    bad = CliRunner().invoke(simulate, [*args, "--knob", "nope=1"])
    assert bad.exit_code == 1 and "unknown knob 'nope'" in bad.output
