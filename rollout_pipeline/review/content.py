"""What a decision's review shows, as one small JSON-able record built by a pure function.

The decision service (``rollout_pipeline.decisions``, every path that decides) builds
it from the day's stored evidence and stores it in the decision row's ``metrics`` JSON; the asset metadata and the HTML report are both
rendered from that one record, so they show the same numbers, and the CLI can
rebuild the report without the Dagster run.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from rollout_pipeline.domain.evaluate import compared_sides as judged_sides  # the sides the judge compared
from rollout_pipeline.domain.evaluate import sample_values
from rollout_pipeline.domain.gates import pairs_of
from rollout_pipeline.domain.summary import DaySummary, VariantDay, finite

HIST_BINS = 30
MAX_EXTREMES = 10


@dataclass(frozen=True)
class Side:
    """One side of the comparison (stable or candidate) as the judge saw it."""

    role: str  # "stable" | "candidate"
    variant: str
    served: bool
    requests: int
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    error_rate: float | None
    complaint_rate: float | None
    accuracy: float | None  # share of correct labels, once actual outcomes are known
    abs_error_mean: float | None  # regression: mean absolute error, once actual values are known
    prediction_mean: float | None
    prediction_std: float | None


@dataclass(frozen=True)
class Check:
    """One judged metric: its verdict, why, and what its two numbers count."""

    name: str
    classification: str
    criticality: str
    stable: float | None
    candidate: float | None
    reason: str
    population: str = ""  # what the numbers count ("paired requests", "candidate-served entities"), when the gate says
    units: int = 0  # independent units behind the verdict
    needed: int = 0  # units the gate needs, when it knows


@dataclass(frozen=True)
class Validation:
    """One validation suite's result for the day (an asset check of the run)."""

    name: str
    passed: bool
    severity: str  # ERROR blocks the decision, WARN only reports
    failures: tuple[str, ...]
    not_judged: tuple[str, ...] = ()  # expectations with too little data to tell (never a pass)

    @property
    def outcome(self) -> str:
        """passed | failed | not judged."""
        if self.passed:
            return "passed"
        return "not judged" if self.not_judged and not self.failures else "failed"


@dataclass(frozen=True)
class ExtremeRow:
    """An unusually high or low candidate output, with the request's correlation id to look it up."""

    side: str
    correlation_id: str | None
    candidate_prediction: float
    stable_prediction: float | None


@dataclass(frozen=True)
class Histogram:
    """Counts on shared bin edges (len(edges) == len(counts) + 1), one series per label."""

    title: str
    unit: str
    edges: tuple[float, ...]
    series: tuple[tuple[str, tuple[int, ...]], ...]
    log_x: bool = False


@dataclass(frozen=True)
class HistoryPoint:
    """One decided day of the rollout: the share after it and the judge score."""

    day: str
    action: str
    stage_after: str
    percent_after: int
    score: float | None

    @property
    def share(self) -> int:
        """Percent of traffic the candidate serves after this day's decision."""
        return 100 if self.stage_after == "production" else (self.percent_after if self.stage_after == "canary" else 0)


@dataclass(frozen=True)
class Review:
    """Everything the morning review shows about one model's day."""

    model: str
    day: str
    action: str
    forced: bool
    actor: str
    reasons: tuple[str, ...]
    stage_before: str
    percent_before: int
    stage_after: str
    percent_after: int
    score: float | None = None
    compared: str | None = None
    sides: tuple[Side, ...] = ()
    prediction_shift_sd: float | None = None
    checks: tuple[Check, ...] = ()
    validations: tuple[Validation, ...] = ()
    data_quality_failures: tuple[str, ...] = ()
    extremes: tuple[ExtremeRow, ...] = ()
    histograms: tuple[Histogram, ...] = ()
    pooled: str = ""  # the nights behind the verdicts, e.g. "3 nights at 1%: 5,210 requests, 412 entities"
    plan: str = ""  # the nights left to production at this traffic (domain.plan), and what would help
    decision_id: int | None = None
    run_id: str | None = None

    def side(self, role: str) -> Side | None:
        return next((s for s in self.sides if s.role == role), None)

    def to_json(self) -> dict:
        """A JSON-able dict (the ``review`` key of the decision's metrics); ids are kept in their columns."""
        out = dataclasses.asdict(self)
        out.pop("decision_id")
        out.pop("run_id")
        return _json_safe(out)

    @classmethod
    def from_json(cls, data: dict, **overrides) -> Review:
        """The review stored by :meth:`to_json`, with ``overrides`` (e.g. the decision row's columns)."""
        d = {**data, **overrides}
        d["reasons"] = tuple(d.get("reasons", ()))
        d["sides"] = tuple(Side(**s) for s in d.get("sides", ()))
        d["checks"] = tuple(Check(**c) for c in d.get("checks", ()))
        d["validations"] = tuple(Validation(**{**v, "failures": tuple(v["failures"]),
                                               "not_judged": tuple(v.get("not_judged", ()))})
                                 for v in d.get("validations", ()))
        d["data_quality_failures"] = tuple(d.get("data_quality_failures", ()))
        d["extremes"] = tuple(ExtremeRow(**e) for e in d.get("extremes", ()))
        d["histograms"] = tuple(
            Histogram(h["title"], h["unit"], tuple(h["edges"]),
                      tuple((label, tuple(counts)) for label, counts in h["series"]), h.get("log_x", False))
            for h in d.get("histograms", ()))
        return cls(**d)


def _json_safe(value):
    """``value`` with tuples as lists and non-finite floats as None (JSON, and PostgreSQL's JSON, have no NaN)."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _side(role: str, v: VariantDay | None) -> Side | None:
    if v is None:
        return None
    return Side(role, v.variant, v.served, v.requests, v.latency_p50, v.latency_p95, v.latency_p99, v.error_rate,
                v.complaint_rate if v.served else None, v.label_accuracy if v.actuals else None,
                v.abs_error_mean if v.actuals else None, v.prediction_mean, v.prediction_std)


def histogram(values: list[float], edges: list[float]) -> tuple[int, ...]:
    """Counts of ``values`` in the bins of ``edges`` (the last bin includes its upper edge)."""
    import bisect

    counts = [0] * (len(edges) - 1)
    for x in values:
        if edges[0] <= x <= edges[-1]:
            counts[min(bisect.bisect_right(edges, x) - 1, len(counts) - 1)] += 1
    return tuple(counts)


def _linear_edges(lo: float, hi: float, bins: int = HIST_BINS) -> list[float]:
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return [lo + (hi - lo) * k / bins for k in range(bins + 1)]


def _log_edges(lo: float, hi: float, bins: int = HIST_BINS) -> list[float]:
    lo, hi = math.log1p(max(lo, 0.0)), math.log1p(max(hi, 0.0))
    return [math.expm1(x) for x in _linear_edges(lo, hi, bins)]


def _histograms(summary: DaySummary, stable: Side | None, cand: Side | None) -> tuple[Histogram, ...]:
    out = []
    sv = summary.get(stable.variant, stable.served) if stable else None
    cv = summary.get(cand.variant, cand.served) if cand else None
    label = {role: f"{role} {s.variant}{'' if s.served else ' (shadow)'}" if s else role
             for role, s in (("stable", stable), ("candidate", cand))}
    # Predictions: the whole day's histograms on the summary's shared edges.
    if summary.prediction_edges and any(v and v.prediction_histogram for v in (sv, cv)):
        series = tuple((label[role], tuple(v.prediction_histogram)) for role, v in (("stable", sv), ("candidate", cv))
                       if v is not None and v.prediction_histogram)
        out.append(Histogram("Predictions (whole day)", "", tuple(summary.prediction_edges), series))
    # Latency: the sample, on shared log-spaced edges.
    lat = {role: sample_values(summary, s.variant, s.served, "latency_ms")
           for role, s in (("stable", stable), ("candidate", cand)) if s}
    values = [x for v in lat.values() for x in v]
    if values:
        edges = _log_edges(min(values), max(values))
        out.append(Histogram("Latency (sample)", "ms", tuple(edges),
                             tuple((label[k], histogram(v, edges)) for k, v in lat.items() if v), log_x=True))
    # Pairs (one side served, the other answering the same request in shadow): candidate minus stable on the
    # same request -- in shadow, in canary (the stable model shadows the candidate's own users) and after
    # promotion; both halves of a pair are sampled together.
    if stable and cand:
        diffs = [p.candidate.prediction - p.stable.prediction
                 for p in pairs_of(summary.sample, stable.variant, cand.variant)
                 if finite(p.candidate.prediction) and finite(p.stable.prediction)]
        if diffs:
            edges = _linear_edges(min(diffs), max(diffs))
            out.append(Histogram(f"Paired difference, candidate - stable ({len(diffs)} requests both answered)", "",
                                 tuple(edges), (("candidate - stable", histogram(diffs, edges)),)))
    return tuple(out)


def build_review(model: str, day: str, decision, actor: str, *, evaluation=None, summary: DaySummary | None = None,
                 validations: tuple[Validation, ...] = (), data_quality_failures=(), plan: str = "") -> Review:
    """The review of ``decision`` (a domain ``Decision`` or a stored ``DecisionRecord``) from the day's data."""
    before = getattr(decision, "before", None)
    stage_before = before.stage if before is not None else decision.stage_before
    percent_before = before.canary_percent if before is not None else decision.percent_before
    sides: tuple[Side, ...] = ()
    shift = None
    hists: tuple[Histogram, ...] = ()
    extremes: tuple[ExtremeRow, ...] = ()
    if summary is not None:
        stable_day, cand_day, _ = judged_sides(summary, stage_before)
        stable, cand = _side("stable", stable_day), _side("candidate", cand_day)
        sides = tuple(s for s in (stable, cand) if s is not None)
        if stable and cand and finite(stable.prediction_std) and stable.prediction_std > 0 \
                and finite(stable.prediction_mean) and finite(cand.prediction_mean):
            shift = (cand.prediction_mean - stable.prediction_mean) / stable.prediction_std
        hists = _histograms(summary, stable, cand)
        # The most extreme of each side: the highest highs, then the lowest lows.
        highs = sorted((e for e in summary.extremes if e.side == "high"), key=lambda e: -e.candidate_prediction)
        lows = sorted((e for e in summary.extremes if e.side != "high"), key=lambda e: e.candidate_prediction)
        extremes = tuple(ExtremeRow(e.side, e.correlation_id, float(e.candidate_prediction),
                                    None if e.stable_prediction is None else float(e.stable_prediction))
                         for e in highs[:MAX_EXTREMES // 2] + lows[:MAX_EXTREMES // 2])
    checks = ()
    score = compared = None
    pooled = ""
    if evaluation is not None:
        checks = tuple(check_of(c) for c in evaluation.checks)
        score, compared = evaluation.score, evaluation.compared
        pooled = getattr(evaluation, "pooled", "") or ""
    return Review(model, day, decision.action, bool(decision.forced), actor, tuple(decision.reasons),
                  stage_before, percent_before, decision.stage_after, decision.percent_after,
                  score=score, compared=compared, sides=sides, prediction_shift_sd=shift, checks=checks,
                  validations=tuple(validations), data_quality_failures=tuple(data_quality_failures),
                  extremes=extremes, histograms=hists, pooled=pooled, plan=plan)


def check_of(c) -> Check:
    """A gate's ``MetricCheck`` as the review keeps it (whatever gates the registry has)."""
    return Check(c.name, c.classification, c.criticality, c.stable, c.candidate, c.reason,
                 getattr(c, "population", "") or "", int(getattr(c, "units", 0) or 0),
                 int(getattr(c, "needed", 0) or 0))


def review_from_record(record) -> Review:
    """The review of a stored decision (``DecisionRecord``): the one stored with it, else what its row holds."""
    ids = {"decision_id": record.id, "run_id": record.run_id}
    columns = {"action": record.action, "forced": record.forced, "actor": record.actor,
               "reasons": tuple(record.reasons), "stage_before": record.stage_before,
               "percent_before": record.percent_before, "stage_after": record.stage_after,
               "percent_after": record.percent_after, "model": record.model_name, "day": record.day.isoformat()}
    stored = (record.metrics or {}).get("review")
    if stored:
        return Review.from_json(stored, **columns, **ids)
    # Rows stored before every path stored its review (a blocked run's hold, a manual rollback): what the row says.
    m = record.metrics or {}
    checks = tuple(Check(c["name"], c["classification"], c["criticality"], c.get("stable"), c.get("candidate"),
                         c["reason"], c.get("population", ""), c.get("units", 0), c.get("needed", 0))
                   for c in m.get("checks", ()))
    return Review(**columns, score=m.get("score"), compared=m.get("compared"), checks=checks,
                  data_quality_failures=tuple(m.get("data_quality_failures", ())), **ids)


def history_points(records, until: str | None = None) -> tuple[HistoryPoint, ...]:
    """The rollout's decided days up to ``until`` (inclusive), from stored decisions (oldest first)."""
    return tuple(HistoryPoint(r.day.isoformat(), r.action, r.stage_after, r.percent_after,
                              (r.metrics or {}).get("score"))
                 for r in records if until is None or r.day.isoformat() <= until)
