"""Policies as earlier versions wrote them: retired fields, and gate limits named flat before they were grouped
with their gate (``latency_slo_p99_ms`` is ``gates.latency.slo_p99_ms``). Stored policies and old files still load."""

from __future__ import annotations

from pydantic import BaseModel

from rollout_pipeline.domain.gates.registry import flat_fields

RETIRED_FIELDS = frozenset({"wiring_step_min_requests", "detectable_effect", "complaint_rate_limit"})


def nest(data: dict) -> dict:
    """A policy mapping as this version names it: retired fields dropped, flat gate fields (earlier versions'
    ``latency_slo_p99_ms``) moved into their gate's group (``gates.latency.slo_p99_ms``)."""
    flat = flat_fields()
    if not any(k in RETIRED_FIELDS or k in flat for k in data):
        return data
    out = {k: v for k, v in data.items() if k not in RETIRED_FIELDS and k not in flat}
    gates = out.get("gates") or {}
    if isinstance(gates, BaseModel):
        gates = gates.model_dump()
    if not isinstance(gates, dict):
        return out  # refused as it is: gates must be a mapping
    gates = {g: (v.model_dump() if isinstance(v, BaseModel) else dict(v) if isinstance(v, dict) else v)
             for g, v in gates.items()}
    twice = []
    for key in (k for k in data if k in flat):
        name, field = flat[key]
        group = gates.setdefault(name, {})
        if isinstance(group, dict):
            if field in group and group[field] != data[key]:
                twice.append(f"{key} (and under gates: {name}: {field})")
            group[field] = data[key]
    if twice:
        raise ValueError("given twice with different values: " + ", ".join(twice))
    out["gates"] = gates
    return out


def flat_spelling(data: dict | None) -> dict[str, str]:
    """How ``data`` names its gates' fields: path here -> flat name, for the gates it writes flat (errors say
    the names the policy used)."""
    flat = flat_fields()
    gates = {flat[k][0] for k in (data or {}) if k in flat}
    return {f"gates.{name}.{field}": k for k, (name, field) in flat.items() if name in gates}
