"""The same simulated day in PostgreSQL and as Parquet gives the same analysis and the same decision (issue #16).

Each case simulates one day twice with the same arguments -- into PostgreSQL's tables
and into a Parquet lake (``simulate_day(..., sink=LakeWriter)``, the same rows, see
simulate_tests/test_lake_sink.py) -- then summarizes it with ``store.summary`` (SQL)
and ``store.spark_summary`` (Spark SQL), and judges, validates and decides both.

Tolerances (docs/lake.md):
- a day no larger than the sample (here every scenario's day): everything is equal;
  floating-point sums only to 1e-9 relative (Spark adds in another order);
- a larger day: counts, means, latency quantiles (exact histograms of the whole day),
  extremes and label counts are equal as above; what is computed on the hash sample
  (prediction histograms, the pairing statistics, the sample itself) comes from a
  different, equally random sample (``xxhash64`` instead of ``hashtext``) and must agree
  within sampling error: shares within 4 standard errors.
"""

from __future__ import annotations

import datetime as dt
import math
import shutil

import pytest
import sqlalchemy as sa

from rollout_pipeline.decision_outcome import data_quality_failures
from rollout_pipeline.domain.decide import RolloutState, decide, evidence_from
from rollout_pipeline.domain.evaluate import evaluate
from rollout_pipeline.domain.policy import Policy
from rollout_pipeline.domain.routing import VariantRoute
from rollout_pipeline.simulate.day import simulate_day, start_shadow_routing
from rollout_pipeline.simulate.models import load_pair
from rollout_pipeline.simulate.scenarios import SCENARIO_NAMES
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.lake import LakeWriter
from rollout_pipeline.store.routing import read_routing, write_routing
from rollout_pipeline.store.spark_summary import collect_day_spark
from rollout_pipeline.store.summary import collect_day
from rollout_pipeline.store.tables import feedback
from rollout_pipeline.validation.suites import validate_day
from rollout_pipeline_tests.summaries import differences

MODEL = KIND = "diabetes"
DAY = dt.date(2026, 3, 2)
def decision_of(summary, stage: str, percent: int, policy: Policy):
    """What the pipeline decides on a summary: judge, validate, state machine (as decisions.py does)."""
    evaluation = evaluate(summary, stage, policy)
    failures = data_quality_failures({r.name: r for r in validate_day(summary, stage, policy)})
    return decide(RolloutState(stage, percent), evidence_from(evaluation, failures), policy), evaluation


@pytest.fixture
def pg_engine(pg_url):
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


def the_same_day_twice(engine, root, scenario: str, requests: int, percent: int, seed: int = 11):
    """Simulate the day into PostgreSQL and into the lake at ``root``; the stable and candidate variants."""
    start_shadow_routing(engine, MODEL, KIND)
    pair = load_pair(KIND)
    if percent:
        with engine.begin() as conn:
            current = read_routing(conn, MODEL)
            write_routing(conn, MODEL, (VariantRoute(pair.stable_variant, "stable", 100 - percent, True),
                                        VariantRoute(pair.candidate_variant, "candidate", percent)),
                          expected_version=current.version, actor="test", reason="canary")
    simulate_day(engine, MODEL, DAY, requests, scenario, seed, kind=KIND, seeded_ids=True)
    with LakeWriter(f"parquet://{root}") as sink:
        simulate_day(engine, MODEL, DAY, requests, scenario, seed, kind=KIND, seeded_ids=True, sink=sink)
    return pair.stable_variant, pair.candidate_variant


CASES = [(name, 0) for name in SCENARIO_NAMES] + [("healthy", 20), ("complaints", 20), ("errors", 20)]
# The equivalence means something only if the cases lead to different decisions: some of them, pinned.
EXPECTED = {("healthy", 0): "promote", ("slow", 0): "rollback", ("missing", 0): "hold"}


@pytest.mark.parametrize("scenario, percent", CASES, ids=[f"{s}-{'canary' if p else 'shadow'}" for s, p in CASES])
def test_a_day_no_larger_than_the_sample_gives_the_same_summary_and_decision(spark, pg_engine, tmp_path, scenario,
                                                                             percent):
    stable, candidate = the_same_day_twice(pg_engine, tmp_path / "lake", scenario, 3_000, percent)
    with pg_engine.connect() as conn:
        from_pg = collect_day(conn, MODEL, DAY, stable, candidate)
    from_lake = collect_day_spark(spark, f"file://{tmp_path / 'lake'}", MODEL, DAY, stable, candidate)
    assert from_pg.total_rows > 0 and from_pg.sample
    assert differences(from_pg, from_lake, skip=frozenset({"collect_seconds"})) == []
    stage = "canary" if percent else "shadow"
    policy = Policy()
    (pg_decision, pg_eval), (lake_decision, lake_eval) = (decision_of(s, stage, percent, policy)
                                                          for s in (from_pg, from_lake))
    assert (lake_decision.action, lake_decision.reasons) == (pg_decision.action, pg_decision.reasons)
    if (scenario, percent) in EXPECTED:
        assert pg_decision.action == EXPECTED[scenario, percent], pg_decision.reasons
    assert [(c.name, c.classification) for c in lake_eval.checks] == [(c.name, c.classification)
                                                                       for c in pg_eval.checks]


SAMPLED = frozenset({"collect_seconds", "sample", "pairing", "prediction_histogram", "sample_fraction"})


@pytest.mark.parametrize("scenario", ["healthy", "shifted"])
def test_a_day_larger_than_the_sample_agrees_within_sampling_error(spark, pg_engine, tmp_path, scenario):
    stable, candidate = the_same_day_twice(pg_engine, tmp_path / "lake", scenario, 12_000, 0)
    rows = 4_000  # per variant: a third of the day is sampled
    with pg_engine.connect() as conn:
        from_pg = collect_day(conn, MODEL, DAY, stable, candidate, sample_rows=rows)
    from_lake = collect_day_spark(spark, f"file://{tmp_path / 'lake'}", MODEL, DAY, stable, candidate,
                                  sample_rows=rows)
    assert from_pg.sample_fraction == from_lake.sample_fraction < 0.5
    # Whole-day numbers: equal.
    assert differences(from_pg, from_lake, skip=SAMPLED) == []
    # Sample numbers: two different random samples of the same size.
    ids_pg = {r.correlation_id for r in from_pg.sample}
    ids_lake = {r.correlation_id for r in from_lake.sample}
    assert ids_pg != ids_lake, "two different hashes must pick different samples"
    n_pg, n_lake = len(from_pg.sample), len(from_lake.sample)
    assert abs(n_pg - n_lake) <= 4 * math.sqrt(n_pg)
    p, q = from_pg.pairing, from_lake.pairing
    matched = min(p.matched, q.matched)
    assert abs(p.matched - q.matched) <= 4 * math.sqrt(max(p.matched, 1))
    assert (p.disagreement_rate is None) == (q.disagreement_rate is None)
    if p.disagreement_rate is not None:  # label outputs
        rate_se = math.sqrt(max(p.disagreement_rate * (1 - p.disagreement_rate), 1 / matched) / matched)
        assert abs(p.disagreement_rate - q.disagreement_rate) <= 4 * math.sqrt(2) * rate_se
    spread = next(v for v in from_pg.variants if v.variant == candidate).prediction_std or 1.0
    assert abs(p.diff_abs_mean - q.diff_abs_mean) <= 4 * math.sqrt(2) * spread / math.sqrt(matched)
    for key in ((stable, True), (candidate, False)):
        a = next(v for v in from_pg.variants if (v.variant, v.served) == key).prediction_histogram
        b = next(v for v in from_lake.variants if (v.variant, v.served) == key).prediction_histogram
        total = sum(a)
        assert sum(b) == total
        for x, y in zip(a, b):
            share = max(x / total, 1 / total)
            assert abs(x - y) / total <= 4 * math.sqrt(2 * share * (1 - share) / rows) + 1 / total
    policy = Policy()
    assert decision_of(from_pg, "shadow", 0, policy)[0].action == decision_of(from_lake, "shadow", 0, policy)[0].action


def test_a_day_without_feedback_folders_or_without_any_folder_reads_as_the_database_reads_it(spark, pg_engine,
                                                                                            tmp_path):
    """No feedback folder in the window: no join is run, and the summary is the database's without feedback;
    no day folder at all: an empty day, as an empty day in the database."""
    stable, candidate = the_same_day_twice(pg_engine, tmp_path / "lake", "healthy", 1_000, 0)
    with pg_engine.begin() as conn:
        conn.execute(sa.delete(feedback))
    shutil.rmtree(tmp_path / "lake" / "feedback")
    with pg_engine.connect() as conn:
        from_pg = collect_day(conn, MODEL, DAY, stable, candidate)
        empty_pg = collect_day(conn, MODEL, DAY + dt.timedelta(days=1), stable, candidate)
    root = f"file://{tmp_path / 'lake'}"
    assert from_pg.total_rows > 0 and all(v.actuals == 0 for v in from_pg.variants)
    assert differences(from_pg, collect_day_spark(spark, root, MODEL, DAY, stable, candidate),
                       skip=frozenset({"collect_seconds"})) == []
    empty = collect_day_spark(spark, root, MODEL, DAY + dt.timedelta(days=1), stable, candidate)
    assert empty.total_rows == 0
    assert differences(empty_pg, empty, skip=frozenset({"collect_seconds"})) == []


def test_a_lake_day_mixing_files_without_a_bucket_and_files_with_one_is_summarized_as_if_all_were_hashed(spark,
                                                                                                         tmp_path):
    """Files written before the lake had ``sample_bucket`` read it as NULL and their rows are hashed; the writer
    stores Spark's own hash, so old files, new files or both give the same summary (a sampled day: 3,000 pairs,
    500 per population)."""
    import random

    import pyarrow as pa
    import pyarrow.parquet as pq

    from rollout_pipeline.domain.records import PredictionRow
    from rollout_pipeline.store.lake import COLUMNS, arrow_schema

    rng = random.Random(3)
    start = dt.datetime.combine(DAY, dt.time(12), dt.UTC)
    rows = []
    for i in range(3000):
        ts = start + dt.timedelta(seconds=i)
        rows.append(PredictionRow(f"req-{i}", ts, MODEL, "v1", True, f"e{i % 40}", rng.lognormvariate(3, 0.3), "ok",
                                  rng.gauss(0, 1), None))
        rows.append(PredictionRow(f"req-{i}", ts, MODEL, "v2", False, f"e{i % 40}", rng.lognormvariate(3.2, 0.3),
                                  "ok", rng.gauss(0.1, 1), None))
    old_schema = pa.schema([f for f in arrow_schema("prediction_log") if f.name != "sample_bucket"])

    def old_file(root, part, chosen):
        folder = root / "prediction_log" / f"day={DAY}"
        folder.mkdir(parents=True, exist_ok=True)
        columns = COLUMNS["prediction_log"]
        pq.write_table(pa.table({c: [r[i] for r in chosen] for i, c in enumerate(columns)}, schema=old_schema),
                       folder / f"part-{part}.parquet")

    with LakeWriter(f"parquet://{tmp_path / 'new'}", batch_rows=1000) as writer:
        writer.append("prediction_log", rows)
    old_file(tmp_path / "old", "old", rows)
    old_file(tmp_path / "mixed", "old", rows[:3000])
    with LakeWriter(f"parquet://{tmp_path / 'mixed'}", batch_rows=1000) as writer:
        writer.append("prediction_log", rows[3000:])

    new, old, mixed = (collect_day_spark(spark, f"file://{tmp_path / name}", MODEL, DAY, "v1", "v2", sample_rows=500)
                       for name in ("new", "old", "mixed"))
    assert 0 < old.sample_fraction < 0.5 and len(old.sample) > 100 and old.extremes
    assert differences(new, old, skip=frozenset({"collect_seconds"})) == []
    assert differences(mixed, old, skip=frozenset({"collect_seconds"})) == []
