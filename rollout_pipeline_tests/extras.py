"""Optional extras in tests: ``make test`` installs them (pyproject's ``spark`` extra)."""

from __future__ import annotations

import importlib
import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def need(module: str):
    """``module``, imported; without it the calling test module skips, saying why -- except under
    ``CI=true``, where the ImportError fails the collection (a missing extra must never pass unnoticed)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if IN_CI:
            raise
        pytest.skip(f"{module} is missing (pip install 'rollout-pipeline[spark]'): {exc}", allow_module_level=True)
