"""Fixtures of the Dagster definitions' tests."""

import dagster as dg
import pytest


@pytest.fixture
def instance():
    """A throwaway Dagster instance (its own temporary storage) for one test."""
    with dg.instance_for_test() as inst:
        yield inst
