"""The rollout policy: a YAML file validated by pydantic, with defaults that follow DESIGN.md.

Every field is documented in docs/policy.md; `rollout-pipeline policy-defaults`
prints the defaults as YAML.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from statistics import NormalDist
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Criticality = Literal["normal", "critical", "report-only"]


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the bad field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JudgeThresholds(_Strict):
    pass_score: float = Field(95, ge=0, le=100, description="score at or above which the day passes (Kayenta: 95)")
    marginal_score: float = Field(75, ge=0, le=100, description="score below which the candidate fails (Kayenta: 75)")
    confidence: float = Field(0.98, gt=0.5, lt=1, description="confidence of the Mann-Whitney interval")
    tolerance_fraction: float = Field(0.25, ge=0, description="shift tolerated as a fraction of the estimate")

    @model_validator(mode="after")
    def _ordered(self):
        if self.marginal_score > self.pass_score:
            raise ValueError("marginal_score must not exceed pass_score")
        return self


class Policy(_Strict):
    """How a rollout advances; see docs/policy.md for each field."""

    canary_steps: tuple[int, ...] = (1, 20, 50, 100)
    min_shadow_days: int = Field(1, ge=0)
    min_days_per_step: int = Field(1, ge=1)
    min_requests: int | None = Field(
        None, ge=1, description="paired (shadow) or served (canary) candidate requests needed; None = power-based"
    )
    wiring_step_min_requests: int = Field(
        50, ge=1, description="the first canary step only checks the wiring: served requests it needs"
    )
    detectable_effect: float = Field(0.25, gt=0, description="standardized shift the minimum sample must detect")
    power: float = Field(0.8, gt=0, lt=1)
    latency_slo_p99_ms: float = Field(250.0, gt=0)
    latency_regression_allowed: float = Field(0.2, ge=0, description="candidate p99 may exceed stable p99 by this fraction")
    error_rate_limit: float = Field(0.02, ge=0, le=1)
    prediction_bounds: tuple[float, float] | None = None
    extreme_share_limit: float = Field(0.001, ge=0, le=1)
    prediction_shift_limit: float = Field(
        0.5, ge=0, description="|mean shift| allowed, in standard deviations of the stable predictions"
    )
    disagreement_limit: float = Field(0.2, ge=0, le=1, description="labels: share of pairs that disagree")
    complaint_rate_limit: float = Field(0.01, ge=0, le=1)
    complaint_regression_allowed: float = Field(0.5, ge=0, description="candidate rate may exceed stable by this fraction")
    max_unmatched_shadow_share: float = Field(0.01, ge=0, le=1)
    judge: JudgeThresholds = JudgeThresholds()
    retention_days: int = Field(3, ge=0)
    shadow_old_model_during_retention: bool = True
    metrics: dict[str, Criticality] = Field(
        default_factory=lambda: {
            "latency": "critical",
            "error_rate": "critical",
            "extremes": "critical",
            "prediction_shift": "normal",
            "disagreement": "normal",
            "complaints": "normal",
            "accuracy": "normal",
        }
    )
    group_weights: dict[str, float] = Field(default_factory=dict)

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

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, metrics: dict[str, str]) -> dict[str, str]:
        unknown = set(metrics) - set(METRICS)
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}; known: {', '.join(METRICS)}")
        return {**{m: "normal" for m in METRICS}, **metrics}

    @property
    def required_requests(self) -> int:
        """Candidate requests needed before judging: explicit, or enough to detect ``detectable_effect``.

        Normal approximation of the two-sample test: n = 2 (z_(1-a/2) + z_power)^2 / d^2,
        with a = 1 - judge.confidence.
        """
        if self.min_requests is not None:
            return self.min_requests
        z = NormalDist().inv_cdf
        alpha = 1 - self.judge.confidence
        return int(2 * (z(1 - alpha / 2) + z(self.power)) ** 2 / self.detectable_effect**2) + 1

    @property
    def version(self) -> str:
        """A short content hash: decisions record which policy they were made under."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def next_step(self, percent: int) -> int | None:
        """The canary share after ``percent``, or None when already at the last step."""
        return next((s for s in self.canary_steps if s > percent), None)


METRICS = ("latency", "error_rate", "extremes", "prediction_shift", "disagreement", "complaints", "accuracy")


def _explain(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {where}: {err['msg']}")
    return f"invalid policy {source}:\n" + "\n".join(lines)


def parse_policy(data: dict | None, source: str = "(inline)") -> Policy:
    """Validate a policy mapping; raise PolicyError naming every bad field."""
    try:
        return Policy.model_validate(data or {})
    except ValidationError as exc:
        raise PolicyError(_explain(exc, source)) from None


def load_policy(path: str | Path | None) -> Policy:
    """The policy in a YAML file, or the defaults when ``path`` is None."""
    if path is None:
        return Policy()
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise PolicyError(f"cannot read policy {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy {path} is not valid YAML: {exc}") from None
    if data is not None and not isinstance(data, dict):
        raise PolicyError(f"policy {path} must be a mapping of fields, got {type(data).__name__}")
    return parse_policy(data, str(path))


def default_policy_yaml() -> str:
    """The default policy as YAML, for users to copy and edit."""
    return yaml.safe_dump(Policy().model_dump(mode="json"), sort_keys=False)
