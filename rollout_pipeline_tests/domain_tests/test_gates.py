"""The gates, table-driven on hand-made day summaries: each verdict, its limit in the reason, its minimum sample.

No database, no Dagster: summaries are built here from sampled rows. The last tests
run two identical models over many simulated days and count false alarms.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import replace
import random
import statistics

import pytest

from rollout_pipeline.domain.evaluate import evaluate
from rollout_pipeline.domain.gates import GATES, INTEGRITY, context_for
from rollout_pipeline.domain.policy import METRICS, Policy, load_policy
from rollout_pipeline.domain.summary import DaySummary, SampleRow, VariantDay

DAY = dt.date(2026, 3, 2)
P = Policy()


def variant_day(variant: str, served: bool, rows: list[SampleRow], null_outputs: int = 0) -> VariantDay:
    preds = [r.prediction for r in rows if r.prediction is not None and math.isfinite(r.prediction)]
    lats = sorted(r.latency_ms for r in rows if r.latency_ms is not None)
    return VariantDay(
        variant=variant, served=served, requests=len(rows), ok=sum(r.status == "ok" for r in rows),
        errors=sum(r.status == "error" for r in rows), timeouts=sum(r.status == "timeout" for r in rows),
        unknown_status=0, missing_correlation_id=0, invalid_latency=0,
        latency_mean=statistics.fmean(lats) if lats else None, latency_max=lats[-1] if lats else None,
        latency_p50=None, latency_p95=None, latency_p99=lats[int(0.99 * (len(lats) - 1))] if lats else None,
        predictions=len(preds), prediction_mean=statistics.fmean(preds) if preds else None,
        prediction_std=statistics.pstdev(preds) if len(preds) > 1 else None,
        prediction_min=min(preds) if preds else None, prediction_max=max(preds) if preds else None,
        nonfinite_predictions=0, null_outputs=null_outputs,
    )


def summary_of(rows: list[SampleRow], null_outputs: dict | None = None) -> DaySummary:
    groups: dict[tuple[str, bool], list[SampleRow]] = {}
    for r in rows:
        groups.setdefault((r.variant, r.served), []).append(r)
    variants = tuple(variant_day(v, s, rs, (null_outputs or {}).get((v, s), 0)) for (v, s), rs in groups.items())
    return DaySummary("m", DAY, "v1", "v2", variants, (), None, (), tuple(rows))


def traffic(stage: str, n: int, seed: int = 0, *, cand_latency=1.0, cand_error=0.002, shift=0.0, cand_noise=1.0,
            complaint_mult=1.0, entities: int | None = None, share=0.2, labels=False, mirror=True, cover=1.0,
            extreme=0.0) -> list[SampleRow]:
    """Sampled rows of a day: entities sending several requests each; the candidate as asked."""
    rng = random.Random(seed)
    population = entities or max(30, n // 8)
    traits = [(rng.lognormvariate(0, 0.25), rng.betavariate(0.5, 50), rng.gauss(0, 1)) for _ in range(population)]
    weights = [rng.lognormvariate(0, 1.2) for _ in range(population)]  # heavy-tailed requests per entity
    chosen = rng.choices(range(population), weights, k=n)
    rows = []
    for i in range(n):
        e = chosen[i]
        lat_f, complain_p, level = traits[e]
        truth = 150 + 40 * level + rng.gauss(0, 30)
        s_pred, c_pred = truth + rng.gauss(0, 35), truth + rng.gauss(0, 35 * cand_noise) + shift
        if rng.random() < extreme:
            c_pred = 1e6
        base = rng.lognormvariate(math.log(6), 0.45) * lat_f + 3
        complaints = int(rng.random() < complain_p)
        cand_serves = stage == "production" or (stage == "canary" and (e * 7919) % 100 < share * 100)
        if cand_serves and rng.random() < complain_p * (complaint_mult - 1):
            complaints = 1
        cid, ent = f"c{seed}-{i}", f"u{e}"

        def row(variant, served, lat, err, pred):
            status = "error" if rng.random() < err else "ok"
            label = ("high" if pred > 150 else "low") if labels else None
            return SampleRow(cid, variant, served, lat, status, None if labels or status != "ok" else pred,
                             label if status == "ok" else None, ent, truth, None, complaints)

        c_row = row("v2", cand_serves, base * cand_latency, cand_error, c_pred)
        s_row = row("v1", not cand_serves, base, 0.002, s_pred)
        if stage == "shadow":
            rows.append(s_row)
            if rng.random() < cover:
                rows.append(c_row)
        elif cand_serves:
            rows.append(c_row)
            if mirror:
                rows.append(s_row)
        else:
            rows.append(s_row)
    return rows


def gate(name: str, summary: DaySummary, stage: str, policy: Policy = P):
    fn = {**GATES, **INTEGRITY}[name]
    return fn(context_for(summary, stage, policy))


def test_the_registry_and_the_policy_name_the_same_metrics():
    assert tuple(GATES) == METRICS
    assert not set(GATES) & set(INTEGRITY)


@pytest.mark.parametrize("name, stage, kwargs, verdict, says", [
    # latency: a distribution-free bound on p99 against the stable's p99 + 20% and the SLO.
    ("latency", "shadow", {}, "pass", "within SLO 250 ms"),
    ("latency", "shadow", {"cand_latency": 3.0}, "high", "+ 20% ="),
    ("latency", "canary", {"cand_latency": 3.0}, "high", "+ 20% ="),
    ("latency", "canary", {"n": 400}, "nodata", "needed to bound a p99"),
    # errors: over entities in canary, on the same requests in shadow.
    ("error_rate", "shadow", {}, "pass", "stable"),
    ("error_rate", "shadow", {"cand_error": 0.2}, "high", "> stable"),
    ("error_rate", "canary", {"cand_error": 0.2}, "high", "entities)"),
    ("error_rate", "canary", {"n": 300, "entities": 20}, "nodata", "error rate not judged"),
    # extremes: share of outputs outside plausible bounds, confidently above the limit.
    ("extremes", "shadow", {}, "pass", "outside ["),
    ("extremes", "canary", {"extreme": 0.03}, "high", "> limit 0.10%"),
    # prediction shift, paired on the same requests (the stable shadows the candidate in canary).
    ("prediction_shift", "shadow", {}, "pass", "within 0.5 sd"),
    ("prediction_shift", "shadow", {"shift": 80.0}, "high", "beyond 0.5 sd"),
    ("prediction_shift", "canary", {"shift": -80.0}, "low", "entities, paired"),
    ("prediction_shift", "canary", {"shift": -80.0, "mirror": False, "share": 0.5}, "low", "entities)"),
    # complaints: served answers only, over entities; invisible in shadow.
    ("complaints", "canary", {"share": 0.5, "complaint_mult": 8.0}, "high", "complaint rate"),
    # accuracy on actual outcomes, paired when the stable shadows.
    ("accuracy", "shadow", {}, "pass", "mean absolute error"),
    ("accuracy", "canary", {"cand_noise": 5.0}, "high", "confidently worse"),
    ("accuracy", "canary", {"cand_noise": 5.0, "mirror": False, "share": 0.5}, "high", "confidently worse"),
    # disagreement of labels on the same requests.
    ("disagreement", "shadow", {"labels": True}, "pass", "disagree on"),
    ("disagreement", "shadow", {"labels": True, "shift": 90.0}, "high", "> limit 30.00%"),
    # integrity: a candidate that answers a fraction of the mirrored requests.
    ("shadow_coverage", "shadow", {}, "pass", "answered"),
    ("shadow_coverage", "shadow", {"cover": 0.3}, "low", "< 95.00% required"),
])
def test_gate_verdicts(name, stage, kwargs, verdict, says):
    n = kwargs.pop("n", 6000)
    check = gate(name, summary_of(traffic(stage, n, seed=3, **kwargs)), stage)
    assert check is not None
    assert check.classification == verdict, check.reason
    assert says in check.reason


def test_not_applicable_gates_say_so():
    summary = summary_of(traffic("shadow", 3000))
    assert gate("complaints", summary, "shadow") is None  # nobody complains about a shadow answer
    assert gate("disagreement", summary, "shadow") is None  # numeric outputs
    labels = summary_of(traffic("shadow", 3000, labels=True))
    assert gate("prediction_shift", labels, "shadow") is None  # a class has no mean


def test_a_classifier_answering_labels_the_stable_never_gives_is_extreme():
    rows = traffic("canary", 4000, labels=True, share=0.5)
    bad = [replace(r, label="\u00bf?") if r.variant == "v2" and r.served and k % 25 == 0 and r.label else r
           for k, r in enumerate(rows)]
    assert gate("extremes", summary_of(rows), "canary").classification == "pass"
    check = gate("extremes", summary_of(bad), "canary")
    assert check.classification == "high" and "outside the stable's labels {high, low}" in check.reason


def test_recommendations_are_scored_by_the_share_of_actual_items_recommended():
    def row(variant, served, label, k):
        return SampleRow(f"r{k}", variant, served, 5.0, "ok", None, label, f"u{k % 300}", None, '["a", "b"]')

    rows = []
    for k in range(3000):  # the top-N baseline recommends neither actual item; the candidate one of the two
        rows += [row("v1", True, '["x", "y", "z"]', k), row("v2", False, '["a", "y", "z"]', k)]
    checks = {c.name: c for c in evaluate(summary_of(rows), "shadow", load_policy(None, "first-model")).checks}
    assert checks["accuracy"].classification == "pass"
    assert checks["accuracy"].candidate == pytest.approx(0.5) and checks["accuracy"].stable == 0.0
    assert checks["extremes"].classification == "n/a"  # item lists have no fixed set of labels
    assert checks["disagreement"].criticality == "report-only"


def test_a_constant_baseline_has_no_spread_to_bound_or_scale_by():
    rows = [replace(r, prediction=152.0) if r.variant == "v1" and r.prediction is not None else r
            for r in traffic("shadow", 3000)]
    summary = summary_of(rows)
    policy = load_policy(None, "first-model")
    assert gate("extremes", summary, "shadow", policy).classification == "n/a"
    assert "set prediction_bounds" in gate("extremes", summary, "shadow", policy).reason
    assert gate("prediction_shift", summary, "shadow", policy).classification == "n/a"
    bounded = Policy(prediction_bounds=(-200.0, 500.0), first_model=True)
    assert gate("extremes", summary, "shadow", bounded).classification == "pass"
    # The first model is far more accurate than the constant: accuracy passes; the day promotes.
    evaluation = evaluate(summary, "shadow", policy)
    assert {c.name: c.classification for c in evaluation.checks}["accuracy"] == "pass"
    assert evaluation.score == 100


@pytest.mark.parametrize("name, rows_of, stage, limit_word", [
    ("orphan_rows", lambda: traffic("shadow", 2000) + [SampleRow("x", "v2", True, 5.0, "ok", 1.0, None)],
     "shadow", "served=true during shadow"),
    ("duplicate_rows", lambda: (lambda rs: rs + [r for r in rs if r.variant == "v2"][:30])(traffic("shadow", 2000)),
     "shadow", "duplicate rows"),
    ("feedback_values", lambda: [replace(r, actual=float("nan")) if k == 7 else r
                                 for k, r in enumerate(traffic("canary", 2000))], "canary", "not finite"),
])
def test_integrity_gates_fail_and_name_the_count(name, rows_of, stage, limit_word):
    check = gate(name, summary_of(rows_of()), stage)
    assert check.failed and limit_word in check.reason


def test_null_outputs_use_the_whole_day_counts():
    rows = traffic("shadow", 2000)
    ok = sum(r.status == "ok" for r in rows if r.variant == "v2")
    check = gate("null_outputs", summary_of(rows, {("v2", False): ok // 8}), "shadow")
    assert check.failed and "carry no output" in check.reason
    assert gate("null_outputs", summary_of(rows), "shadow").classification == "pass"


def test_a_critical_gate_without_data_is_named_in_the_evaluation():
    evaluation = evaluate(summary_of(traffic("canary", 300, entities=20)), "canary", P)
    assert any("not judged" in r for r in evaluation.insufficient)


@pytest.mark.parametrize("weights", [{"latency": 100.0}, {"feedback": 60.0, "quality": 40.0}])
def test_weights_of_groups_without_a_verdict_are_not_lost(weights):
    """A weighted group with nothing judged today must not cap a passing day's score below 100."""
    evaluation = evaluate(summary_of(traffic("shadow", 4000)), "shadow", Policy(group_weights=weights))
    assert evaluation.score == 100


def _false_alarms(stage: str, days: int, **kwargs) -> tuple[int, int]:
    alarms = judged = 0
    for seed in range(days):
        evaluation = evaluate(summary_of(traffic(stage, 3000, seed=seed, **kwargs)), stage, P)
        failed = [c for c in evaluation.checks if c.failed and c.criticality != "report-only"]
        judged += 1
        alarms += bool(failed)
    return alarms, judged


@pytest.mark.parametrize("stage", ["shadow", "canary"])
def test_two_identical_models_rarely_fail_a_gate(stage):
    """Identical candidate and stable over 60 days of clustered traffic: no gate fails (per-request tests would)."""
    alarms, judged = _false_alarms(stage, 60, share=0.5)
    assert alarms == 0, f"{alarms} of {judged} identical days failed a gate"


def test_late_labels_judge_accuracy_on_the_day_whose_outcomes_had_time_to_arrive():
    """label_delay_days: today's requests have no outcomes yet; accuracy comes from the earlier day's sample."""
    today = [replace(r, actual=None) for r in traffic("shadow", 3000, seed=5)]
    earlier = traffic("shadow", 3000, seed=6, cand_noise=5.0)  # the candidate was far worse on that day
    policy = Policy(label_delay_days=2)
    summary = replace(summary_of(today), accuracy_day=policy.accuracy_day(DAY), accuracy_sample=tuple(earlier))
    assert summary.accuracy_day == DAY - dt.timedelta(days=2)
    check = {c.name: c for c in evaluate(summary, "shadow", policy).checks}["accuracy"]
    assert check.classification == "high" and "confidently worse" in check.reason
    # Without the earlier day's sample nothing can be judged, and the reason says which day is awaited.
    waiting = {c.name: c for c in evaluate(replace(summary, accuracy_sample=()), "shadow", policy).checks}["accuracy"]
    assert waiting.classification == "nodata" and str(DAY - dt.timedelta(days=2)) in waiting.reason


def test_the_review_counts_outcomes_still_awaited():
    rows = traffic("canary", 4000, seed=8, share=0.5)
    half = [replace(r, actual=None) if k % 2 and r.variant == "v2" else r for k, r in enumerate(rows)]
    check = {c.name: c for c in evaluate(summary_of(half), "canary", P).checks}["accuracy"]
    assert "still await their outcome" in check.reason
