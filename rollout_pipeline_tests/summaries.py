"""Comparing two day summaries field by field (the database's and Spark's analyses of the same day)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

REL = 1e-9  # floating-point sums added in another order


def _close(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b)) or abs(a - b) <= REL * max(abs(a), abs(b))


def differences(a, b, path: str = "summary", skip: frozenset[str] = frozenset()) -> list[str]:
    """Where two summaries differ (floats to REL), field by field; ``skip`` names fields left out."""
    if dataclasses.is_dataclass(a):
        return [d for f in dataclasses.fields(a) if f.name not in skip
                for d in differences(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}", skip)]
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]", skip)]
    if isinstance(a, float) and isinstance(b, float):
        return [] if _close(a, b) else [f"{path}: {a!r} != {b!r}"]
    if isinstance(a, dt.datetime) and isinstance(b, dt.datetime):
        return [] if a == b else [f"{path}: {a} != {b}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]
