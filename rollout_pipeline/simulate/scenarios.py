"""Scenarios: named sets of knobs that describe one day of traffic and what goes wrong in it.

Every scenario starts from the healthy defaults and changes a few knobs; any
knob can be overridden (``simulate_day(..., knobs={"error_rate": 0.9})``, or
``--knob error_rate=0.9`` on the command line). Faults hit the variant whose
role is ``candidate`` in the day's routing config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Knobs:
    """Every knob of a simulated day (defaults: a healthy day)."""

    # traffic
    population: int = 0  # entities (repeat visitors); 0: max(50, requests // 5)
    anonymous_fraction: float = 0.1  # requests without an entity id (random bucket)
    max_requests: int = 0  # cap on the day's requests (0: no cap); `sparse` sets it
    visit_skew: float = 0.8  # entity i's share of visits ~ 1 / i**visit_skew (heavy-tailed requests per entity)
    entity_complaint_shape: float = 0.5  # gamma shape of each entity's complaint propensity (mean 1; 0: all alike)
    entity_latency_sigma: float = 0.25  # lognormal sigma of each entity's latency factor, both variants (0: none)
    # latency: base ms + lognormal(log(median_extra_ms), sigma)
    stable_base_ms: float = 8.0
    candidate_base_ms: float = 9.0
    median_extra_ms: float = 4.0
    latency_sigma: float = 0.5
    candidate_latency_factor: float = 1.0  # multiplies the candidate's whole latency
    candidate_latency_sigma: float = 0.0  # extra sigma of the candidate's tail (0: same as stable)
    shadow_timeout_ms: float = 300.0  # the router's shadow timeout
    # outputs
    shift: float = 0.0  # candidate shift: in target std for numbers, +prob for binary, fraction relabelled otherwise
    extreme_fraction: float = 0.0  # candidate answers that are absurd
    extreme_scale: float = 1e6  # size of an absurd numeric answer (sign random)
    # errors
    base_error_rate: float = 0.001  # every variant, all day
    error_rate: float = 0.0  # candidate, inside the burst window
    error_start_hour: float = 10.0
    error_hours: float = 3.0
    # feedback
    complaint_rate: float = 0.01  # per served answer
    candidate_complaint_rate: float | None = None  # per answer served by the candidate (None: complaint_rate)
    complaint_on_error: float = 0.2  # per failed served request
    actual_fraction: float = 0.6  # served answers whose true outcome arrives later
    actual_delay_hours: float = 8.0  # mean delay of an outcome (exponential; capped at the end of the next day)
    inaccuracy: float = 0.0  # candidate's error against the actual outcomes, in multiples of the stable's (0: as trained)
    # contract breaches
    corrupt_fraction: float = 0.0  # extra rows breaking the contract, per request
    # candidate log faults
    shadow_answer_fraction: float = 1.0  # mirrored requests whose candidate answer reaches the log (the rest: absent)
    null_fraction: float = 0.0  # candidate ok answers with neither a prediction nor a label
    orphan_fraction: float = 0.0  # extra candidate rows served=true with no stable twin, per request
    duplicate_fraction: float = 0.0  # candidate rows logged twice, exactly


SCENARIOS: dict[str, tuple[str, dict[str, float]]] = {
    "healthy": ("a normal day: the candidate is a little slower and better", {}),
    "slow": ("candidate latency regression: 3x slower with a heavy tail (p99 far above the stable's)",
             {"candidate_latency_factor": 3.0, "candidate_latency_sigma": 0.6}),
    "shifted": ("candidate predictions shifted (numbers +1 target std, probabilities +0.25, 30% of labels changed)",
                {"shift": 1.0}),
    "extreme": ("2% of candidate answers absurd: +-1e6 numbers, out-of-range probabilities, empty lists",
                {"extreme_fraction": 0.02}),
    "errors": ("candidate error burst: half its calls fail from 10:00 to 13:00 UTC", {"error_rate": 0.5}),
    "complaints": ("6x more complaints on answers the candidate served (visible in canary, not in shadow)",
                   {"candidate_complaint_rate": 0.06}),
    "sparse": ("very little traffic: at most 25 requests all day", {"max_requests": 25}),
    "corrupt": ("5% extra rows that break the contract: missing correlation ids, unknown status, "
                "negative/NaN latency, shadow rows with no served twin", {"corrupt_fraction": 0.05}),
    "missing": ("the candidate answers only 30% of the mirrored requests; the rest are absent from the log",
                {"shadow_answer_fraction": 0.3}),
    "null": ("15% of the candidate's ok answers carry neither a prediction nor a label", {"null_fraction": 0.15}),
    "orphan": ("extra candidate rows marked served (2% of requests) with no stable twin: visible in shadow",
               {"orphan_fraction": 0.02}),
    "duplicates": ("2% of the candidate's rows are logged twice, exactly", {"duplicate_fraction": 0.02}),
    "inaccurate": ("the candidate's error against the actual outcomes is 4x the stable's (labels: error rate 4x, "
                   "at most 95%)", {"inaccuracy": 4.0}),
}
SCENARIO_NAMES = tuple(SCENARIOS)

_SHIFT_DEFAULTS = {"multiclass": 0.3, "binary": 0.25, "recommendation": 0.3}


class UnknownScenario(LookupError):
    """No scenario of that name, or an unknown knob."""


def knobs_for(scenario: str, overrides: Mapping[str, float] | None = None) -> Knobs:
    """The knobs of ``scenario`` with ``overrides`` applied; raises UnknownScenario naming the valid choices."""
    if scenario not in SCENARIOS:
        raise UnknownScenario(f"unknown scenario {scenario!r}: one of {', '.join(SCENARIO_NAMES)}")
    values = dict(SCENARIOS[scenario][1])
    fields = {f.name: f for f in dataclasses.fields(Knobs)}
    for name, value in (overrides or {}).items():
        if name not in fields:
            raise UnknownScenario(f"unknown knob {name!r}: one of {', '.join(sorted(fields))}")
        values[name] = value
    typed = {}
    for name, value in values.items():
        kind = fields[name].type
        typed[name] = int(value) if kind == "int" else (None if value is None else float(value))
    return Knobs(**typed)


def effective_shift(knobs: Knobs, task: str) -> float:
    """The shift for a task: ``shift`` is in target std for regression; 1.0 maps to the task's default otherwise."""
    if task == "regression" or knobs.shift == 0:
        return knobs.shift
    return knobs.shift * _SHIFT_DEFAULTS[task]


def parse_knobs(pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``["name=value", ...]`` -> {name: float}; raises ValueError on a malformed pair."""
    out: dict[str, Any] = {}
    for text in pairs:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"knob {text!r}: expected name=value")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"knob {text!r}: value must be a number") from None
    return out
