"""How numbers read wherever a person sees them: gate reasons, the review, the CLI (one place)."""

from __future__ import annotations

import math


def num(x: float | None, unit: str = "") -> str:
    """A number with four significant digits and thousands separators ("n/a" for None or non-finite)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:,.4g}{unit}"


def pct(x: float | None) -> str:
    """A share as a percentage with two decimals ("n/a" for None)."""
    return "n/a" if x is None else f"{100 * x:.2f}%"
