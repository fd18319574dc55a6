"""simulate_day(..., sink=LakeWriter) and ``simulate --sink``: the same simulated day written to PostgreSQL and to a
Parquet lake holds the same rows (compared as multisets of tuples), the faulty log path's lost and doubled
candidate rows included; the database gets nothing from a sink run."""

from __future__ import annotations

import collections
import datetime as dt
import math
import os

import pytest

from rollout_pipeline_tests.extras import need
from click.testing import CliRunner

need("pyarrow")
import pyarrow.dataset as ds  # noqa: E402

from rollout_pipeline.domain.routing import VariantRoute  # noqa: E402
from rollout_pipeline.simulate.commands import simulate  # noqa: E402
from rollout_pipeline.simulate.day import simulate_day, start_shadow_routing  # noqa: E402
from rollout_pipeline.simulate.models import load_pair  # noqa: E402
from rollout_pipeline.store.engine import make_engine  # noqa: E402
from rollout_pipeline.store.lake import COLUMNS, LakeWriter, arrow_schema  # noqa: E402
from rollout_pipeline.store.routing import read_routing, write_routing  # noqa: E402
from rollout_pipeline.store.serving_queries import read_rows  # noqa: E402

DAY = dt.date(2026, 3, 14)
UTC = dt.UTC
FAULTS = {"duplicate_fraction": 0.05, "corrupt_fraction": 0.05, "orphan_fraction": 0.02, "error_rate": 0.5,
          "extreme_fraction": 0.02, "null_fraction": 0.1}


@pytest.fixture
def pg_engine(pg_url):
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


def _value(v):
    if isinstance(v, dt.datetime):
        return v.astimezone(UTC)
    if isinstance(v, float) and math.isnan(v):
        return "NaN"  # NaN != NaN: compare it as a marker
    return v


def db_rows(engine, table, model):
    with engine.connect() as conn:
        return collections.Counter(tuple(_value(v) for v in row) for row in read_rows(conn, table, model))


def lake_rows(root, table):
    path = os.path.join(root, table)
    if not os.path.isdir(path):
        return collections.Counter()
    rows = ds.dataset(path, format="parquet", schema=arrow_schema(table)).to_table().to_pylist()
    return collections.Counter(tuple(_value(r[c]) for c in COLUMNS[table]) for r in rows)


def canary(engine, model, kind, percent):
    pair = load_pair(kind)
    with engine.begin() as conn:
        current = read_routing(conn, model)
        write_routing(conn, model, (VariantRoute(pair.stable_variant, "stable", 100 - percent, True),
                                    VariantRoute(pair.candidate_variant, "candidate", percent)),
                      expected_version=current.version, actor="test", reason="canary")


def same_counts(a, b):
    """Two SimulationSummary's counts, apart from the time taken and the notes."""
    skip = {"elapsed_s", "notes"}
    return {k: v for k, v in vars(a).items() if k not in skip} == {k: v for k, v in vars(b).items() if k not in skip}


@pytest.mark.parametrize("scenario, knobs, percent", [
    ("healthy", None, None),
    ("missing", FAULTS, None),  # shadow answers lost, rows doubled, contract breaches, errors, absurd answers
    ("healthy", None, 20),  # canary: the candidate serves a share, the stable shadows it
])
def test_the_lake_gets_the_rows_the_database_gets(pg_engine, tmp_path, scenario, knobs, percent):
    model, kind = "lakecase", "cancer"
    start_shadow_routing(pg_engine, model, kind)
    if percent is not None:
        canary(pg_engine, model, kind, percent)
    args = dict(model=model, day=DAY, requests=1_500, scenario=scenario, seed=11, day_index=2, kind=kind, knobs=knobs,
                spill_dir=tmp_path / "spill", seeded_ids=True)
    into_db = simulate_day(pg_engine, **args)
    stored = {t: db_rows(pg_engine, t, model) for t in ("prediction_log", "feedback")}

    with LakeWriter(f"parquet://{tmp_path / 'lake'}") as writer:
        into_lake = simulate_day(pg_engine, **args, sink=writer)
    assert {t: db_rows(pg_engine, t, model) for t in stored} == stored  # nothing more in the database
    for table in stored:
        assert stored[table] and lake_rows(tmp_path / "lake", table) == stored[table], table
    assert same_counts(into_db, into_lake)
    assert sum(stored["prediction_log"].values()) == into_lake.prediction_rows
    assert sum(stored["feedback"].values()) == into_lake.feedback_rows
    if knobs:
        assert into_lake.missing_rows and into_lake.duplicate_rows and into_lake.corrupt_rows
        assert max(stored["prediction_log"].values()) == 2  # the doubled rows are doubled in both


def test_correlation_ids_are_random_unless_seeded(sqlite_url, tmp_path):
    engine = make_engine(sqlite_url)
    try:
        start_shadow_routing(engine, "diabetes")
        ids = []
        for k, seeded in enumerate((False, False, True, True)):
            with LakeWriter(f"parquet://{tmp_path / str(k)}") as writer:
                simulate_day(engine, "diabetes", DAY, 50, seed=3, sink=writer, seeded_ids=seeded)
            ids.append({row[0] for row in lake_rows(tmp_path / str(k), "prediction_log")})
    finally:
        engine.dispose()
    assert not ids[0] & ids[1]  # re-simulating a day adds distinct requests
    assert ids[2] == ids[3] and len(ids[2]) == 50


def test_simulate_sink_writes_the_lake_and_says_where(sqlite_url, tmp_path, monkeypatch):
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
    lake = tmp_path / "my lake"
    args = ["--model", "diabetes", "--date", "2026-03-14", "--requests", "200", "--start-shadow", "--seeded-ids"]
    result = CliRunner().invoke(simulate, [*args, "--sink", f"parquet://{lake}"])
    assert result.exit_code == 0, result.output
    assert f"rows written to the lake file://{lake}" in result.output
    written = [line.split("wrote ", 1)[1] for line in result.output.splitlines() if "wrote " in line]
    assert written and all(os.path.isfile(path) for path in written)
    assert sum(lake_rows(lake, "prediction_log").values()) == 400
    engine = make_engine(sqlite_url)
    try:
        assert not db_rows(engine, "prediction_log", "diabetes") and not db_rows(engine, "feedback", "diabetes")
    finally:
        engine.dispose()

    bad = CliRunner().invoke(simulate, [*args, "--sink", "parquet://relative/lake"])
    assert bad.exit_code == 1 and len(bad.output.strip().splitlines()) == 1 and "three slashes" in bad.output
