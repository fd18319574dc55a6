"""The rollout policy: a YAML file validated by pydantic, with defaults that follow DESIGN.md.

Every field is documented in docs/policy.md; `rollout-pipeline policy-defaults`
prints the defaults as YAML.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Criticality = Literal["normal", "critical", "report-only"]

# Every number of a policy has a range (docs/policy.md, "Fields"): past these no rollout makes sense, and
# unbounded values broke arithmetic downstream (approval_expiry_days 99999999999 overflowed a date).
MAX_DAYS = 36_500  # days in a step, in shadow, of retention, to approve: a century (a date + 2.9M days overflows)
MAX_COUNT = 1_000_000_000  # counts of requests, units, rows, events
MAX_FACTOR = 100.0  # relative allowances and effect sizes (100 = 10,000%), standard deviations
MAX_LATENCY_MS = 3_600_000.0  # an hour
MAX_PREDICTION = 1e15  # |prediction_bounds|: the log contract's ABSURD_VALUE (domain.summary)
MAX_YAML_DEPTH = 16  # a policy nests 3 levels (judge, metrics, group_weights); deeper is not a policy
MAX_YAML_BYTES = 65_536


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the bad field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class JudgeThresholds(_Strict):
    pass_score: float = Field(95, ge=0, le=100, description="score at or above which the day passes (Kayenta: 95)")
    marginal_score: float = Field(75, ge=0, le=100, description="score below which the candidate fails (Kayenta: 75)")
    confidence: float = Field(0.98, gt=0.5, lt=1, description="confidence of the Mann-Whitney interval")
    tolerance_fraction: float = Field(0.25, ge=0, le=MAX_FACTOR, description="shift tolerated as a fraction of the estimate")

    @model_validator(mode="after")
    def _ordered(self):
        if self.marginal_score > self.pass_score:
            raise ValueError("marginal_score must not exceed pass_score")
        return self


class Policy(_Strict):
    """How a rollout advances; see docs/policy.md for each field and each gate."""

    canary_steps: tuple[int, ...] = (1, 20, 50, 100)
    min_shadow_days: int = Field(1, ge=0, le=MAX_DAYS)
    min_days_per_step: int = Field(1, ge=1, le=MAX_DAYS)
    first_model: bool = Field(False, description="the stable variant is a baseline (constant or top-N)")
    min_requests: int | None = Field(
        None, ge=1, le=MAX_COUNT, description="an extra floor of candidate requests (paired in shadow, served in canary); "
        "None = only the gates' own minimum samples"
    )
    # How sure a gate must be before it fails a candidate, and how likely it must be to catch the
    # regression it is sized for before it may pass one (below that sample: "not enough data").
    gate_confidence: float = Field(0.999, gt=0.5, lt=1, description="any-time confidence a gate needs to fail a "
                                   "candidate (1 - chance of a false failure over all the nights of a step)")
    pass_confidence: float = Field(0.95, gt=0.5, lt=1, description="any-time confidence a gate needs to pass one: a "
                                   "regression at the step's bar passes with at most 1 - this, however often looked at")
    power: float = Field(0.8, gt=0, lt=1, description="planning: the chance with which a gate's stated minimum sample "
                         "lets a candidate as good as the stable pass")
    min_units: int = Field(30, ge=2, le=MAX_COUNT,
                           description="no gate judges fewer independent units (entities or requests)")
    # Pacing: each step asks what it can answer before the share grows (docs/policy.md, "Pacing").
    step_bar_max: float = Field(5.0, ge=1, le=100, description="a step's bar is the detectable regression times "
                                "min(step_bar_max, 100 / the next step's %): looser where the next exposure is small")
    first_step_requires: tuple[str, ...] = Field(
        ("latency", "error_rate", "broken_answers", "extremes"),
        description="gates whose verdict the first canary step needs (gross failures of the model's answers); the "
                    "others, complaints included, act on a confident failure there but need no verdict")
    pool_nights: int = Field(14, ge=1, le=60, description="nights of a step pooled at most (the latest)")
    # latency (critical)
    latency_slo_p99_ms: float | None = Field(250.0, gt=0, le=MAX_LATENCY_MS, description="candidate p99 bound above this fails; None: no SLO")
    latency_bound_confidence: float = Field(
        0.95, gt=0.5, lt=1, description="the candidate's p99 is judged once the sample bounds it from above at this")
    latency_regression_allowed: float | None = Field(
        0.2, ge=0, le=MAX_FACTOR,
        description="candidate p99 may exceed stable p99 by this fraction; None: not compared (baselines)")
    latency_tail_detectable: float = Field(
        0.03, gt=0.01, lt=1, description="share of requests above the latency limit the rollout must stop (the p97)")
    # errors (critical)
    error_rate_limit: float = Field(0.02, ge=0, le=1, description="candidate (errors + timeouts) rate cap")
    error_rate_margin: float = Field(0.01, ge=0, le=1, description="candidate error rate may exceed the stable's by this")
    error_rate_detectable: float = Field(0.03, gt=0, le=1, description="excess error rate the minimum sample must catch")
    # extremes (critical)
    prediction_bounds: tuple[float, float] | None = None
    extreme_share_limit: float = Field(0.001, ge=0, le=1)
    extreme_share_detectable: float = Field(0.01, gt=0, le=1, description="share of extremes the minimum sample must catch")
    # predictions (normal)
    prediction_shift_limit: float = Field(
        0.5, ge=0, le=MAX_FACTOR, description="|mean shift| allowed, in standard deviations of the stable predictions"
    )
    prediction_shift_detectable: float = Field(1.0, gt=0, le=MAX_FACTOR, description="shift (stable sd) the minimum sample must catch")
    disagreement_limit: float = Field(0.3, ge=0, le=1, description="labels: share of paired answers that disagree")
    disagreement_detectable: float = Field(0.45, gt=0, le=1)
    # feedback (normal)
    complaint_margin: float = Field(0.005, ge=0, le=1, description="candidate complaint rate may exceed the stable's by this")
    complaint_regression_allowed: float = Field(0.5, ge=0, le=MAX_FACTOR, description="... or by this fraction of it, whichever is larger")
    complaint_detectable: float = Field(0.03, gt=0, le=1, description="excess complaint rate the minimum sample must catch")
    # quality (normal; critical for first models)
    accuracy_regression_allowed: float = Field(0.1, ge=0, le=MAX_FACTOR, description="numbers: mean absolute error may grow by this fraction")
    accuracy_detectable: float = Field(0.5, gt=0, le=MAX_FACTOR, description="numbers: growth of the error the minimum sample must catch")
    accuracy_drop_allowed: float = Field(0.02, ge=0, le=1, description="labels: accuracy may drop by this many points")
    accuracy_drop_detectable: float = Field(0.1, gt=0, le=1)
    label_delay_days: int = Field(0, ge=0, le=60, description="days actual outcomes need to arrive; accuracy is judged "
                                  "on the requests of that many days before the analysed day")
    # log integrity (a failure holds the day: it cannot be judged)
    min_shadow_coverage: float = Field(0.95, ge=0, le=1, description="shadow: share of served requests with a candidate twin")
    max_orphan_rows: int = Field(0, ge=0, le=MAX_COUNT,
                                 description="shadow: candidate rows served=true (no request should reach it)")
    max_duplicate_rows: int = Field(0, ge=0, le=MAX_COUNT,
                                    description="rows of the sample repeating (correlation id, variant, served)")
    max_null_output_share: float = Field(0.001, ge=0, le=1, description="ok answers without a usable output: the "
                                         "stable's hold the day (integrity), the candidate's are broken_answers")
    broken_answers_detectable: float = Field(0.01, gt=0, le=1, description="share of broken candidate answers the "
                                             "rollout must stop (empty, non-finite or absurd)")
    max_unmatched_shadow_share: float = Field(0.01, ge=0, le=1)
    # the intraday guardrail (domain/guardrail.py): anytime-valid tests of the day so far, rollback only
    guardrail: bool = Field(True, description="run the intraday guardrail for this rollout (canary, and the watch)")
    guardrail_alpha: float = Field(0.001, gt=0, lt=0.5, description="chance of a false rollback over a whole day")
    guardrail_rate_ratio: float = Field(2.0, ge=1, le=MAX_FACTOR, description="it acts on a candidate rate above this x the stable's")
    guardrail_min_events: int = Field(10, ge=1, le=MAX_COUNT, description="candidate events needed before it may act")
    judge: JudgeThresholds = JudgeThresholds()
    retention_days: int = Field(3, ge=0, le=MAX_DAYS)
    # approval gates: a nightly promotion into one of these canary steps (100: production) waits for a person
    require_approval_for: tuple[int, ...] = Field(
        (), description="canary percentages whose promotion into them waits for a person's approval (e.g. [1, 100])")
    approval_expiry_days: int = Field(3, ge=1, le=MAX_DAYS, description="a pending approval not given by then becomes a hold")
    shadow_old_model_during_retention: bool = True
    shadow_stable_during_canary: bool = Field(
        True, description="canary: the stable model answers the candidate's requests in shadow (paired analysis)")
    shadow_candidate_during_canary: bool = Field(
        True, description="canary: the candidate answers the stable's requests in shadow (model behaviour judged "
                          "pair by pair on the full volume at every step; docs/serving.md gives its cost)")
    require_outcomes: bool = Field(
        False, description="hold while no actual outcome ever arrived for the rollout (else accuracy is listed as "
                           "'no outcomes for this model' and the other gates decide)")
    metrics: dict[str, Criticality] = Field(default_factory=lambda: dict(DEFAULT_CRITICALITY))
    group_weights: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _drop_retired_fields(cls, data):
        """Policies stored by earlier versions still load: fields that no longer exist are ignored."""
        if isinstance(data, dict) and any(k in RETIRED_FIELDS for k in data):
            return {k: v for k, v in data.items() if k not in RETIRED_FIELDS}
        return data

    @field_validator("canary_steps")
    @classmethod
    def _steps(cls, steps: tuple[int, ...]) -> tuple[int, ...]:
        if not steps:
            raise ValueError("at least one canary step is needed")
        if any(not 0 < s <= 100 for s in steps):
            raise ValueError("each step is a percentage in 1..100")
        if list(steps) != sorted(set(steps)):
            raise ValueError("steps must be strictly increasing")
        if steps[-1] != 100:
            raise ValueError("the last step must be 100")
        return steps

    @model_validator(mode="after")
    def _approval_steps(self):
        unknown = sorted(set(self.require_approval_for) - set(self.canary_steps))
        if unknown:
            raise ValueError(f"require_approval_for {unknown} must be steps of canary_steps "
                             f"{list(self.canary_steps)}")
        return self

    @field_validator("first_step_requires")
    @classmethod
    def _known_first_step(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(names) - set(METRICS))
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; known: {', '.join(METRICS)}")
        return names

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, metrics: dict[str, str]) -> dict[str, str]:
        unknown = set(metrics) - set(METRICS)
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}; known: {', '.join(METRICS)}")
        return {**DEFAULT_CRITICALITY, **metrics}

    @field_validator("group_weights")
    @classmethod
    def _weights(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(weights) - set(GROUPS))
        if unknown:
            raise ValueError(f"unknown groups {unknown}; known: {', '.join(GROUPS)}")
        negative = sorted(g for g, w in weights.items() if w < 0)
        if negative:
            raise ValueError(f"weights must be >= 0: {', '.join(negative)}")
        total = sum(weights.values())
        if total > 100:
            raise ValueError(f"weights sum to {total:g}, more than 100")
        return weights

    @model_validator(mode="after")
    def _detectable_beyond_limits(self):
        pairs = (("error_rate_detectable", "error_rate_margin"), ("extreme_share_detectable", "extreme_share_limit"),
                 ("prediction_shift_detectable", "prediction_shift_limit"),
                 ("disagreement_detectable", "disagreement_limit"), ("complaint_detectable", "complaint_margin"),
                 ("accuracy_detectable", "accuracy_regression_allowed"),
                 ("accuracy_drop_detectable", "accuracy_drop_allowed"),
                 ("broken_answers_detectable", "max_null_output_share"))
        for detect, limit in pairs:
            if getattr(self, detect) <= getattr(self, limit):
                raise ValueError(f"{detect} ({getattr(self, detect):g}) must exceed {limit} ({getattr(self, limit):g})")
        if self.prediction_bounds is not None and not self.prediction_bounds[0] < self.prediction_bounds[1]:
            raise ValueError("prediction_bounds must be [low, high] with low < high")
        if self.prediction_bounds is not None and any(abs(b) >= MAX_PREDICTION for b in self.prediction_bounds):
            raise ValueError(f"prediction_bounds must lie within (-{MAX_PREDICTION:g}, {MAX_PREDICTION:g})")
        return self

    @property
    def version(self) -> str:
        """A short content hash: decisions record which policy they were made under."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def accuracy_day(self, day: dt.date) -> dt.date:
        """The day whose requests the accuracy of ``day`` is judged on: outcomes had label_delay_days to arrive."""
        return day - dt.timedelta(days=self.label_delay_days)

    def next_step(self, percent: int) -> int | None:
        """The canary share after ``percent``, or None when already at the last step."""
        return next((s for s in self.canary_steps if s > percent), None)

    def next_share(self, stage: str, percent: int) -> int | None:
        """The candidate's share (%) a promotion from (stage, percent) would give it; None: nothing to promote to."""
        if stage == "shadow":
            return self.canary_steps[0]
        if stage == "canary":
            return self.next_step(percent) or 100
        return None

    def bar_multiplier(self, stage: str, percent: int) -> float:
        """How much looser than the detectable regression a step's bar is: the next step exposes fewer users."""
        share = self.next_share(stage, percent)
        if share is None:
            return 1.0
        return max(1.0, min(self.step_bar_max, 100.0 / share))

    def required_at(self, stage: str, percent: int) -> frozenset[str] | None:
        """The gates whose verdict a promotion from (stage, percent) needs; None: every applicable gate."""
        if stage == "canary" and percent == self.canary_steps[0] and len(self.canary_steps) > 1:
            return frozenset(self.first_step_requires)
        return None


# The metric gates (domain/gates.py registers one function per name; a test keeps the two lists equal).
DEFAULT_CRITICALITY: dict[str, Criticality] = {
    "latency": "critical",
    "error_rate": "critical",
    "broken_answers": "critical",
    "extremes": "critical",
    "latency_distribution": "normal",
    "prediction_shift": "normal",
    "disagreement": "normal",
    "complaints": "normal",
    "accuracy": "normal",
}
METRICS = tuple(DEFAULT_CRITICALITY)
GROUPS = ("latency", "errors", "predictions", "feedback", "quality")
RETIRED_FIELDS = frozenset({"wiring_step_min_requests", "detectable_effect", "complaint_rate_limit"})

# Shipped policies, for `rollout start --preset NAME`; a --policy file's fields override them.
PRESETS: dict[str, dict] = {
    "default": {},
    # A first model against a baseline (a constant, or the top-N most popular items): the baseline's
    # latency and its output distribution say nothing about the candidate, so they are not compared;
    # the candidate must be at least as accurate as the baseline, within its SLO and bounds.
    "first-model": {
        "first_model": True,
        "latency_regression_allowed": None,
        # A first model is judged on its outcomes against the baseline: without any, nothing says it is better.
        "require_outcomes": True,
        # Against a constant, catching a model twice as wrong is the question; a finer comparison needs
        # more outcomes than a first model's early days bring (docs/policy.md, "First models").
        "accuracy_detectable": 1.0,
        "metrics": {"prediction_shift": "report-only", "disagreement": "report-only",
                    "latency_distribution": "report-only", "accuracy": "critical"},
    },
}


def _explain(exc: ValidationError, source: str) -> str:
    """One line naming every bad field."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
    return f"invalid policy {source}: " + "; ".join(parts)


def parse_policy(data: dict | None, source: str = "(inline)") -> Policy:
    """Validate a policy mapping; raise PolicyError naming every bad field."""
    try:
        return Policy.model_validate(data or {})
    except ValidationError as exc:
        raise PolicyError(_explain(exc, source)) from None


def policy_over_preset(data: dict | None, preset: str = "default", source: str = "(inline)") -> Policy:
    """The policy of ``preset`` with ``data``'s fields over it (``metrics`` merged key by key)."""
    if preset not in PRESETS:
        raise PolicyError(f"unknown preset {preset!r}: one of {', '.join(PRESETS)}")
    if data is not None and not isinstance(data, dict):
        raise PolicyError(f"policy {source} must be a mapping of fields, got {type(data).__name__}")
    base = PRESETS[preset]
    merged = {**base, **(data or {})}
    if "metrics" in base and data and "metrics" in data:
        merged["metrics"] = {**base["metrics"], **(data["metrics"] or {})}
    return parse_policy(merged, source)


def _check_yaml_shape(text: str, source: str) -> None:
    """Refuse a YAML text too large or nested too deep before it is composed (composing recurses per level)."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_YAML_BYTES:
        raise PolicyError(f"policy {source} is larger than {MAX_YAML_BYTES} bytes")
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):  # events come from a loop, not recursion
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise PolicyError(f"policy {source} nests deeper than {MAX_YAML_DEPTH} levels")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def policy_from_yaml(text: str | None, preset: str = "default", source: str = "(inline)") -> Policy:
    """A policy from YAML text (a file's, or run config's) over a preset; size and depth bounded."""
    try:
        if text:
            _check_yaml_shape(text, source)
        data = yaml.safe_load(text) if text else None
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy {source} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return policy_over_preset(data, preset, source)


def load_policy(path: str | Path | None, preset: str = "default") -> Policy:
    """The policy of ``preset`` with the fields of the YAML file at ``path`` (if any) over it."""
    if path is None:
        return policy_over_preset(None, preset, f"preset {preset}")
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_YAML_BYTES + 1)  # never a whole huge file in memory: its size is refused below
    except OSError as exc:
        raise PolicyError(f"cannot read policy {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyError(f"policy {path} is not UTF-8 text") from None
    return policy_from_yaml(text, preset, str(path))


def default_policy_yaml(preset: str = "default") -> str:
    """The default policy (or a preset) as YAML, for users to copy and edit."""
    return yaml.safe_dump(load_policy(None, preset).model_dump(mode="json"), sort_keys=False)
