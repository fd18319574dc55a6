"""Fixtures of the Dagster definitions' tests."""

import dagster as dg
import pytest


@pytest.fixture
def instance():
    """A throwaway Dagster instance for one test, in memory: runs, event log and schedules in an in-memory
    SQLite, no captured stdout/stderr (``instance_for_test`` migrated three SQLite files in a temporary folder
    and started two `tail` processes per run to capture them: ~0.5 s a test, ~0.3 s a run)."""
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture
def persistent_instance():
    """A throwaway Dagster instance on files in a temporary folder, for what needs an instance that other code
    can open again from its reference (a schedule's context, a run launched in another process)."""
    with dg.instance_for_test() as inst:
        yield inst
