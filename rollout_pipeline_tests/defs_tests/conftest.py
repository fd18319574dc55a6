"""Fixtures of the Dagster definitions' tests."""

import dagster as dg
import pytest


@pytest.fixture
def instance():
    """A throwaway Dagster instance for one test, in memory, without captured stdout/stderr
    (``instance_for_test`` migrated three SQLite files in a temporary folder, ~0.5 s a test, and started
    two `tail` processes and their watchers per run to capture the steps' output)."""
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture
def persistent_instance():
    """A throwaway Dagster instance on files in a temporary folder, for what needs an instance that other code
    can open again from its reference (a schedule's context, a run launched in another process)."""
    with dg.instance_for_test() as inst:
        yield inst
