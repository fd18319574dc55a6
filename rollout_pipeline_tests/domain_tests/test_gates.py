"""The gates, table-driven on hand-made day summaries: each verdict, its limit in the reason, its bar per step,
and the nights of a step pooled.

No database, no Dagster: summaries are built here from sampled rows (whole-day counts and latency histograms
computed from the same rows). The last tests run two identical models over many simulated nights and count
false failures.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import statistics
from dataclasses import replace

import pytest

from rollout_pipeline.domain.evaluate import evaluate
from rollout_pipeline.domain.gates import GATES, INTEGRITY, context_for
from rollout_pipeline.domain.policy import Policy, load_policy
from rollout_pipeline.domain.summary import LATENCY_BINS_PER_E, DaySummary, SampleRow, VariantDay

DAY = dt.date(2026, 3, 2)
P = Policy()


def variant_day(variant: str, served: bool, rows: list[SampleRow], null_outputs: int | None = None) -> VariantDay:
    preds = [r.prediction for r in rows if r.prediction is not None and math.isfinite(r.prediction)]
    lats = sorted(r.latency_ms for r in rows if r.latency_ms is not None)
    hist: dict[int, int] = {}
    for lat in lats:
        b = math.floor(math.log1p(lat) * LATENCY_BINS_PER_E)
        hist[b] = hist.get(b, 0) + 1
    nulls = sum(r.status == "ok" and r.prediction is None and r.label is None for r in rows)
    return VariantDay(
        variant=variant, served=served, requests=len(rows), ok=sum(r.status == "ok" for r in rows),
        errors=sum(r.status == "error" for r in rows), timeouts=sum(r.status == "timeout" for r in rows),
        unknown_status=0, missing_correlation_id=0, invalid_latency=0,
        latency_mean=statistics.fmean(lats) if lats else None, latency_max=lats[-1] if lats else None,
        latency_p50=None, latency_p95=None, latency_p99=lats[int(0.99 * (len(lats) - 1))] if lats else None,
        predictions=len(preds), prediction_mean=statistics.fmean(preds) if preds else None,
        prediction_std=statistics.pstdev(preds) if len(preds) > 1 else None,
        prediction_min=min(preds) if preds else None, prediction_max=max(preds) if preds else None,
        nonfinite_predictions=sum(r.prediction is not None and not math.isfinite(r.prediction) for r in rows),
        null_outputs=nulls if null_outputs is None else null_outputs,
        latency_histogram=tuple(sorted(hist.items())), shed=sum(r.status == "shed" for r in rows),
        actuals=sum(r.actual is not None for r in rows),
    )


def summary_of(rows: list[SampleRow], null_outputs: dict | None = None, day: dt.date = DAY) -> DaySummary:
    groups: dict[tuple[str, bool], list[SampleRow]] = {}
    for r in rows:
        groups.setdefault((r.variant, r.served), []).append(r)
    variants = tuple(variant_day(v, s, rs, (null_outputs or {}).get((v, s))) for (v, s), rs in sorted(groups.items()))
    return DaySummary("m", day, "v1", "v2", variants, (), None, (), tuple(rows))


def traffic(stage: str, n: int, seed: int = 0, *, cand_latency=1.0, cand_error=0.002, shift=0.0, cand_noise=1.0,
            complaint_mult=1.0, entities: int | None = None, share=0.2, labels=False, mirror=True, cover=1.0,
            extreme=0.0, cand_shadow=False, null=0.0, outcomes=True, population_seed: int | None = None,
            night: int = 0) -> list[SampleRow]:
    """Sampled rows of a day: entities sending several requests each; the candidate as asked.

    ``population_seed`` keeps the same entities (ids, traits, activity) across nights, as real users are;
    ``seed`` draws the night's requests.
    """
    pop_rng = random.Random(seed if population_seed is None else population_seed)
    rng = random.Random(seed * 7919 + night)
    population = entities or max(30, n // 8)
    traits = [(pop_rng.lognormvariate(0, 0.25), pop_rng.betavariate(0.5, 50), pop_rng.gauss(0, 1))
              for _ in range(population)]
    weights = [pop_rng.lognormvariate(0, 1.2) for _ in range(population)]  # heavy-tailed requests per entity
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
        cand_serves = stage == "production" or (stage == "canary" and (e * 7919) % 10_000 < share * 10_000)
        if cand_serves and rng.random() < complain_p * (complaint_mult - 1):
            complaints = 1
        cid, ent = f"c{seed}-{night}-{i}", f"u{e}"

        def row(variant, served, lat, err, pred, nothing=False):
            status = "error" if rng.random() < err else "ok"
            label = ("high" if pred > 150 else "low") if labels else None
            empty = nothing or status != "ok"
            return SampleRow(cid, variant, served, lat, status, None if labels or empty else pred,
                             None if empty else label, ent, truth if outcomes else None, None, complaints)

        c_row = row("v2", cand_serves, base * cand_latency, cand_error, c_pred, rng.random() < null)
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
            if cand_shadow:
                rows.append(c_row)
    return rows


def gate(name: str, summary: DaySummary, stage: str, policy: Policy = P, percent: int | None = None):
    fn = {**GATES, **INTEGRITY}[name]
    return fn(context_for(summary, stage, policy, percent=percent))


def test_the_registry_and_the_policy_name_the_same_metrics():
    assert tuple(GATES) == tuple(P.metrics) == ("latency", "error_rate", "broken_answers", "extremes",
                                                "latency_distribution", "prediction_shift", "disagreement",
                                                "complaints", "accuracy")
    assert tuple(INTEGRITY) == ("shadow_coverage", "orphan_rows", "duplicate_rows", "null_outputs", "feedback_values")
    assert not set(GATES) & set(INTEGRITY)


@pytest.mark.parametrize("name, stage, kwargs, verdict, says", [
    # latency: "p99 <= T" is "at most 1% above T", a count of the whole day's histogram.
    ("latency", "shadow", {}, "pass", "within stable p99"),
    ("latency", "shadow", {"cand_latency": 3.0}, "high", "+ 20% ="),
    ("latency", "canary", {"cand_latency": 3.0}, "high", "confidently more than 1%"),
    ("latency", "canary", {"n": 3000, "share": 0.01, "percent": 50}, "nodata", "p99 latency not"),
    # errors: on the same requests where the other model shadows, else served vs served with the stable's
    # clustering.
    ("error_rate", "shadow", {}, "pass", "bar"),
    ("error_rate", "shadow", {"cand_error": 0.2}, "high", "> stable"),
    ("error_rate", "canary", {"cand_error": 0.2}, "high", "entities, paired"),
    ("error_rate", "canary", {"cand_error": 0.2, "mirror": False}, "high", "candidate requests (effective)"),
    ("error_rate", "canary", {"n": 300, "share": 0.05, "mirror": False}, "nodata", "error rate not judged"),
    # broken answers: the candidate's own empty answers, whole-day counts; a failure, not a logging problem.
    ("broken_answers", "shadow", {}, "pass", "0 of"),
    ("broken_answers", "canary", {"null": 0.1}, "high", "confidently more than 0.10%"),
    # extremes: share of outputs outside plausible bounds, confidently above the limit.
    ("extremes", "shadow", {}, "pass", "outside ["),
    ("extremes", "canary", {"extreme": 0.03}, "high", "the limit 0.10%"),
    # prediction shift, paired on the same requests (the stable shadows the candidate in canary).
    ("prediction_shift", "shadow", {}, "pass", "within +-5 sd"),
    ("prediction_shift", "shadow", {"shift": 80.0}, "high", "beyond 0.5 sd"),
    ("prediction_shift", "canary", {"shift": -80.0}, "low", "entities, paired"),
    ("prediction_shift", "canary", {"shift": -80.0, "mirror": False, "share": 0.5}, "low", "entities)"),
    # complaints: served answers only, over entities; invisible in shadow.
    ("complaints", "canary", {"share": 0.5, "complaint_mult": 8.0}, "high", "complaint rate"),
    ("complaints", "canary", {"share": 0.5}, "pass", "<= bar"),
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
    percent = kwargs.pop("percent", 20 if stage == "canary" else None)
    check = gate(name, summary_of(traffic(stage, n, seed=3, **kwargs)), stage, percent=percent)
    assert check is not None
    assert check.classification == verdict, check.reason
    assert says in check.reason


def test_every_verdict_names_the_population_it_counts():
    evaluation = evaluate(summary_of(traffic("canary", 6000, seed=3, share=0.5, mirror=False)), "canary", P,
                          percent=50)
    populations = {c.name: c.population for c in evaluation.checks}
    assert populations["latency"] == "answers, whole days"
    assert populations["complaints"] == "served, entities"
    assert populations["error_rate"] == "entities"
    paired = evaluate(summary_of(traffic("shadow", 3000, seed=3)), "shadow", P)
    assert {c.name: c.population for c in paired.checks}["error_rate"].startswith("paired requests")


def test_each_step_asks_what_it_can_answer():
    """At the first step only gross failures must be ruled out: a 1% canary of a small service is judged on the
    critical gates and complaints at five times their detectable bar; scored gates without a verdict there do
    not hold it. Before production every gate is needed, at its detectable bar."""
    rows = traffic("canary", 20_000, seed=11, share=0.01, mirror=False)
    first = evaluate(summary_of(rows), "canary", P, percent=1)
    checks = {c.name: c for c in first.checks}
    assert {n for n, c in checks.items() if c.required} == {"latency", "error_rate", "broken_answers", "extremes"}
    assert checks["prediction_shift"].classification == "nodata" and not checks["prediction_shift"].required
    assert "not needed at this step" in checks["prediction_shift"].reason
    assert not first.insufficient, first.insufficient
    assert "bar 15.00%" in checks["error_rate"].reason  # 3 points x 5
    last = evaluate(summary_of(traffic("canary", 20_000, seed=11, share=0.5, mirror=False)), "canary", P, percent=50)
    assert all(c.required for c in last.checks)
    assert "bar 3.00%" in {c.name: c for c in last.checks}["error_rate"].reason


def test_a_regression_passes_the_first_steps_bar_but_not_the_last():
    """Four times the complaints: ruled out neither at 1% (too few users to tell, and the bar is gross), nor
    allowed before production."""
    rows = traffic("canary", 40_000, seed=4, share=0.5, complaint_mult=3.0, mirror=False)
    at_20 = gate("complaints", summary_of(rows), "canary", percent=20)
    at_50 = gate("complaints", summary_of(rows), "canary", percent=50)
    assert at_20.classification in ("pass", "high") and at_50.classification != "pass"


def nights(count: int, **kwargs) -> list[DaySummary]:
    n = kwargs.pop("n", 2000)
    return [summary_of(traffic("canary", n, seed=21, population_seed=5, night=k, **kwargs),
                       day=DAY + dt.timedelta(days=k)) for k in range(count)]


def test_the_nights_of_a_step_are_pooled_and_the_reasons_say_so():
    """A 1% canary of a 4,000-request-a-day service serves a few dozen requests a night: one night cannot rule
    out 5% of broken answers, four pooled nights can. Entities keep their ids across nights."""
    kwargs = dict(n=4000, share=0.01, mirror=False)
    one = evaluate(nights(1, **kwargs), "canary", P, percent=1)
    four = evaluate(nights(4, **kwargs), "canary", P, percent=1)
    assert {"broken_answers", "extremes"} <= {c.name for c in one.checks if c.insufficient and c.required}
    assert not four.insufficient, four.insufficient
    assert four.pooled.startswith("4 nights at canary 1% (2026-03-02..2026-03-05):")
    assert four.nights == 4


def test_pooling_stops_at_pool_nights():
    evaluation = evaluate(nights(5, n=500, share=0.2), "canary", Policy(pool_nights=2), percent=20)
    assert evaluation.nights == 2 and evaluation.pooled.startswith("2 nights")


def test_a_candidate_mirroring_the_stables_requests_is_judged_on_the_full_volume():
    """With the candidate shadowing the rest of the traffic, its latency, errors and outputs are judged pair by
    pair on every request at 1%, not on the few it served."""
    rows = traffic("canary", 6000, seed=8, share=0.01, cand_shadow=True, cand_latency=3.0)
    check = gate("latency", summary_of(rows), "canary", percent=1)
    assert check.classification == "high" and "served+mirrored" in check.population
    assert check.units > 5000
    shift = gate("prediction_shift", summary_of(traffic("canary", 6000, seed=8, share=0.01, cand_shadow=True)),
                 "canary", percent=1)
    assert shift.classification == "pass" and "paired" in shift.reason


def test_not_applicable_gates_say_so():
    summary = summary_of(traffic("shadow", 3000))
    assert gate("complaints", summary, "shadow") is None  # nobody complains about a shadow answer
    assert gate("disagreement", summary, "shadow") is None  # numeric outputs
    labels = summary_of(traffic("shadow", 3000, labels=True))
    assert gate("prediction_shift", labels, "shadow") is None  # a class has no mean


def test_no_outcome_ever_is_not_a_lack_of_data():
    """A service that sends no actual outcomes: accuracy is listed as such and the other gates decide; a policy
    that requires outcomes holds instead, saying why."""
    rows = traffic("canary", 6000, seed=2, share=0.5, outcomes=False)
    evaluation = evaluate(summary_of(rows), "canary", P, percent=50, outcomes_seen=False)
    accuracy = {c.name: c for c in evaluation.checks}["accuracy"]
    assert accuracy.classification == "n/a" and "no outcomes for this model" in accuracy.reason
    assert not evaluation.insufficient
    strict = evaluate(summary_of(rows), "canary", Policy(require_outcomes=True), percent=50, outcomes_seen=False)
    assert any("require_outcomes" in r for r in strict.insufficient)
    # Outcomes that arrive for the model but not yet for this night's requests are awaited, not waived.
    waiting = evaluate(summary_of(rows), "canary", P, percent=50, outcomes_seen=True)
    assert any("no actual outcomes yet" in r for r in waiting.insufficient)


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


def test_empty_answers_are_the_candidates_failure_and_the_stables_logging_problem():
    rows = traffic("shadow", 2000)
    ok = sum(r.status == "ok" for r in rows if r.variant == "v1")
    stable_empty = gate("null_outputs", summary_of(rows, {("v1", True): ok // 8}), "shadow")
    assert stable_empty.failed and "stable answers" in stable_empty.reason and "carry no output" in stable_empty.reason
    candidate_empty = summary_of(traffic("shadow", 2000, null=0.05))
    assert gate("null_outputs", candidate_empty, "shadow").classification == "pass"  # not the logs' fault
    broken = gate("broken_answers", candidate_empty, "shadow")
    assert broken.failed and broken.criticality == "critical"


def test_a_shed_shadow_call_is_missing_evidence_not_a_candidate_error():
    rows = traffic("shadow", 4000, seed=9)
    shed = [replace(r, status="shed", prediction=None, latency_ms=None) if r.variant == "v2" and k % 3 == 0 else r
            for k, r in enumerate(rows)]
    summary = summary_of(shed)
    assert gate("error_rate", summary, "shadow").classification == "pass"
    assert gate("shadow_coverage", summary, "shadow").classification == "pass"


def test_a_critical_gate_without_data_is_named_in_the_evaluation():
    evaluation = evaluate(summary_of(traffic("canary", 300, entities=20)), "canary", P, percent=20)
    assert any("not judged" in r for r in evaluation.insufficient)


@pytest.mark.parametrize("weights", [{"latency": 100.0}, {"feedback": 60.0, "quality": 40.0}])
def test_weights_of_groups_without_a_verdict_are_not_lost(weights):
    """A weighted group with nothing judged today must not cap a passing day's score below 100."""
    evaluation = evaluate(summary_of(traffic("shadow", 4000)), "shadow", Policy(group_weights=weights))
    assert evaluation.score == 100


def _false_failures(stage: str, days: int, **kwargs) -> tuple[int, int]:
    alarms = judged = 0
    for seed in range(days):
        evaluation = evaluate(summary_of(traffic(stage, 3000, seed=seed, **kwargs)), stage, P, percent=50)
        failed = [c for c in evaluation.checks if c.failed and c.criticality != "report-only"]
        judged += 1
        alarms += bool(failed)
    return alarms, judged


@pytest.mark.parametrize("stage", ["shadow", "canary"])
def test_two_identical_models_rarely_fail_a_gate(stage):
    """Identical candidate and stable over 25 days of clustered traffic: no gate fails (per-request tests would).
    The long run of this sweep is benchmarks/decision_quality.py."""
    alarms, judged = _false_failures(stage, 25, share=0.5)
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
    waiting = {c.name: c for c in evaluate(replace(summary, accuracy_sample=()), "shadow", policy,
                                           outcomes_seen=True).checks}["accuracy"]
    assert waiting.classification == "nodata" and str(DAY - dt.timedelta(days=2)) in waiting.reason


def test_the_review_counts_outcomes_still_awaited():
    rows = traffic("canary", 4000, seed=8, share=0.5)
    half = [replace(r, actual=None) if k % 2 and r.variant == "v2" else r for k, r in enumerate(rows)]
    check = {c.name: c for c in evaluate(summary_of(half), "canary", P, percent=50).checks}["accuracy"]
    assert "still await their outcome" in check.reason


def test_latency_is_not_ranked_between_the_users_of_a_canary_that_is_not_mirrored():
    """Without mirrored answers the two sides are different users: in a small canary a handful of entities (or
    only anonymous requests, one unit each) against the stable's many-request users. A rank test of the two reads
    who landed in the canary as a latency difference (it failed a healthy candidate after 14 pooled nights in the
    rollout benchmark); the p99 gate judges latency there, per answer."""
    rows = traffic("canary", 6000, seed=5, share=0.01, mirror=False)
    anonymous = [replace(r, entity_id=None) if r.variant == "v2" else r for r in rows]
    check = gate("latency_distribution", summary_of(anonymous), "canary", percent=1)
    assert check.classification == "n/a" and "same requests only" in check.reason
    mirrored = gate("latency_distribution", summary_of(traffic("canary", 6000, seed=5, share=0.01)), "canary",
                    percent=1)
    assert mirrored is not None and mirrored.classification != "n/a"
