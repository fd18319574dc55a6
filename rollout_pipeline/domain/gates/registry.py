"""The gate registry: a gate module registers each gate with its name, default criticality, policy limits and
docs row; ``GATES``, ``INTEGRITY``, ``Policy.metrics``' defaults and ``Policy.gates`` are built from it.

Adding a gate that needs no new data is one module: a function ``(GateContext) -> MetricCheck | None``
decorated with ``@gate(...)``, and, when it has limits, a ``Limits`` model whose fields appear in the policy
as ``gates.<name>.<field>`` (docs/policy.md, "How to add a gate").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from rollout_pipeline.domain.gates.context import GateContext, MetricCheck

Criticality = Literal["normal", "critical", "report-only"]
GROUPS = ("latency", "errors", "predictions", "feedback", "quality")  # Kayenta's groups (Policy.group_weights)

Gate = Callable[["GateContext"], "MetricCheck | None"]


class Limits(BaseModel):
    """A gate's limits in the policy (``gates.<name>``): strict, frozen, finite numbers, each with its range."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # Policies stored before limits were grouped name them flat: flat name -> field of this model.
    flat_names: ClassVar[Mapping[str, str]] = {}
    # (detectable, allowed) pairs: the regression the rollout must stop lies beyond what it allows.
    beyond: ClassVar[tuple[tuple[str, str], ...]] = ()


@dataclass(frozen=True)
class GateSpec:
    """One registered gate: what runs, where it stands, what the policy holds for it and how docs/policy.md says it."""

    name: str
    run: Gate
    group: str  # Kayenta's group ("integrity" for integrity gates)
    criticality: Criticality  # the default of Policy.metrics[name] (integrity gates are always critical)
    limits: type[Limits] | None  # the policy's gates.<name> model; None: the gate reads no limit of its own
    order: float  # gates run (and are listed) in this order
    integrity: bool = False  # judges the latest night's logs; a failure holds the day
    doc: str = ""  # the gate's row in docs/policy.md ("The gates")


_SPECS: dict[str, GateSpec] = {}
GATES: dict[str, Gate] = {}  # metric gates, in order: names are Policy.metrics' keys
INTEGRITY: dict[str, Gate] = {}  # integrity gates, in order
_LISTENERS: list[Callable[[], None]] = []


def _refresh() -> None:
    ordered = specs()
    for table, integrity in ((GATES, False), (INTEGRITY, True)):
        table.clear()
        table.update((s.name, s.run) for s in ordered if s.integrity == integrity)
    for listener in _LISTENERS:
        listener()


def register(spec: GateSpec) -> None:
    """Add a gate (a name is registered once; ``unregister`` first to replace one)."""
    if spec.name in _SPECS:
        raise ValueError(f"gate {spec.name!r} is already registered")
    if not spec.integrity and spec.group not in GROUPS:
        raise ValueError(f"gate {spec.name!r}: group {spec.group!r} is not one of {', '.join(GROUPS)}")
    _SPECS[spec.name] = spec
    _refresh()


def unregister(name: str) -> None:
    """Remove a gate (tests that register a toy gate put the registry back)."""
    del _SPECS[name]
    _refresh()


def gate(name: str, *, group: str, criticality: Criticality = "normal", limits: type[Limits] | None = None,
         order: float | None = None, integrity: bool = False, doc: str = "") -> Callable[[Gate], Gate]:
    """Register the decorated function as the gate ``name`` (``order`` None: after every gate registered)."""

    def decorate(run: Gate) -> Gate:
        at = order if order is not None else max((s.order for s in _SPECS.values() if s.integrity == integrity),
                                                 default=0) + 1
        register(GateSpec(name, run, group, criticality, limits, at, integrity, doc))
        return run

    return decorate


def on_change(listener: Callable[[], None]) -> None:
    """Call ``listener`` whenever a gate is registered or removed (the policy rebuilds its ``gates`` model)."""
    _LISTENERS.append(listener)


def specs() -> tuple[GateSpec, ...]:
    """Every registered gate, in order: the metric gates, then the integrity gates."""
    return tuple(sorted(_SPECS.values(), key=lambda s: (s.integrity, s.order)))


def metric_names() -> tuple[str, ...]:
    """The metric gates' names, in order (``Policy.metrics``' keys)."""
    return tuple(GATES)


def default_criticality() -> dict[str, Criticality]:
    """Each metric gate's default criticality (``Policy.metrics``' defaults)."""
    return {s.name: s.criticality for s in specs() if not s.integrity}


def limit_models() -> dict[str, type[Limits]]:
    """The gates that have limits, with their model (the policy's ``gates``), in order."""
    return {s.name: s.limits for s in specs() if s.limits is not None}


def flat_fields() -> dict[str, tuple[str, str]]:
    """Earlier versions' flat field names -> (gate, field)."""
    return {flat: (name, field) for name, model in limit_models().items() for flat, field in model.flat_names.items()}


def flat_view(gates: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A ``gates`` mapping as earlier versions named it: (flat fields, what has no flat name, per gate)."""
    models = limit_models()
    flat: dict[str, Any] = {}
    rest: dict[str, dict[str, Any]] = {}
    for name, fields in gates.items():
        names = {field: f for f, field in models[name].flat_names.items()} if name in models else {}
        for field, value in fields.items():
            if field in names:
                flat[names[field]] = value
            else:
                rest.setdefault(name, {})[field] = value
    return flat, rest
