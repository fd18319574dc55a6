"""What a model may return, and how it lands in the log's ``prediction`` / ``label`` columns.

A model returns one of:

* a number (regression value, score, probability) -> ``prediction``;
* a string (a class) -> ``label``;
* a list or tuple of items (recommendations) -> ``label`` as JSON array text,
  e.g. ``'["a","b"]'``, so that list overlap can be computed later;
* an ``Output``, to give both a number and a label (a class with its
  probability), or to report the latency the model measured itself (a remote
  call, or the simulator, whose latency is simulated rather than slept).
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass
from typing import Any


class UnsupportedOutput(TypeError):
    """A model returned something the log contract cannot hold."""


@dataclass(frozen=True, slots=True)
class Output:
    """A model's answer with its logged form; ``value`` is what the caller receives (default: the logged form)."""

    prediction: float | None = None
    label: str | None = None
    latency_ms: float | None = None
    value: Any = None

    def caller_value(self) -> Any:
        """The answer handed to the caller: ``value`` when given, else the label or the number."""
        if self.value is not None:
            return self.value
        if self.label is not None and self.prediction is None:
            return decode_items(self.label)
        if self.label is not None:
            return {"prediction": self.prediction, "label": decode_items(self.label)}
        return self.prediction


def encode_items(items: list | tuple) -> str:
    """A recommendation list as the JSON array text stored in ``label`` (items rendered as strings)."""
    return json.dumps([str(item) for item in items], separators=(",", ":"), ensure_ascii=False)


def decode_items(label: str | None) -> Any:
    """The inverse of ``encode_items`` for a label that holds a JSON array; other labels are returned as is."""
    if label is not None and label.startswith("["):
        try:
            return json.loads(label)
        except ValueError:
            return label
    return label


def to_output(value: Any) -> Output:
    """Normalize a model's return value; raise UnsupportedOutput for anything else."""
    if isinstance(value, Output):
        return value
    if isinstance(value, str):
        return Output(label=value, value=value)
    if isinstance(value, bool):
        return Output(prediction=1.0 if value else 0.0, value=value)
    if isinstance(value, numbers.Real):
        return Output(prediction=float(value), value=value)
    if isinstance(value, (list, tuple)):
        return Output(label=encode_items(value), value=list(value))
    # numpy scalars that are not numbers.Real subclasses, and 0-d / 1-element arrays
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "size", 1) == 1:
        try:
            return to_output(item())
        except (TypeError, ValueError):
            pass
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return to_output(tolist())
    raise UnsupportedOutput(
        f"a model must return a number, a string, a list of items or an Output, got {type(value).__name__}"
    )


def json_safe(value: Any) -> Any:
    """``value`` with NaN/inf floats replaced by None, for strict JSON responses."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
