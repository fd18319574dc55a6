"""The rollout policy: a YAML file validated by pydantic, with defaults that follow DESIGN.md.

Every field is documented in docs/policy.md; `rollout-pipeline policy-defaults`
prints the defaults as YAML.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator
from pydantic.fields import FieldInfo

# Importing the package registers the gates, with their limits, before the policy is built from them.
from rollout_pipeline.domain.gates.registry import (
    GROUPS,
    Criticality,
    default_criticality,
    flat_fields,
    flat_view,
    limit_models,
    metric_names,
    on_change,
)
from rollout_pipeline.domain.policy_versions import RETIRED_FIELDS, flat_spelling, nest
from rollout_pipeline.domain.ranges import MAX_COUNT, MAX_DAYS, MAX_FACTOR, MAX_LATENCY_MS, MAX_PREDICTION

__all__ = ["GROUPS", "MAX_COUNT", "MAX_DAYS", "MAX_FACTOR", "MAX_LATENCY_MS", "MAX_PREDICTION", "Criticality",
           "JudgeThresholds", "Policy", "PolicyError", "RETIRED_FIELDS", "nest", "default_policy_yaml", "load_policy",
           "parse_policy", "policy_from_yaml", "policy_over_preset"]

MAX_YAML_DEPTH = 16  # a policy nests 4 levels (gates.extremes.bounds: [..]); deeper is not a policy
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


def _gate_limits_model() -> type[BaseModel]:
    """``Policy.gates``: one field per gate with limits, its model declared by the gate's module."""
    fields: dict[str, Any] = {name: (model, FieldInfo(annotation=model, default_factory=model))
                              for name, model in limit_models().items()}
    return create_model("GateLimits", __base__=_Strict, __doc__="Each gate's limits (gates.<name>.<field>).",
                        **fields)


GateLimits = _gate_limits_model()


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
    pool_nights: int = Field(28, ge=1, le=60, description="nights of a step pooled at most (the latest)")
    # Each gate's limits, grouped with the gate (gates.<name>.<field>; the gate's module declares them).
    gates: GateLimits = Field(default_factory=lambda: GateLimits(), description="each gate's limits")
    # validation (the log_quality suite): shadow answers without a served twin
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
    metrics: dict[str, Criticality] = Field(default_factory=default_criticality)
    group_weights: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _earlier_versions(cls, data):
        """Policies stored by earlier versions still load: retired fields are ignored, flat gate fields
        (``latency_slo_p99_ms``) are read into their gate's group (``gates.latency.slo_p99_ms``)."""
        return nest(data) if isinstance(data, dict) else data

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
        unknown = sorted(set(names) - set(metric_names()))
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; known: {', '.join(metric_names())}")
        return names

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, metrics: dict[str, str]) -> dict[str, str]:
        unknown = set(metrics) - set(metric_names())
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}; known: {', '.join(metric_names())}")
        return {**default_criticality(), **metrics}

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
        wrong = []
        for name, model in limit_models().items():
            limits = getattr(self.gates, name)
            for detect, allowed in model.beyond:
                if getattr(limits, detect) <= getattr(limits, allowed):
                    wrong.append(f"gates.{name}.{detect} ({getattr(limits, detect):g}) must exceed "
                                 f"gates.{name}.{allowed} ({getattr(limits, allowed):g})")
        if wrong:
            raise ValueError("; ".join(wrong))
        return self

    @property
    def version(self) -> str:
        """A short content hash: decisions record which policy they were made under.

        Hashed as earlier versions named the fields (flat gate fields), so an unchanged policy keeps its version.
        """
        data = self.model_dump(mode="json")
        flat, rest = flat_view(data.pop("gates"))
        data.update(flat)
        if rest:
            data["gates"] = rest
        text = json.dumps(data, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def accuracy_day(self, day: dt.date) -> dt.date:
        """The day whose requests the accuracy of ``day`` is judged on: outcomes had label_delay_days to arrive."""
        return day - dt.timedelta(days=self.gates.accuracy.label_delay_days)

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


def _flat_property(name: str, field: str) -> property:
    return property(lambda self: getattr(getattr(self.gates, name), field),
                    doc=f"gates.{name}.{field} (the flat name earlier versions gave it)")


def _gates_changed() -> None:
    """A gate was registered or removed: ``Policy.gates`` follows the registry, and the flat names stay readable."""
    global GateLimits
    GateLimits = _gate_limits_model()
    Policy.__pydantic_fields__["gates"] = FieldInfo(annotation=GateLimits, default_factory=GateLimits,
                                                    description="each gate's limits")
    Policy.model_rebuild(force=True)
    _install_flat_names()


def _install_flat_names() -> None:
    """``policy.latency_slo_p99_ms`` reads ``policy.gates.latency.slo_p99_ms``: code written against the flat
    fields keeps reading them (read-only; a policy is frozen)."""
    for flat, (name, field) in flat_fields().items():
        setattr(Policy, flat, _flat_property(name, field))


_install_flat_names()
on_change(_gates_changed)

# Shipped policies, for `rollout start --preset NAME`; a --policy file's fields override them.
PRESETS: dict[str, dict] = {
    "default": {},
    # A first model against a baseline (a constant, or the top-N most popular items): the baseline's
    # latency and its output distribution say nothing about the candidate, so they are not compared;
    # the candidate must be at least as accurate as the baseline, within its SLO and bounds.
    "first-model": {
        "first_model": True,
        # A first model is judged on its outcomes against the baseline: without any, nothing says it is better.
        "require_outcomes": True,
        "gates": {
            "latency": {"regression_allowed": None},
            # Against a constant, catching a model twice as wrong is the question; a finer comparison needs
            # more outcomes than a first model's early days bring (docs/policy.md, "First models").
            "accuracy": {"detectable": 1.0},
        },
        "metrics": {"prediction_shift": "report-only", "disagreement": "report-only",
                    "latency_distribution": "report-only", "accuracy": "critical"},
    },
}


def _over(base: dict, data: dict) -> dict:
    """``data`` (nested) over ``base`` (nested): ``metrics`` merged key by key, each gate's limits field by field."""
    merged = {**base, **data}
    if "metrics" in base and "metrics" in data and (data["metrics"] is None or isinstance(data["metrics"], dict)):
        merged["metrics"] = {**base["metrics"], **(data["metrics"] or {})}
    if isinstance(base.get("gates"), dict) and isinstance(data.get("gates"), dict):
        gates = dict(base["gates"])
        for name, limits in data["gates"].items():
            below = gates.get(name)
            gates[name] = {**below, **limits} if isinstance(below, dict) and isinstance(limits, dict) else limits
        merged["gates"] = gates
    return merged


def _explain(exc: ValidationError, source: str, spelled: dict[str, str] | None = None) -> str:
    """One line naming every bad field (as the policy wrote it: a flat name stays flat)."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
    line = f"invalid policy {source}: " + "; ".join(parts)
    for path, name in (spelled or {}).items():
        line = re.sub(re.escape(path) + r"(?!\w)", name, line)
    return line


def _validate(data: dict, source: str, spelled: dict[str, str]) -> Policy:
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(_explain(exc, source, spelled)) from None


def parse_policy(data: dict | None, source: str = "(inline)") -> Policy:
    """Validate a policy mapping (gate limits grouped, or flat as earlier versions stored them); raise PolicyError
    naming every bad field."""
    return _validate(data or {}, source, flat_spelling(data))


def policy_over_preset(data: dict | None, preset: str = "default", source: str = "(inline)") -> Policy:
    """The policy of ``preset`` with ``data``'s fields over it (``metrics`` merged key by key)."""
    if preset not in PRESETS:
        raise PolicyError(f"unknown preset {preset!r}: one of {', '.join(PRESETS)}")
    if data is not None and not isinstance(data, dict):
        raise PolicyError(f"policy {source} must be a mapping of fields, got {type(data).__name__}")
    try:
        nested = nest(data or {})
    except ValueError as exc:
        raise PolicyError(f"invalid policy {source}: {exc}") from None
    return _validate(_over(PRESETS[preset], nested), source, flat_spelling(data))


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
