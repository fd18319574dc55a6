"""Every kind of row the log contract forbids: a clear log-quality failure, the day held, nothing
crashes, nothing promoted. Plus a property-based test over generated log batches."""

from __future__ import annotations

import datetime as dt
import math

import dagster as dg
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rollout_pipeline.defs.runner import run_day
from rollout_pipeline.domain.records import STATUSES, PredictionRow
from rollout_pipeline.domain.summary import ABSURD_VALUE
from rollout_pipeline.store.engine import make_engine
from rollout_pipeline.store.logs import write_predictions
from rollout_pipeline.store.rollouts import start_rollout
from rollout_pipeline_tests.factories import log_day
from rollout_pipeline_tests.reliability_tests.helpers import CANARY, POLICY, SHADOW, judge_day

DAY = dt.date(2026, 11, 28)
NAN, INF = float("nan"), float("inf")


def _day(stage: str = "shadow", requests: int = 300, seed: int = 0) -> list[PredictionRow]:
    return log_day("m", DAY, "v1", "v2", requests=requests, stage=stage, canary_percent=50, seed=seed)


def _set(rows, i, **fields):
    rows[i] = rows[i]._replace(**fields)
    return rows


def _shadow_index(rows):
    return next(i for i, r in enumerate(rows) if not r.served)


def _served_index(rows, variant="v1"):
    return next(i for i, r in enumerate(rows) if r.served and r.variant == variant)


def _orphans(rows, n=20):
    t = rows[0].ts
    return rows + [PredictionRow(f"orphan-{k}", t, "m", "v2", False, None, 20.0, "ok", 0.5, None) for k in range(n)]


# kind -> (stage, rows builder, words expected in the failure); the expectation that fails is named in the reasons.
CASES = {
    "null latency": ("shadow", lambda r: _set(r, _shadow_index(r), latency_ms=None), "latency is a finite number"),
    "NaN latency": ("shadow", lambda r: _set(r, _shadow_index(r), latency_ms=NAN), "latency is a finite number"),
    "negative latency": ("shadow", lambda r: _set(r, _shadow_index(r), latency_ms=-5.0), "latency is a finite number"),
    "infinite latency": ("canary", lambda r: _set(r, _served_index(r, "v2"), latency_ms=INF), "latency is a finite number"),
    "absurd latency (1e300 ms)": ("shadow", lambda r: _set(_set(r, 0, latency_ms=1e300), 1, latency_ms=1e300),
                                  "latency is a finite number"),
    "unknown status": ("shadow", lambda r: _set(r, _shadow_index(r), status="exploded"), "status is one of"),
    "missing status": ("canary", lambda r: _set(r, 0, status=None), "status is one of"),
    "missing correlation id": ("shadow", lambda r: _set(r, _shadow_index(r), correlation_id=None), "correlation id"),
    "empty correlation id": ("canary", lambda r: _set(r, 0, correlation_id=""), "correlation id"),
    "duplicate correlation id (shadow)": ("shadow", lambda r: r + [r[_served_index(r)]], "served twice"),
    "duplicate correlation id (canary)": ("canary", lambda r: r + [r[_served_index(r, "v2")]._replace(variant="v1")],
                                          "served twice"),
    "shadow rows with no served twin": ("shadow", _orphans, "served twin"),
    "unknown variant": ("canary", lambda r: r + [r[0]._replace(variant="v3", correlation_id="x")], "only the rollout"),
    "infinite stable prediction": ("shadow", lambda r: _set(r, _served_index(r), prediction=INF),
                                   "prediction is a finite"),
    "absurd prediction (1e300)": ("shadow", lambda r: _set(_set(r, 0, prediction=1e300), 1, prediction=-1e300),
                                  "prediction is a finite"),
    "absurd prediction (1e200, squares overflow)": ("canary", lambda r: _set(r, _served_index(r), prediction=1e200),
                                                    "prediction is a finite"),
    "empty day": ("shadow", lambda r: [], "the day has logged requests"),
    "empty day (canary)": ("canary", lambda r: [], "the day has logged requests"),
    "every row stamped outside the day": ("canary", lambda r: [x._replace(ts=x.ts + dt.timedelta(days=1)) for x in r],
                                          "the day has logged requests"),
}


def test_a_clean_day_promotes(db_url):
    """The baseline the cases below break: without the bad rows the same day promotes."""
    engine = make_engine(db_url)
    for stage, state in (("shadow", SHADOW), ("canary", CANARY)):
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM prediction_log"))
        write_predictions(engine, _day(stage))
        quality, decision = judge_day(engine, "m", DAY, state)
        assert quality.passed, quality.failures
        assert decision.action == "promote", decision.reasons
    engine.dispose()


@pytest.mark.parametrize("kind", list(CASES))
def test_each_forbidden_kind_holds_the_day_with_a_clear_reason(db_url, kind):
    stage, build, words = CASES[kind]
    engine = make_engine(db_url)
    rows = build(_day(stage))
    if rows:
        write_predictions(engine, rows)
    quality, decision = judge_day(engine, "m", DAY, SHADOW if stage == "shadow" else CANARY)
    engine.dispose()
    assert not quality.passed and not quality.errored, quality.outcomes
    assert any(words in f for f in quality.failures), quality.failures
    assert decision.action == "hold", decision.reasons
    assert decision.reasons[0] == "data quality failed, so the day cannot be judged:"
    assert any(words in r for r in decision.reasons)


@pytest.mark.parametrize("stage, value", [("shadow", INF), ("canary", 1e200), ("canary", -INF)])
def test_the_candidates_own_non_finite_answer_rolls_it_back(db_url, stage, value):
    """Not a logging problem but the candidate's answer: the logs are fine, the model is broken (issue #20)."""
    engine = make_engine(db_url)
    rows = _day(stage)
    index = _shadow_index(rows) if stage == "shadow" else _served_index(rows, "v2")
    write_predictions(engine, _set(rows, index, prediction=value))
    quality, decision = judge_day(engine, "m", DAY, SHADOW if stage == "shadow" else CANARY)
    engine.dispose()
    assert quality.passed, quality.failures
    assert decision.action == "rollback", decision.reasons
    assert any("non-finite or absurd" in r for r in decision.reasons), decision.reasons


def test_rows_stamped_on_other_days_do_not_count_for_the_day(db_url):
    """Rows outside the day are not the day's: the day is judged on its own rows (here: clean, promote),
    and the misdated rows are judged with the day they name."""
    engine = make_engine(db_url)
    rows = _day("shadow")
    strays = [r._replace(ts=r.ts + dt.timedelta(days=d), status="exploded") for d in (-1, 1, 3650) for r in rows[:10]]
    write_predictions(engine, rows + strays)
    quality, decision = judge_day(engine, "m", DAY, SHADOW)
    assert quality.passed and decision.action == "promote", quality.failures
    quality, decision = judge_day(engine, "m", DAY + dt.timedelta(days=1), SHADOW)
    assert not quality.passed and decision.action == "hold"
    engine.dispose()


def test_a_corrupt_day_through_the_daily_job_is_held_not_failed(pg_url, monkeypatch):
    """The Dagster path with most forbidden kinds at once (and absurd numbers that overflow SQL sums):
    the run is stopped by the blocking check, the day is recorded as a hold, nothing crashes."""
    monkeypatch.setenv("ROLLOUT_DATABASE_URL", pg_url)
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        start_rollout(conn, "m", "v1", "v2", POLICY, actor="test")
    rows = _day("shadow")
    for kind in ("NaN latency", "unknown status", "missing correlation id", "duplicate correlation id (shadow)",
                 "unknown variant", "absurd prediction (1e300)", "absurd latency (1e300 ms)"):
        rows = CASES[kind][1](rows)
    write_predictions(engine, rows)
    with dg.instance_for_test() as instance:
        run = run_day("m", DAY, instance=instance)
    assert "log_quality" in run.failed_checks
    assert run.result["action"] == "hold" and run.result["decision_id"] is not None
    text = "\n".join(run.result["reasons"])
    for words in ("correlation id", "status is one of", "latency is a finite", "prediction is a finite",
                  "only the rollout", "served twice"):
        assert words in text, text
    engine.dispose()


# --- property-based: generated batches ---------------------------------------------------------

_BAD_LATENCY = st.sampled_from([None, NAN, -1.0, -1e-9, INF, -INF, 1e300, ABSURD_VALUE])
_BAD_PREDICTION = st.sampled_from([INF, -INF, NAN, 1e300, -1e300, 1e200, ABSURD_VALUE, -ABSURD_VALUE])
_BAD_STATUS = st.one_of(st.none(), st.sampled_from(["", "OK", "ok ", "exploded", "Error"]),
                        st.text(max_size=5).filter(lambda s: s not in STATUSES))
_HARMLESS = st.sampled_from(["prediction_none", "label", "big_but_sane", "tz_shift", "nothing"])

_CORRUPTION = st.one_of(
    st.tuples(st.just("latency"), st.integers(0, 10_000), _BAD_LATENCY),
    st.tuples(st.just("prediction"), st.integers(0, 10_000), _BAD_PREDICTION),
    st.tuples(st.just("status"), st.integers(0, 10_000), _BAD_STATUS),
    st.tuples(st.just("correlation_id"), st.integers(0, 10_000), st.sampled_from([None, ""])),
    st.tuples(st.just("variant"), st.integers(0, 10_000), st.sampled_from(["v3", "V1", "v1 "])),
    st.tuples(st.just("duplicate"), st.integers(0, 10_000), st.none()),
    st.tuples(st.just("orphans"), st.integers(1, 30), st.none()),
    st.tuples(st.just("move_out"), st.integers(0, 10_000), st.sampled_from([-1, 1, 400])),
    st.tuples(st.just("harmless"), st.integers(0, 10_000), _HARMLESS),
)


def _apply(rows: list[PredictionRow], corruption) -> list[PredictionRow]:
    what, i, value = corruption
    if what == "orphans":
        return _orphans(rows, i)
    if not rows:
        return rows
    i %= len(rows)
    if what in ("latency", "prediction", "status", "correlation_id", "variant"):
        field = {"latency": "latency_ms"}.get(what, what)
        return _set(rows, i, **{field: value})
    if what == "duplicate":
        return rows + [rows[i]]
    if what == "move_out":
        return _set(rows, i, ts=rows[i].ts + dt.timedelta(days=value))
    if value == "prediction_none":
        return _set(rows, i, prediction=None)
    if value == "label":
        return _set(rows, i, label="'; DROP TABLE prediction_log; --")
    if value == "big_but_sane":
        return _set(rows, i, latency_ms=1e6)
    if value == "tz_shift":
        return _set(rows, i, ts=rows[i].ts.astimezone(dt.timezone(dt.timedelta(hours=5))))
    return rows


def _forbidden(rows: list[PredictionRow], stage: str) -> list[str]:
    """What the contract forbids in the day's rows, computed independently of the pipeline."""
    lo = dt.datetime.combine(DAY, dt.time(), dt.UTC)
    day = [r for r in rows if lo <= r.ts < lo + dt.timedelta(days=1)]
    found = []
    if not day:
        return ["empty day"]
    for r in day:
        lat, pred = r.latency_ms, r.prediction
        if not r.correlation_id:
            found.append("correlation id")
        if r.status not in STATUSES:
            found.append("status")
        if lat is None or not math.isfinite(lat) or lat < 0 or lat >= ABSURD_VALUE:
            found.append("latency")
        if pred is not None and (not math.isfinite(pred) or abs(pred) >= ABSURD_VALUE):
            # The candidate's own broken answer is its failure (a rollback), anyone else's a logging one.
            found.append("candidate prediction" if r.variant == "v2" else "prediction")
        if r.variant not in ("v1", "v2"):
            found.append("variant")
    served = [r.correlation_id for r in day if r.served and r.correlation_id]
    if len(served) != len(set(served)):
        found.append("duplicate")
    if stage == "shadow":
        shadows = [r for r in day if not r.served]
        unmatched = [r for r in shadows if r.correlation_id not in set(served)]
        if not shadows or len(unmatched) / len(shadows) > POLICY.max_unmatched_shadow_share:
            found.append("pairing")
    return found


@pytest.fixture(scope="module")
def pg_engine(pg_server, pg_template):
    from rollout_pipeline_tests import postgres

    url = postgres.create_database(pg_server, template=pg_template)
    engine = make_engine(url)
    yield engine
    engine.dispose()
    postgres.drop_database(pg_server, url)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stage=st.sampled_from(["shadow", "canary"]), seed=st.integers(0, 3),
       corruptions=st.lists(_CORRUPTION, max_size=4))
def test_property_never_promote_when_data_quality_fails(pg_engine, stage, seed, corruptions):
    rows = _day(stage, requests=150, seed=seed)
    for c in corruptions:
        rows = _apply(rows, c)
    with pg_engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE prediction_log"))
    if rows:
        write_predictions(pg_engine, rows)
    quality, decision = judge_day(pg_engine, "m", DAY, SHADOW if stage == "shadow" else CANARY)
    forbidden = _forbidden(rows, stage)
    assert not quality.errored, quality.outcomes
    if set(forbidden) - {"candidate prediction"}:
        assert not quality.passed, (forbidden, corruptions)
    if not quality.passed:
        assert decision.action == "hold", decision.reasons
        assert decision.reasons[0].startswith("data quality failed")
    elif "candidate prediction" in forbidden:
        assert decision.action == "rollback", (corruptions, decision.reasons)
    assert decision.action != "promote" or not forbidden
